using Gateway.Configuration;
using Gateway.Ipc.Client;
using Gateway.Ipc.Raw;
using Gateway.Resilience;

namespace Gateway.Routing;

/// <summary>
/// One datagram socket of a backend, with the client (reply socket + pending table) that talks to it.
/// Shared by every route table that names the same socket path, so a reload keeps in-flight requests alive.
/// </summary>
internal sealed class BackendInstance : IAsyncDisposable
{
    private long _inFlight;
    private int _retired;
    private int _disposed;

    public BackendInstance(string socketPath, DatagramClient client)
    {
        SocketPath = socketPath;
        Mode = BackendMode.Envelope;
        Client = client;
    }

    public BackendInstance(string socketPath, RawDatagramClient rawClient)
    {
        SocketPath = socketPath;
        Mode = BackendMode.Raw;
        RawClient = rawClient;
    }

    public string SocketPath { get; }

    public BackendMode Mode { get; }

    /// <summary>The envelope client; null for raw backends.</summary>
    public DatagramClient? Client { get; }

    /// <summary>The raw client; null for envelope backends.</summary>
    public RawDatagramClient? RawClient { get; }

    /// <summary>Circuit breaker, in-flight cap, ejection and counters of this instance.</summary>
    public InstanceResilience Resilience { get; init; } = new(InstanceResilienceSettings.Default, TimeProvider.System);

    public long InFlight => Interlocked.Read(ref _inFlight);

    public bool IsRetired => Volatile.Read(ref _retired) != 0;

    public void Acquire() => Interlocked.Increment(ref _inFlight);

    public void Release()
    {
        if (Interlocked.Decrement(ref _inFlight) == 0 && IsRetired)
        {
            _ = DisposeAsync().AsTask();
        }
    }

    /// <summary>Marks the instance as no longer configured; it is disposed once its in-flight requests finish.</summary>
    public void Retire()
    {
        Interlocked.Exchange(ref _retired, 1);
        if (InFlight == 0)
        {
            _ = DisposeAsync().AsTask();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        if (Client is not null)
        {
            await Client.DisposeAsync().ConfigureAwait(false);
        }

        if (RawClient is not null)
        {
            await RawClient.DisposeAsync().ConfigureAwait(false);
        }

        Resilience.Dispose();
    }
}
