using System.Net;
using System.Net.Sockets;

namespace Gateway.Ipc.Transport;

/// <summary>
/// Send queues for one socket that sends to many destinations (a backend replying to its clients): one
/// <see cref="DatagramSendQueue"/> per destination that currently has a full receive queue, created on demand and
/// dropped as soon as it is idle.
/// </summary>
/// <remarks>
/// <para>
/// Independence: the queues wait in <see cref="SendWaitMode.Poll"/> mode (non-blocking retries), so no asynchronous
/// send is ever left pending on the shared socket and a destination that stopped reading delays only its own
/// messages. Each destination has its own no-progress deadline and its own bound.
/// </para>
/// <para>
/// Fast path: while no destination has a queue, <see cref="TrySendNow"/> is a bare non-blocking <c>sendto</c>
/// (no lookup, no allocation). Thread-safe.
/// </para>
/// </remarks>
internal sealed class PerDestinationSendQueues : IDisposable
{
    private readonly Socket _socket;
    private readonly TimeSpan _sendTimeout;
    private readonly int _maxMessagesPerDestination;
    private readonly long _maxBytesPerDestination;
    private readonly TimeProvider _timeProvider;
    private readonly Lock _lock = new();
    private readonly Dictionary<string, DatagramSendQueue> _queues = new(StringComparer.Ordinal);
    private int _queueCount;
    private bool _disposed;

    public PerDestinationSendQueues(Socket socket, TimeSpan sendTimeout, int maxMessagesPerDestination, long maxBytesPerDestination, TimeProvider timeProvider)
    {
        _socket = socket;
        _sendTimeout = sendTimeout;
        _maxMessagesPerDestination = maxMessagesPerDestination;
        _maxBytesPerDestination = maxBytesPerDestination;
        _timeProvider = timeProvider;
    }

    /// <summary>The number of destinations that currently have a queue.</summary>
    public int QueueCount => Volatile.Read(ref _queueCount);

    /// <summary>Sends one datagram at once if <paramref name="destination"/> has nothing queued and has room.</summary>
    /// <param name="datagram">A whole message that fits one datagram (a larger one returns <see langword="false"/>).</param>
    /// <param name="destination">The destination.</param>
    /// <returns><see langword="true"/> when sent; <see langword="false"/> when it must be queued.</returns>
    /// <exception cref="DatagramSendException">The destination is absent, or the socket closed.</exception>
    public bool TrySendNow(ReadOnlySpan<byte> datagram, SocketAddress destination)
    {
        if (datagram.Length > Protocol.ProtocolConstants.MaxDatagram)
        {
            return false;
        }

        if (Volatile.Read(ref _queueCount) != 0)
        {
            lock (_lock)
            {
                if (_queues.TryGetValue(Key(destination), out var queue) && !queue.IsIdle)
                {
                    return false;
                }
            }
        }

        return DatagramSender.TrySend(_socket, datagram, destination);
    }

    /// <summary>Queues a whole message for <paramref name="destination"/> (see <see cref="DatagramSendQueue.EnqueueAsync"/>).</summary>
    /// <param name="frame">The whole message; used until the task completes.</param>
    /// <param name="destination">The destination (copied).</param>
    /// <param name="cancellationToken">Removes the message while it is still queued.</param>
    /// <returns>A task that completes when the message has been sent.</returns>
    public async Task EnqueueAsync(ReadOnlyMemory<byte> frame, SocketAddress destination, CancellationToken cancellationToken)
    {
        var key = Key(destination);
        DatagramSendQueue queue;
        Task send;
        lock (_lock)
        {
            if (_disposed)
            {
                throw new DatagramSendException(Client.DatagramFailure.Closed, SocketError.OperationAborted, "The send queues were closed.");
            }

            if (!_queues.TryGetValue(key, out queue!))
            {
                var copy = new SocketAddress(destination.Family, destination.Size);
                destination.Buffer.Span[..destination.Size].CopyTo(copy.Buffer.Span);
                queue = new DatagramSendQueue(_socket, copy, _sendTimeout, _maxMessagesPerDestination, _maxBytesPerDestination, SendWaitMode.Poll, _timeProvider);
                _queues.Add(key, queue);
                Volatile.Write(ref _queueCount, _queues.Count);
            }

            // Under the lock, so that an idle queue is never dropped between lookup and enqueue.
            send = queue.EnqueueAsync(frame, cancellationToken);
        }

        try
        {
            await send.ConfigureAwait(false);
        }
        finally
        {
            lock (_lock)
            {
                if (queue.IsIdle && _queues.TryGetValue(key, out var current) && ReferenceEquals(current, queue))
                {
                    _queues.Remove(key);
                    Volatile.Write(ref _queueCount, _queues.Count);
                }
            }
        }
    }

    /// <summary>Fails every queued message with <see cref="Client.DatagramFailure.Closed"/>; later ones fail at once.</summary>
    public void Dispose()
    {
        List<DatagramSendQueue> queues;
        lock (_lock)
        {
            _disposed = true;
            queues = [.. _queues.Values];
            _queues.Clear();
            Volatile.Write(ref _queueCount, 0);
        }

        foreach (var queue in queues)
        {
            queue.Dispose();
        }
    }

    private static string Key(SocketAddress address) => Convert.ToBase64String(address.Buffer.Span[..address.Size]);
}
