using System.Net.Sockets;

namespace Gateway.Testing;

/// <summary>HttpClient over a Unix stream socket (what <c>curl --unix-socket</c> does).</summary>
public static class UnixHttp
{
    public static HttpClient CreateClient(string socketPath, TimeSpan? timeout = null)
    {
        var handler = new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.FromMinutes(5),
            MaxConnectionsPerServer = 1024,
            ConnectCallback = async (_, cancellationToken) =>
            {
                var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
                try
                {
                    await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
                    return new NetworkStream(socket, ownsSocket: true);
                }
                catch
                {
                    socket.Dispose();
                    throw;
                }
            },
        };
        return new HttpClient(handler) { BaseAddress = new Uri("http://localhost/"), Timeout = timeout ?? TimeSpan.FromSeconds(120) };
    }
}
