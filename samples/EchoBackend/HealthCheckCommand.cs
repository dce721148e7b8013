using Gateway.Ipc.Client;
using Microsoft.Extensions.Configuration;

namespace EchoBackend;

/// <summary>
/// <c>EchoBackend --healthcheck</c>: sends a PING to the configured backend socket (<c>Backend:SocketPath</c>) and
/// waits for the PONG; exit code 0 when it arrives within 2 s, else 1. Lets a container healthcheck (compose
/// <c>healthcheck:</c>, a Kubernetes exec probe) run without a shell or any other tool in the image. The reply comes
/// back to an abstract address, so the probe must run in the backend's network namespace (its container).
/// </summary>
internal static class HealthCheckCommand
{
    public const string Switch = "--healthcheck";

    public static async Task<int> RunAsync(IConfiguration configuration, string defaultSocketPath)
    {
        var path = configuration["Backend:SocketPath"] is { Length: > 0 } configured ? configured : defaultSocketPath;
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = path });
        var healthy = await client.PingAsync(TimeSpan.FromSeconds(2)).ConfigureAwait(false);
        var output = healthy ? Console.Out : Console.Error;
        await output.WriteLineAsync($"unix:{path} PING: {(healthy ? "PONG" : "no PONG within 2 s")}").ConfigureAwait(false);
        return healthy ? 0 : 1;
    }
}
