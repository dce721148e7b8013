using System.Net.Sockets;
using Gateway.Configuration;

namespace Gateway.Hosting;

/// <summary>
/// <c>Gateway --healthcheck</c>: GET /healthz over the configured Unix socket; exit code 0 when healthy.
/// Lets a container HEALTHCHECK run without a shell or curl in the image.
/// </summary>
internal static class HealthCheckCommand
{
    public const string Switch = "--healthcheck";

    public static async Task<int> RunAsync(IConfiguration configuration)
    {
        var path = configuration[$"{GatewayOptions.SectionName}:Listen:UnixSocket"] ?? ListenOptions.DefaultSocketPath;
        using var handler = new SocketsHttpHandler
        {
            ConnectCallback = async (_, ct) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(path), ct).ConfigureAwait(false);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        using var client = new HttpClient(handler) { Timeout = TimeSpan.FromSeconds(5) };
        try
        {
            using var response = await client.GetAsync(new Uri("http://localhost/healthz")).ConfigureAwait(false);
            await Console.Out.WriteLineAsync($"unix:{path} /healthz: {(int)response.StatusCode}").ConfigureAwait(false);
            return response.IsSuccessStatusCode ? 0 : 1;
        }
        catch (Exception ex) when (ex is HttpRequestException or TaskCanceledException or SocketException)
        {
            await Console.Error.WriteLineAsync($"unix:{path} /healthz: {ex.Message}").ConfigureAwait(false);
            return 1;
        }
    }
}
