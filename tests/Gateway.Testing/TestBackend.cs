using Gateway.Ipc.Backend;

namespace Gateway.Testing;

/// <summary>An in-process backend on a real datagram socket with a test-supplied handler.</summary>
public sealed class TestBackend : IAsyncDisposable
{
    private TestBackend(DatagramBackendServer server)
    {
        Server = server;
    }

    public DatagramBackendServer Server { get; }

    public string SocketPath => Server.SocketPath;

    public static async Task<TestBackend> StartAsync(string socketPath, DatagramHandler handler, Action<DatagramBackendOptions>? configure = null, TimeProvider? timeProvider = null)
    {
        var options = new DatagramBackendOptions { SocketPath = socketPath };
        configure?.Invoke(options);
        var server = new DatagramBackendServer(options, handler, timeProvider);
        await server.StartAsync();
        return new TestBackend(server);
    }

    public ValueTask DisposeAsync() => Server.DisposeAsync();
}
