using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Transport;

/// <summary>How a <see cref="DatagramSendQueue"/> waits for room in the destination's receive queue.</summary>
internal enum SendWaitMode
{
    /// <summary>
    /// Non-blocking retries: first up to 64 yields of the CPU, then a back-off (1 ms doubling up to 16 ms, on the queue's clock). Never leaves an
    /// asynchronous send pending on the socket, so a socket shared by many destinations is never blocked by one.
    /// </summary>
    Poll,

    /// <summary>
    /// Non-blocking sends from one sending thread of the queue's own, which sleeps in <c>poll(2)</c> on a
    /// <see cref="PeerWaker"/> (a socket connected to the destination) until the kernel reports room in the destination's
    /// queue: no retry until there is room, no yield, no timed back-off, no thread-pool work while waiting, and no
    /// asynchronous send left pending on the socket (whose epoll registration would otherwise wake the socket engine for
    /// every datagram the socket receives). For a socket that sends to this one destination and whose path is
    /// connectable (a client sending to its backend).
    /// </summary>
    PeerWake,
}

/// <summary>Counters of a <see cref="DatagramSendQueue"/>'s waits for room (read atomically; they only grow).</summary>
internal sealed class SendWaitCounters
{
    internal long _fullQueueWaits;
    internal long _emptyWakes;
    internal long _roomWakes;

    /// <summary>Times the sender found the destination's queue full and slept until the kernel reported room (or its wait chunk ended).</summary>
    public long FullQueueWaits => Interlocked.Read(ref _fullQueueWaits);

    /// <summary>Waits that the kernel ended by reporting room in the destination's queue (the destination read).</summary>
    public long RoomWakes => Interlocked.Read(ref _roomWakes);

    /// <summary>Times the kernel reported room but the send was refused again (another sender took the room, or the destination was replaced).</summary>
    public long EmptyWakes => Interlocked.Read(ref _emptyWakes);
}

/// <summary>
/// A FIFO send queue for one socket and one destination, with progress-based overload detection.
/// </summary>
/// <remarks>
/// <para>
/// Fast path (<see cref="TrySendNow"/>): when nothing is queued, a message that fits one datagram is sent with a
/// non-blocking <c>sendto</c>; no allocation, no timer. Otherwise the message is queued (<see cref="EnqueueAsync"/>)
/// and one drain loop per queue sends the queued messages in order, each message's datagrams (fragments)
/// contiguously, waiting for room in the destination's queue.
/// </para>
/// <para>
/// Overload means <b>no progress</b>: when the destination accepts no datagram for the send timeout (measured from the
/// last accepted datagram, or from the moment the idle queue got its first message), the message being sent and every
/// queued message fail with <see cref="DatagramFailure.BackendOverloaded"/>. A destination that is slow but keeps
/// reading is never overloaded, however long the queue takes to drain. Before it is judged, the destination gets a few
/// last retries over ~60 ms of real time, so that a process that was not scheduled for a while does not take its own
/// pause for the destination's (see GraceRetriesAsync). The queue is bounded in messages and bytes
/// (the message being sent included); beyond either bound a message fails at once with
/// <see cref="DatagramFailure.BackendOverloaded"/>, except that an empty queue always accepts one message.
/// </para>
/// <para>
/// Cancellation: a queued message whose token fires before the loop starts sending it is removed and never sent
/// (its task is cancelled). Once the loop has started a message its token is ignored: the message is sent whole
/// (or fails with the whole queue for lack of progress, or on a socket error), so a receiver never sees a message
/// cut short by a caller. The caller's buffer is used until the returned task completes, never after.
/// </para>
/// <para>Thread-safe.</para>
/// </remarks>
internal sealed class DatagramSendQueue : IDisposable
{
    private static readonly TimeSpan MinPollDelay = TimeSpan.FromMilliseconds(1);
    private static readonly TimeSpan MaxPollDelay = TimeSpan.FromMilliseconds(16);

    /// <summary>Retries after the no-progress deadline, over ~60 ms of real time (1+2+4+8+16+16+16 ms), see GraceRetriesAsync.</summary>
    private const int GraceRetries = 7;

    /// <summary>Yield-and-retry rounds before a timed back-off in <see cref="SendWaitMode.Poll"/> mode (see TrySendAfterShortWaits).</summary>
    private const int YieldRetries = 64;

    /// <summary>The longest single sleep of the sending thread in <see cref="SendWaitMode.PeerWake"/> mode: it then checks for dispose and the deadline.</summary>
    private static readonly TimeSpan MaxWakeWait = TimeSpan.FromMilliseconds(50);

    private readonly Socket _socket;
    private readonly SocketAddress _destination;
    private readonly TimeSpan _sendTimeout;
    private readonly int _maxMessages;
    private readonly long _maxBytes;
    private readonly SendWaitMode _waitMode;
    private readonly TimeProvider _timeProvider;
    private readonly Lock _lock = new();
    private readonly LinkedList<Item> _queue = new();
    private Item? _current;
    private int _count;
    private long _bytes;
    private bool _running;
    private bool _disposed;
    private long _lastProgress;
    private readonly PeerWaker? _waker;
    private readonly ManualResetEventSlim? _work;
    private Thread? _sendThread;

    public DatagramSendQueue(Socket socket, SocketAddress destination, TimeSpan sendTimeout, int maxMessages, long maxBytes, SendWaitMode waitMode, TimeProvider timeProvider)
    {
        _socket = socket;
        _destination = destination;
        _sendTimeout = sendTimeout;
        _maxMessages = maxMessages;
        _maxBytes = maxBytes;
        _waitMode = waitMode;
        _timeProvider = timeProvider;
        if (waitMode == SendWaitMode.PeerWake)
        {
            _waker = new PeerWaker(destination);
            _work = new ManualResetEventSlim(false, spinCount: 1);
        }
    }

    /// <summary>The waits for room (counted in <see cref="SendWaitMode.PeerWake"/> mode).</summary>
    public SendWaitCounters WaitCounters { get; } = new();

    /// <summary>The destination.</summary>
    public SocketAddress Destination => _destination;

    /// <summary>The number of messages queued or being sent.</summary>
    public int Count => Volatile.Read(ref _count);

    /// <summary>Whether nothing is queued or being sent (racy; a hint).</summary>
    public bool IsIdle => Volatile.Read(ref _count) == 0;

    /// <summary>
    /// Sends <paramref name="datagram"/> at once if nothing is queued and the destination has room. Allocation-free.
    /// </summary>
    /// <param name="datagram">A whole message; a message larger than one datagram is never sent here.</param>
    /// <returns><see langword="true"/> when sent; <see langword="false"/> when it must be queued.</returns>
    /// <exception cref="DatagramSendException">The destination is absent, or the socket closed.</exception>
    public bool TrySendNow(ReadOnlySpan<byte> datagram) =>
        datagram.Length <= ProtocolConstants.MaxDatagram && Volatile.Read(ref _count) == 0 && DatagramSender.TrySend(_socket, datagram, _destination);

    /// <summary>Queues a whole message and completes when all its datagrams have been accepted by the destination.</summary>
    /// <param name="frame">The whole encoded message; not modified, and used until the task completes.</param>
    /// <param name="cancellationToken">Removes the message while it is still queued.</param>
    /// <returns>A task that completes when the message has been sent.</returns>
    /// <exception cref="DatagramSendException">Queue full or no progress (<see cref="DatagramFailure.BackendOverloaded"/>), destination absent, socket closed.</exception>
    /// <exception cref="OperationCanceledException">The token fired while the message was queued.</exception>
    public Task EnqueueAsync(ReadOnlyMemory<byte> frame, CancellationToken cancellationToken)
    {
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled(cancellationToken);
        }

        var item = new Item(this, frame);
        var start = false;
        lock (_lock)
        {
            if (_disposed)
            {
                return Task.FromException(Closed());
            }

            if (_count != 0 && (_count >= _maxMessages || _bytes + frame.Length > _maxBytes))
            {
                return Task.FromException(new DatagramSendException(
                    DatagramFailure.BackendOverloaded,
                    SocketError.Success,
                    $"The send queue is full ({_count} messages, {_bytes} bytes; limits {_maxMessages} messages, {_maxBytes} bytes)."));
            }

            item.Node = _queue.AddLast(item);
            _count++;
            _bytes += frame.Length;
            if (!_running)
            {
                // The clock of "no progress" starts when an idle queue gets work.
                _running = true;
                _lastProgress = _timeProvider.GetTimestamp();
                start = true;
            }
        }

        if (cancellationToken.CanBeCanceled)
        {
            // Fires at once (and removes the item) if the token was cancelled meanwhile.
            var registration = cancellationToken.UnsafeRegister(static (state, token) => ((Item)state!).Abandon(token), item);
            lock (_lock)
            {
                item.Registration = registration;
            }
        }

        if (start)
        {
            if (_work is not null)
            {
                StartSendThreadOnce();
                _work.Set();
            }
            else
            {
                _ = Task.Run(DrainAsync, CancellationToken.None);
            }
        }

        return item.Task;
    }

    /// <summary>
    /// <see cref="SendWaitMode.PeerWake"/>: the queue's sending thread, started with its first queued message. It parks on
    /// an event while the queue is idle, and drains it when <see cref="EnqueueAsync"/> signals work. Its waits are
    /// blocking <c>poll(2)</c> calls that the kernel ends when the destination reads (see <see cref="PeerWaker"/>).
    /// </summary>
    private void StartSendThreadOnce()
    {
        lock (_lock)
        {
            if (_sendThread is not null || _disposed)
            {
                return;
            }

            _sendThread = new Thread(SendThreadLoop) { IsBackground = true, Name = ".NET Datagram Send" };
        }

        _sendThread.UnsafeStart();
    }

    private void SendThreadLoop()
    {
        var work = _work!;
        while (true)
        {
            work.Wait();
            work.Reset();
            if (Volatile.Read(ref _disposed))
            {
                // Dispose failed what was queued, and nothing is queued after it.
                return;
            }

            // Synchronous in this mode except the rare grace retries: runs to completion on this thread.
            DrainAsync().GetAwaiter().GetResult();
        }
    }

    /// <summary>Fails every queued message with <see cref="DatagramFailure.Closed"/>; later messages fail at once.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            _disposed = true;
        }

        FailAll(null, Closed());
        _waker?.Dispose();
        _work?.Set();
    }

    private static DatagramSendException Closed() =>
        new(DatagramFailure.Closed, SocketError.OperationAborted, "The send queue was closed.");

    private async Task DrainAsync()
    {
        byte[]? fragmentBuffer = null;
        try
        {
            while (true)
            {
                Item item;
                lock (_lock)
                {
                    if (_queue.First is not { } first)
                    {
                        _running = false;
                        return;
                    }

                    item = first.Value;
                    _queue.RemoveFirst();
                    item.Node = null;
                    _current = item;
                }

                try
                {
                    await SendMessageAsync(item.Frame, () => fragmentBuffer ??= ArrayPool<byte>.Shared.Rent(ProtocolConstants.MaxDatagram)).ConfigureAwait(false);
                    Finish(item, null);
                }
                catch (DatagramSendException ex) when (ex.Failure is DatagramFailure.BackendOverloaded or DatagramFailure.Closed)
                {
                    // No progress (or a closed socket): nothing queued can be sent either.
                    FailAll(item, ex);
                    lock (_lock)
                    {
                        _lastProgress = _timeProvider.GetTimestamp();
                    }
                }
                catch (DatagramSendException ex)
                {
                    // This message was refused (absent destination, too large); the next ones get their own answer.
                    Finish(item, ex);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    Finish(item, new DatagramSendException(DatagramFailure.Closed, SocketError.SocketError, $"Sending failed: {ex.Message}", ex));
                }
            }
        }
        finally
        {
            if (fragmentBuffer is not null)
            {
                ArrayPool<byte>.Shared.Return(fragmentBuffer);
            }
        }
    }

    private void Finish(Item item, Exception? exception)
    {
        CancellationTokenRegistration registration;
        lock (_lock)
        {
            if (ReferenceEquals(_current, item))
            {
                _current = null;
                _count--;
                _bytes -= item.Frame.Length;
            }

            registration = item.Registration;
        }

        registration.Unregister();
        if (exception is null)
        {
            item.TrySetResult();
        }
        else
        {
            item.TrySetException(exception);
        }
    }

    /// <summary>Fails <paramref name="current"/> (the message being sent, if any) and every queued message.</summary>
    private void FailAll(Item? current, DatagramSendException exception)
    {
        List<(Item Item, CancellationTokenRegistration Registration)> failed = [];
        lock (_lock)
        {
            while (_queue.First is { } first)
            {
                _queue.RemoveFirst();
                first.Value.Node = null;
                _count--;
                _bytes -= first.Value.Frame.Length;
                failed.Add((first.Value, first.Value.Registration));
            }
        }

        if (current is not null)
        {
            Finish(current, exception);
        }

        foreach (var (item, registration) in failed)
        {
            registration.Unregister();
            item.TrySetException(exception);
        }
    }

    private async ValueTask SendMessageAsync(ReadOnlyMemory<byte> frame, Func<byte[]> fragmentBuffer)
    {
        if (frame.Length <= ProtocolConstants.MaxDatagram)
        {
            await SendDatagramAsync(frame).ConfigureAwait(false);
            return;
        }

        var buffer = fragmentBuffer();
        frame.Span[..ProtocolConstants.HeaderSize].CopyTo(buffer);
        FrameHeader.AddFlags(buffer, MessageFlags.Fragment);
        var payload = frame[ProtocolConstants.HeaderSize..];
        var offset = 0;
        while (offset < payload.Length)
        {
            var count = Math.Min(ProtocolConstants.MaxFragmentData, payload.Length - offset);
            BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(ProtocolConstants.HeaderSize), (uint)offset);
            payload.Span.Slice(offset, count).CopyTo(buffer.AsSpan(ProtocolConstants.FragmentHeaderSize));
            await SendDatagramAsync(buffer.AsMemory(0, ProtocolConstants.FragmentHeaderSize + count)).ConfigureAwait(false);
            offset += count;
        }
    }

    /// <summary>Sends one datagram, waiting for room until the no-progress deadline.</summary>
    private async ValueTask SendDatagramAsync(ReadOnlyMemory<byte> datagram)
    {
        var delay = MinPollDelay;
        var woken = false;
        while (!DatagramSender.TrySend(_socket, datagram.Span, _destination))
        {
            if (woken)
            {
                // The kernel said "room" and the send was refused anyway: someone else took it, or the waiter watches a
                // socket that is gone (the backend was restarted; its new socket is bound at the path). Watch the new one.
                Interlocked.Increment(ref WaitCounters._emptyWakes);
                _waker!.Reconnect();
                woken = false;
            }

            var remaining = RemainingUntilOverloaded();
            if (remaining <= TimeSpan.Zero && remaining != Timeout.InfiniteTimeSpan)
            {
                if (await GraceRetriesAsync(datagram).ConfigureAwait(false))
                {
                    break;
                }

                throw new DatagramSendException(
                    DatagramFailure.BackendOverloaded,
                    SocketError.Success,
                    $"The destination accepted no datagram for the send timeout of {_sendTimeout}.");
            }

            if (_waitMode == SendWaitMode.PeerWake)
            {
                if (Volatile.Read(ref _disposed))
                {
                    throw new DatagramSendException(DatagramFailure.Closed, SocketError.OperationAborted, "The send queue was closed.");
                }

                Interlocked.Increment(ref WaitCounters._fullQueueWaits);
                woken = _waker!.WaitForRoom(remaining == Timeout.InfiniteTimeSpan || remaining > MaxWakeWait ? MaxWakeWait : remaining);
                if (woken)
                {
                    Interlocked.Increment(ref WaitCounters._roomWakes);
                }

                continue;
            }

            if (_waitMode == SendWaitMode.Poll)
            {
                if (TrySendAfterShortWaits(datagram.Span))
                {
                    break;
                }

                await Task.Delay(remaining == Timeout.InfiniteTimeSpan || remaining >= delay ? delay : remaining, _timeProvider).ConfigureAwait(false);
                delay = delay * 2 > MaxPollDelay ? MaxPollDelay : delay * 2;
                continue;
            }

            throw new InvalidOperationException($"Unknown wait mode {_waitMode}.");
        }

        lock (_lock)
        {
            _lastProgress = _timeProvider.GetTimestamp();
        }
    }

    /// <summary>
    /// Retries a refused datagram up to <see cref="YieldRetries"/> times, yielding the CPU before each try, before the
    /// caller falls back to timed back-off. A full receive queue (10 datagrams by default, see PLATFORM.md) is usually
    /// drained within microseconds by a receiver that only needs to be scheduled, and a yield lets it run; the timed
    /// back-off waits at least a millisecond, orders of magnitude more than one exchange. Measured on 2 cores
    /// (bench/results, 2026-11-25): GET at concurrency 32 went from ~6,000 to ~16,000 requests/s through the gateway;
    /// 4 yields followed by 25–400 µs sleeps reached only ~11,000, and 256 yields no more than 64.
    /// </summary>
    private bool TrySendAfterShortWaits(ReadOnlySpan<byte> datagram)
    {
        for (var i = 0; i < YieldRetries; i++)
        {
            Thread.Yield();
            if (DatagramSender.TrySend(_socket, datagram, _destination))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// The last chance before "overloaded": a few non-blocking retries over ~60 ms of <b>real</b> time. When this
    /// process was not scheduled for a while (a loaded machine, a GC pause), the deadline passes for the sender and
    /// the destination alike (an in-process backend could not read either); these retries let the destination catch
    /// up before it is judged. Deliberately on <see cref="TimeProvider.System"/>: this is about the OS scheduler, not
    /// a timeout of the protocol, and a fake clock would never let it finish.
    /// </summary>
    private async ValueTask<bool> GraceRetriesAsync(ReadOnlyMemory<byte> datagram)
    {
        var delay = MinPollDelay;
        for (var i = 0; i < GraceRetries; i++)
        {
            await Task.Delay(delay, TimeProvider.System).ConfigureAwait(false);
            if (DatagramSender.TrySend(_socket, datagram.Span, _destination))
            {
                return true;
            }

            delay = delay * 2 > MaxPollDelay ? MaxPollDelay : delay * 2;
        }

        return false;
    }

    /// <summary>The time left before the queue counts as overloaded (zero or less: none; infinite: no limit).</summary>
    private TimeSpan RemainingUntilOverloaded()
    {
        if (_sendTimeout == Timeout.InfiniteTimeSpan)
        {
            return Timeout.InfiniteTimeSpan;
        }

        long lastProgress;
        lock (_lock)
        {
            lastProgress = _lastProgress;
        }

        var remaining = _sendTimeout - _timeProvider.GetElapsedTime(lastProgress);
        return remaining <= TimeSpan.Zero ? TimeSpan.Zero : remaining;
    }

    private sealed class Item(DatagramSendQueue owner, ReadOnlyMemory<byte> frame) : TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)
    {
        public ReadOnlyMemory<byte> Frame { get; } = frame;

        /// <summary>The node while queued (guarded by the owner's lock); null once taken or removed.</summary>
        public LinkedListNode<Item>? Node { get; set; }

        /// <summary>The caller's token registration (guarded by the owner's lock).</summary>
        public CancellationTokenRegistration Registration { get; set; }

        public void Abandon(CancellationToken token)
        {
            lock (owner._lock)
            {
                if (Node is null)
                {
                    // Being sent, or already finished: a started message is never cut short.
                    return;
                }

                owner._queue.Remove(Node);
                Node = null;
                owner._count--;
                owner._bytes -= Frame.Length;
            }

            TrySetCanceled(token);
        }
    }
}
