using System.Net;
using System.Net.Sockets;
using Gateway.Testing;

namespace Gateway.BrowserTests;

/// <summary>
/// The gateway as a process (<c>dotnet Gateway.dll</c>) on a Unix socket plus the loopback TCP listener a browser
/// needs, with the demo echo backend (on by default: no backend configured).
/// </summary>
public sealed class GatewayWithTcp : IAsyncDisposable
{
    private readonly ExternalProcess _process;

    private GatewayWithTcp(ExternalProcess process, string socketPath, int port)
    {
        _process = process;
        SocketPath = socketPath;
        Port = port;
    }

    public string SocketPath { get; }

    public int Port { get; }

    public string BaseUrl => $"http://127.0.0.1:{Port}";

    public string Output => _process.Output;

    public static async Task<GatewayWithTcp> StartAsync(TempSocketDirectory directory)
    {
        var socketPath = directory.Socket("gw.sock");
        var port = FreeTcpPort();
        var process = ExternalProcess.Start("dotnet", Path.Combine(AppContext.BaseDirectory, "Gateway.dll"),
            "--Gateway:Listen:UnixSocket=" + socketPath, "--Gateway:Listen:TcpPort=" + port, "--Logging:LogLevel:Default=Warning");
        try
        {
            await process.WaitForFileAsync(socketPath);
            using var client = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/"), Timeout = TimeSpan.FromSeconds(5) };
            for (var attempt = 0; ; attempt++)
            {
                try
                {
                    using var response = await client.GetAsync("/readyz");
                    if (response.StatusCode == HttpStatusCode.OK)
                    {
                        return new GatewayWithTcp(process, socketPath, port);
                    }
                }
                catch (HttpRequestException) when (attempt < 200 && !process.HasExited)
                {
                }

                if (process.HasExited || attempt >= 200)
                {
                    throw new InvalidOperationException("The gateway did not become ready over TCP:\n" + process.Output);
                }

                await Task.Delay(25); // bounded readiness poll of a separate process, not synchronisation within a test
            }
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }
    }

    private static int FreeTcpPort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }

    public ValueTask DisposeAsync() => _process.DisposeAsync();
}
