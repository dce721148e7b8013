using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

using Gateway.Ipc.Diagnostics;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Transport;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Gateway.Ipc.Client;

/// <summary>
/// Sends requests to one backend over a Unix datagram socket and correlates its replies by correlation ID.
/// </summary>
/// <remarks>
/// <para>
/// Each client owns one bound reply socket (a unique abstract name by default) and one receive loop. Sending
/// through its own socket keeps a full backend from delaying the requests of other clients (a pending send
/// blocks the socket it goes through, see PLATFORM.md); use one client per backend.
/// </para>
/// <para>
/// Hot path: when no request is queued, a request that fits one datagram is sent with a non-blocking <c>sendto</c>
/// (no timer, no allocation). Otherwise (the backend's queue is full, requests are already queued, or the request is
/// fragmented) it joins the client's FIFO send queue, drained in order by the queue's own sending thread, each fragmented
/// request kept contiguous. While the backend's queue is full that thread sleeps in <c>poll(2)</c> on a socket connected to
/// the backend, which the kernel wakes when the backend reads (its peer wake): no retries, no yields, no thread-pool work
/// while waiting (<see cref="DatagramClientStatistics.FullQueueWaits"/>). The reply socket itself stays unconnected. The backend is <see cref="DatagramFailure.BackendOverloaded"/> only when it makes <b>no progress</b>: it
/// accepts no datagram for <see cref="DatagramClientOptions.SendTimeout"/>; then every queued request fails. A slow
/// backend that keeps reading is not overloaded. The queue is bounded by <see cref="DatagramClientOptions.MaxSendQueueLength"/>
/// and <see cref="DatagramClientOptions.MaxSendQueueBytes"/>; beyond them a request fails at once with
/// <see cref="DatagramFailure.BackendOverloaded"/>. A queued request whose caller cancels, or whose reply timeout fires,
/// leaves the queue and is never sent; once its sending has started it is sent whole (a fragmented request is never cut
/// short), and <see cref="SendAsync"/> returns only after the socket no longer reads the caller's frame. Per request the client allocates its pending entry (a <see cref="TaskCompletionSource{TResult}"/>),
/// the reply timer when a timeout is given, and the reply object; the reply payload lives in a pooled buffer.
/// </para>
/// <para>
/// Replies are accepted only from the exact address the requests go to (byte-wise comparison of the socket
/// address; the backend must be bound to the same path string as <see cref="BackendPath"/>).
/// </para>
/// <para>
/// With <see cref="DatagramClientOptions.ExpectedReplyUid"/> set, replies are also accepted only from a process of that
/// uid (<c>SCM_CREDENTIALS</c>, read with <c>recvmsg</c>); others are dropped and counted in
/// <see cref="DatagramClientStatistics.ForeignUidReplies"/>.
/// </para>
/// <para>Thread-safe.</para>
/// </remarks>
public sealed partial class DatagramClient : IAsyncDisposable, IDisposable
{
    private static readonly TimeSpan MaxTimerDelay = TimeSpan.FromMilliseconds(uint.MaxValue - 1);

    private readonly DatagramClientOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly DropLogThrottle _dropLog;
    private readonly ILogger _logger;
    private readonly Socket _socket;
    private readonly SocketAddress _backendAddress;
    private readonly byte[] _backendAddressBytes;
    private readonly ConcurrentDictionary<ulong, PendingRequest> _pending = new();
    private readonly ConcurrentDictionary<ulong, ReplyStream> _streams = new();
    private readonly Reassembler _reassembler;
    private readonly string? _replyPath;
    private readonly UnixSocketFile.FileIdentity? _replyFile;
    private readonly Task _receiveLoop;
    private readonly DatagramSendQueue _sendQueue;
    private readonly DatagramTap? _tap;
    private long _nextCorrelationId;
    private int _disposed;

    /// <summary>Creates the client: binds its reply socket and starts its receive loop.</summary>
    /// <param name="options">The options; <see cref="DatagramClientOptions.BackendPath"/> is required.</param>
    /// <param name="timeProvider">The clock for timeouts (default <see cref="TimeProvider.System"/>).</param>
    /// <param name="loggerFactory">The logger factory (default: no logging).</param>
    /// <exception cref="ArgumentException">An option is invalid.</exception>
    /// <exception cref="SocketException">The reply socket could not be bound (e.g. <see cref="DatagramClientOptions.ReplyPath"/> exists).</exception>
    public DatagramClient(DatagramClientOptions options, TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = new DatagramClientOptions
        {
            BackendPath = options.BackendPath,
            ReplyPath = options.ReplyPath,
            SendTimeout = options.SendTimeout,
            MaxSendQueueLength = options.MaxSendQueueLength,
            MaxSendQueueBytes = options.MaxSendQueueBytes,
            MaxMessageBytes = options.MaxMessageBytes,
            MaxReassemblyBytes = options.MaxReassemblyBytes,
            ReassemblyTimeout = options.ReassemblyTimeout,
            ExpectedReplyUid = options.ExpectedReplyUid,
            Tap = options.Tap,
            StreamWindowBytes = options.StreamWindowBytes,
        };
        _tap = options.Tap;
        _timeProvider = timeProvider ?? TimeProvider.System;
        _dropLog = new DropLogThrottle(_timeProvider);
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<DatagramClient>();
        BackendPath = _options.BackendPath;
        _backendAddress = new UnixDomainSocketEndPoint(BackendPath).Serialize();
        _backendAddressBytes = _backendAddress.Buffer.Span[.._backendAddress.Size].ToArray();
        _reassembler = new Reassembler(_options.MaxMessageBytes, _options.MaxReassemblyBytes, _options.ReassemblyTimeout, _timeProvider);
        Statistics = new DatagramClientStatistics(_reassembler.Statistics);
        _nextCorrelationId = BitConverter.ToInt64(Transport.SecureRandom.GetBytes(8));

        _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        try
        {
            if (_options.ReplyPath is null)
            {
                LocalAddress = BindAbstract(_socket);
            }
            else
            {
                _replyPath = _options.ReplyPath;
                _socket.Bind(new SocketAddressEndPoint(new UnixDomainSocketEndPoint(_replyPath).Serialize()));
                _replyFile = UnixSocketFile.TryGetIdentity(_replyPath, out var identity) ? identity : null;
                LocalAddress = _replyPath;
            }

            if (_options.ExpectedReplyUid is not null)
            {
                // Before the first request goes out, so that every reply carries its sender's credentials.
                CredentialReceiver.EnablePassCredentials(_socket);
            }

            _socket.Blocking = false;
        }
        catch
        {
            _socket.Dispose();
            throw;
        }

        _sendQueue = new DatagramSendQueue(
            _socket, _backendAddress, _options.SendTimeout, _options.MaxSendQueueLength, _options.MaxSendQueueBytes, SendWaitMode.PeerWake, _timeProvider);
        Statistics._sendWaits = _sendQueue.WaitCounters;
        Log.Started(_logger, LocalAddress, BackendPath);

        // A dedicated thread waits in poll() and drains replies with synchronous receives: no socket-engine and
        // thread-pool trip per reply, and a burst of replies leaves the 11-datagram queue fast (a full queue makes
        // the backend's sends wait). Callers' continuations still run on the thread pool (never on this thread).
        _receiveLoop = Task.Factory.StartNew(ReceiveLoop, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);
    }

    /// <summary>The backend's socket path.</summary>
    public string BackendPath { get; }

    /// <summary>The reply socket's address: <c>@name</c> for an abstract name, else the path.</summary>
    public string LocalAddress { get; }

    /// <summary>The number of entries in the pending table (requests and pings awaiting a reply).</summary>
    public int PendingCount => _pending.Count;

    /// <summary>The number of streamed replies open (head received, neither ended nor disposed).</summary>
    public int OpenStreamCount => _streams.Count;

    /// <summary>The client's counters.</summary>
    public DatagramClientStatistics Statistics { get; }

    /// <summary>Returns a new correlation ID: a random 64-bit start, incremented atomically, never 0.</summary>
    /// <returns>The ID.</returns>
    public ulong NextCorrelationId()
    {
        ulong id;
        do
        {
            id = (ulong)Interlocked.Increment(ref _nextCorrelationId);
        }
        while (id == 0);

        return id;
    }

    /// <summary>
    /// Sends an encoded REQUEST (fragmenting it when it is larger than one datagram) and waits for the RESPONSE
    /// or ERROR with its correlation ID (any attempt) from <see cref="BackendPath"/>.
    /// </summary>
    /// <param name="frame">The whole encoded request (<see cref="FrameWriter.Complete"/>). It is not modified and must not be modified until the task completes.</param>
    /// <param name="timeout">The reply timeout of this attempt, measured from the call (<see cref="Timeout.InfiniteTimeSpan"/> = none).</param>
    /// <param name="cancellationToken">The caller's token.</param>
    /// <returns>The reply; dispose it.</returns>
    /// <exception cref="DatagramException">The request failed; <see cref="DatagramException.Failure"/> says why.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired.</exception>
    /// <exception cref="InvalidOperationException">A request with the same correlation ID is pending.</exception>
    /// <exception cref="ArgumentException"><paramref name="frame"/> is not an encoded REQUEST.</exception>
    public Task<DatagramReply> SendAsync(ReadOnlyMemory<byte> frame, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        FrameHeader header;
        try
        {
            header = FrameHeader.ReadDatagram(frame.Span);
        }
        catch (ProtocolException ex)
        {
            throw new ArgumentException($"The frame is not a valid encoded message: {ex.Message}", nameof(frame), ex);
        }

        if (header.Kind != MessageKind.Request || header.IsFragment)
        {
            throw new ArgumentException("The frame must be a whole REQUEST.", nameof(frame));
        }

        ValidateTimeout(timeout);
        if (header.PayloadLength > (uint)_options.MaxMessageBytes)
        {
            Interlocked.Increment(ref Statistics._sendFailures);
            return Task.FromException<DatagramReply>(new DatagramException(
                DatagramFailure.TooLarge, BackendPath, $"The request payload has {header.PayloadLength} bytes; at most {_options.MaxMessageBytes} are allowed."));
        }

        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<DatagramReply>(cancellationToken);
        }

        return SendCoreAsync(frame, header.CorrelationId, isPing: false, timeout, cancellationToken, (header.Features & StreamFeatures.StreamReply) != 0);
    }

    /// <summary>Sends a stream's END or CREDIT; never throws. A CREDIT that finds the backend's queue full waits in the send queue (a lost CREDIT would stall the stream).</summary>
    internal void SendStreamControl(MessageKind kind, ulong correlationId, ushort attempt, uint value)
    {
        if (Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        var frame = new byte[StreamFrames.ControlSize];
        StreamFrames.WriteControl(frame, kind, correlationId, attempt, value);
        try
        {
            if (_sendQueue.TrySendNow(frame))
            {
                return;
            }

            _ = QueueControlAsync(frame);
        }
        catch (DatagramSendException ex)
        {
            Log.CancelNotSent(_logger, correlationId, BackendPath, ex.SocketError);
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>Forgets a stream (its reader disposed it).</summary>
    internal void RemoveStream(ReplyStream stream)
    {
        _streams.TryRemove(new KeyValuePair<ulong, ReplyStream>(stream.CorrelationId, stream));
        CloseUpload(stream.CorrelationId);
    }

    private async Task QueueControlAsync(byte[] frame)
    {
        try
        {
            await _sendQueue.EnqueueAsync(frame, CancellationToken.None).ConfigureAwait(false);
        }
        catch (Exception ex) when (ex is DatagramSendException or ObjectDisposedException or OperationCanceledException)
        {
            // The backend makes no progress or the client closed: the stream fails on its own.
        }
    }

    /// <summary>Sends a best-effort CANCEL for <paramref name="correlationId"/>. Never blocks (dropped when the backend's queue is full) and never throws.</summary>
    /// <param name="correlationId">The request's correlation ID.</param>
    public void SendCancel(ulong correlationId)
    {
        if (correlationId == 0 || Volatile.Read(ref _disposed) != 0)
        {
            return;
        }

        Span<byte> frame = stackalloc byte[ProtocolConstants.HeaderSize];
        new FrameHeader(MessageKind.Cancel, MessageFlags.None, 0, correlationId, 0, 0).Write(frame);
        try
        {
            if (!DatagramSender.TrySend(_socket, frame, _backendAddress))
            {
                Log.CancelNotSent(_logger, correlationId, BackendPath, SocketError.WouldBlock);
            }
            else
            {
                _tap?.Observer?.OnDatagram(DatagramDirection.Sent, BackendPath, frame);
            }
        }
        catch (DatagramSendException ex)
        {
            Log.CancelNotSent(_logger, correlationId, BackendPath, ex.SocketError);
        }
        catch (ObjectDisposedException)
        {
            // Disposed concurrently: nothing to cancel any more.
        }
    }

    /// <summary>Sends a PING and waits for the PONG.</summary>
    /// <param name="timeout">How long to wait (<see cref="Timeout.InfiniteTimeSpan"/> = no limit).</param>
    /// <param name="cancellationToken">The caller's token.</param>
    /// <returns><see langword="true"/> iff the PONG arrived in time; <see langword="false"/> on timeout, absent or overloaded backend, or a disposed client.</returns>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired.</exception>
    public async Task<bool> PingAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ValidateTimeout(timeout);
        cancellationToken.ThrowIfCancellationRequested();
        var id = NextCorrelationId();
        var frame = new byte[ProtocolConstants.HeaderSize];
        new FrameHeader(MessageKind.Ping, MessageFlags.None, 0, id, 0, 0).Write(frame);
        try
        {
            using var pong = await SendCoreAsync(frame, id, isPing: true, timeout, cancellationToken).ConfigureAwait(false);
            return true;
        }
        catch (DatagramException ex)
        {
            Log.PingFailed(_logger, BackendPath, ex.Failure);
            return false;
        }
    }

    /// <summary>Stops the receive loop, fails every pending request with <see cref="DatagramFailure.Closed"/> and unlinks the reply path if it is still ours.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // Aborts the pending receive and any waiting send; then fails whatever is still queued.
        _socket.Dispose();
        _sendQueue.Dispose();
        foreach (var entry in _pending)
        {
            // Failing it removes it from the table.
            entry.Value.Fail(new DatagramException(DatagramFailure.Closed, BackendPath));
        }

        foreach (var stream in _streams)
        {
            stream.Value.Fail(new DatagramException(DatagramFailure.Closed, BackendPath));
        }

        if (_replyPath is not null)
        {
            if (_replyFile is { } identity && UnixSocketFile.DeleteIfSame(_replyPath, identity))
            {
                Log.ReplyPathRemoved(_logger, _replyPath);
            }
            else
            {
                Log.ReplyPathKept(_logger, _replyPath);
            }
        }

        Log.Stopped(_logger, LocalAddress, BackendPath);
    }

    /// <summary>Like <see cref="Dispose"/>, then waits for the receive loop to end.</summary>
    /// <returns>A task that completes when the loop has ended.</returns>
    public async ValueTask DisposeAsync()
    {
        Dispose();
        await _receiveLoop.ConfigureAwait(false);
    }

    private static void ValidateTimeout(TimeSpan timeout)
    {
        if (timeout != Timeout.InfiniteTimeSpan && (timeout <= TimeSpan.Zero || timeout > MaxTimerDelay))
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), timeout, "The timeout must be positive (at most ~49 days) or infinite.");
        }
    }

    private static string BindAbstract(Socket socket)
    {
        // A random 64-bit name; a collision is astronomically unlikely, but retry anyway.
        for (var attempt = 0; ; attempt++)
        {
            var name = "gw-" + Convert.ToHexStringLower(Transport.SecureRandom.GetBytes(8));
            try
            {
                socket.Bind(new UnixDomainSocketEndPoint("\0" + name));
                return "@" + name;
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse && attempt < 3)
            {
            }
        }
    }

    /// <summary>
    /// Not async when the datagram goes out at once (the common case): the pending entry's own task is returned, and
    /// the entry removes itself from the pending table and stops its timer when it completes, before its task does.
    /// A held request keeps one state machine less (bench/README.md). A queued send is awaited first, because the
    /// queue may still read the frame until the request is withdrawn from it.
    /// </summary>
    private Task<DatagramReply> SendCoreAsync(ReadOnlyMemory<byte> frame, ulong correlationId, bool isPing, TimeSpan timeout, CancellationToken cancellationToken, bool acceptsStream = false)
    {
        var entry = new PendingRequest(this, correlationId, isPing) { AcceptsStream = acceptsStream };
        if (!_pending.TryAdd(correlationId, entry))
        {
            return Task.FromException<DatagramReply>(new InvalidOperationException($"A request with correlation ID {correlationId} is already pending."));
        }

        if (Volatile.Read(ref _disposed) != 0)
        {
            // Dispose ran before the entry was added and did not see it.
            entry.Fail(new DatagramException(DatagramFailure.Closed, BackendPath));
            return entry.Task;
        }

        entry.Start(timeout, cancellationToken);
        if (!entry.Task.IsCompleted)
        {
            var send = SendFrameAsync(frame, entry);
            if (!send.IsCompletedSuccessfully)
            {
                return AwaitSendThenReplyAsync(send, entry);
            }
        }

        return entry.Task;
    }

    private static async Task<DatagramReply> AwaitSendThenReplyAsync(ValueTask send, PendingRequest entry)
    {
        await send.ConfigureAwait(false);

        // The parameter lives in the state machine: let go of the finished send (its state machine and CTS) while the
        // reply is awaited, which is most of a held request's life.
        send = default;
        return await entry.Task.ConfigureAwait(false);
    }

    private ValueTask SendFrameAsync(ReadOnlyMemory<byte> frame, PendingRequest entry)
    {
        // Observed before the send: once it is out, the reply can be received (and observed) before this thread runs
        // again, and a capture must not show the reply before its request.
        var observer = _tap?.Observer;
        observer?.OnDatagram(DatagramDirection.Sent, BackendPath, frame.Span);
        try
        {
            if (_sendQueue.TrySendNow(frame.Span))
            {
                Interlocked.Increment(ref Statistics._requestsSent);
                return default;
            }
        }
        catch (DatagramSendException ex)
        {
            FailSend(entry, ex);
            return default;
        }

        return SendQueuedAsync(frame, entry, observed: observer is not null);
    }

    private async ValueTask SendQueuedAsync(ReadOnlyMemory<byte> frame, PendingRequest entry, bool observed)
    {
        // The backend's queue is full, other requests are queued, or the message is fragmented: queue it. The CTS fires
        // when the request completes (timeout, caller cancellation, dispose) and removes it if it is still queued; the
        // queue returns only once it no longer uses the frame.
        using var abandon = new CancellationTokenSource();
        if (!entry.SetSendCancellation(abandon))
        {
            return;
        }

        // The wait is measured only when someone listens to the histogram (the timestamp is taken before the request
        // counts as queued, so a reader of QueuedSends sees a wait that started no later).
        var measure = IpcDiagnostics.SendQueueWaitEnabled;
        var started = measure ? _timeProvider.GetTimestamp() : 0;
        Interlocked.Increment(ref Statistics._queuedSends);
        try
        {
            await _sendQueue.EnqueueAsync(frame, abandon.Token).ConfigureAwait(false);
            Interlocked.Increment(ref Statistics._requestsSent);
            if (!observed)
            {
                _tap?.Observer?.OnDatagram(DatagramDirection.Sent, BackendPath, frame.Span);
            }
            if (measure)
            {
                IpcDiagnostics.RecordSendQueueWait(BackendPath, _timeProvider.GetElapsedTime(started));
            }
        }
        catch (OperationCanceledException)
        {
            // The request completed while it was queued: it was never sent.
        }
        catch (DatagramSendException ex)
        {
            FailSend(entry, ex);
        }
        finally
        {
            entry.ClearSendCancellation();
        }
    }

    private void FailSend(PendingRequest entry, DatagramSendException exception)
    {
        if (entry.Fail(new DatagramException(exception.Failure, BackendPath, $"Sending to backend '{BackendPath}' failed: {exception.Message}", exception)))
        {
            Interlocked.Increment(ref Statistics._sendFailures);
            Log.SendFailed(_logger, BackendPath, exception.Failure, exception.SocketError);
        }
    }

    private void ReceiveLoop()
    {
        var buffer = GC.AllocateUninitializedArray<byte>(ProtocolConstants.MaxDatagram + 1, pinned: true);
        var sender = new SocketAddress(AddressFamily.Unix, UnixAddress.MaxSize);
        var expectedUid = _options.ExpectedReplyUid;
        try
        {
            while (true)
            {
                int received;
                var senderUid = -1L;
                var truncated = false;
                try
                {
                    var result = Receive(buffer, sender);
                    received = result.Length;
                    senderUid = result.Uid;
                    truncated = result.Truncated;
                }
                catch (Exception ex) when (ex is ObjectDisposedException or SocketException or OperationCanceledException && Volatile.Read(ref _disposed) != 0)
                {
                    break;
                }
                catch (SocketException ex)
                {
                    Log.ReceiveFailed(_logger, LocalAddress, ex);
                    continue;
                }

                Interlocked.Increment(ref Statistics._datagramsReceived);
                try
                {
                    var from = sender.Buffer.Span[..sender.Size];
                    if (expectedUid is { } uid && senderUid != uid && UnixAddress.SameAddress(from, _backendAddressBytes))
                    {
                        // From the backend's address, but not from its user: someone else bound that path.
                        Interlocked.Increment(ref Statistics._foreignUidReplies);
                        Log.ForeignUidDatagram(_logger, senderUid, BackendPath, uid);
                        continue;
                    }

                    OnDatagram(buffer.AsSpan(0, received), from, truncated || received == buffer.Length);
                }
                catch (Exception ex) when (ex is not OutOfMemoryException)
                {
                    // Never let one datagram stop the loop: every pending request would then time out.
                    Interlocked.Increment(ref Statistics._malformedDatagrams);
                    Log.DatagramHandlingFailed(_logger, BackendPath, ex);
                }
            }
        }
        finally
        {
            _reassembler.Dispose();
        }
    }

    /// <summary>
    /// Takes the next datagram (<see cref="CredentialReceiver.ReceiveOrWait"/>); throws once disposed.
    /// The sender's uid is -1 unless <c>SO_PASSCRED</c> is on (<see cref="DatagramClientOptions.ExpectedReplyUid"/>).
    /// </summary>
    private CredentialReceiveResult Receive(byte[] buffer, SocketAddress sender)
    {
        while (true)
        {
            if (Volatile.Read(ref _disposed) != 0)
            {
                throw new OperationCanceledException();
            }

            if (CredentialReceiver.ReceiveOrWait(_socket, buffer, sender.Buffer.Span, out var result))
            {
                sender.Size = Math.Min(result.AddressLength, UnixAddress.MaxSize);
                return result;
            }
        }
    }

    private void OnDatagram(ReadOnlySpan<byte> datagram, ReadOnlySpan<byte> sender, bool oversized)
    {
        if (_reassembler.PartialCount != 0)
        {
            _reassembler.Sweep();
        }

        if (!UnixAddress.SameAddress(sender, _backendAddressBytes))
        {
            Interlocked.Increment(ref Statistics._spoofedReplies);
            var dropLevel = DropLevel();
            if (_logger.IsEnabled(dropLevel))
            {
                var senderText = UnixAddress.Format(sender);
                Log.SpoofedDatagram(_logger, dropLevel, senderText, BackendPath);
            }
            return;
        }

        _tap?.Observer?.OnDatagram(DatagramDirection.Received, BackendPath, datagram);
        if (oversized)
        {
            Interlocked.Increment(ref Statistics._oversizedDatagrams);
            var dropLevel = DropLevel();
            if (_logger.IsEnabled(dropLevel))
            {
                Log.OversizedDatagram(_logger, dropLevel, BackendPath, ProtocolConstants.MaxDatagram);
            }
            return;
        }

        FrameHeader header;
        try
        {
            header = FrameHeader.ReadDatagram(datagram);
        }
        catch (ProtocolException ex)
        {
            OnMalformed(ex.Reason, ex.Message);
            return;
        }

        if (header.Kind is not (MessageKind.Response or MessageKind.Error or MessageKind.Pong or MessageKind.ResponseHead or MessageKind.Chunk or MessageKind.End or MessageKind.Credit))
        {
            OnMalformed(ProtocolViolation.UnknownKind, $"A client does not accept {header.Kind} messages.");
            return;
        }

        if (header.Kind == MessageKind.Credit)
        {
            OnCredit(header.CorrelationId, datagram[ProtocolConstants.HeaderSize..]);
            return;
        }

        if (header.Kind is MessageKind.Chunk or MessageKind.End or MessageKind.Error or MessageKind.ResponseHead
            && !_streams.IsEmpty && _streams.TryGetValue(header.CorrelationId, out var stream))
        {
            OnStreamMessage(stream, header, datagram[ProtocolConstants.HeaderSize..]);
            return;
        }

        if (header.Kind is MessageKind.Chunk or MessageKind.End)
        {
            // A stream that ended, was aborted or disposed: late.
            Interlocked.Increment(ref Statistics._lateReplies);
            return;
        }

        if (!header.IsFragment)
        {
            Deliver(header, datagram[ProtocolConstants.HeaderSize..], null);
            return;
        }

        if (FrameHeader.ReadFragmentOffset(datagram) == 0 && !_pending.ContainsKey(header.CorrelationId))
        {
            // Do not hold memory for a message nobody waits for.
            Interlocked.Increment(ref Statistics._lateReplies);
            Log.LateReply(_logger, header.CorrelationId, header.Kind, BackendPath);
            return;
        }

        Interlocked.Increment(ref Statistics._fragmentsReceived);

        var result = _reassembler.Add(sender, datagram, out var message);
        switch (result)
        {
            case ReassemblyResult.Incomplete:
                return;
            case ReassemblyResult.Completed:
                Deliver(message!.Header, message.Payload.Span, message);
                return;
            case ReassemblyResult.TooLarge:
                Log.ReplyTooLarge(_logger, header.CorrelationId, header.PayloadLength, _options.MaxMessageBytes);
                if (_pending.TryGetValue(header.CorrelationId, out var entry))
                {
                    entry.Fail(new DatagramException(
                        DatagramFailure.TooLarge, BackendPath, $"The reply payload has {header.PayloadLength} bytes; at most {_options.MaxMessageBytes} are accepted."));
                }

                return;
            default:
                Log.ReassemblyDropped(_logger, header.CorrelationId, result);
                return;
        }
    }

    private void OnStreamMessage(ReplyStream stream, FrameHeader header, ReadOnlySpan<byte> payload)
    {
        string? violation;
        try
        {
            switch (header.Kind)
            {
                case MessageKind.Chunk:
                    var data = StreamFrames.ReadChunk(payload, out var sequence);
                    violation = stream.OnChunk(sequence, data);
                    break;
                case MessageKind.End:
                    violation = stream.OnEnd(StreamFrames.ReadEnd(payload));
                    if (violation is null)
                    {
                        _streams.TryRemove(new KeyValuePair<ulong, ReplyStream>(stream.CorrelationId, stream));
                        CloseUpload(stream.CorrelationId);
                    }

                    break;
                case MessageKind.Error:
                    var error = ErrorView.Read(payload);
                    _streams.TryRemove(new KeyValuePair<ulong, ReplyStream>(stream.CorrelationId, stream));
                    CloseUpload(stream.CorrelationId);
                    stream.Fail(new DatagramException(
                        DatagramFailure.StreamAborted, BackendPath, $"The backend '{BackendPath}' aborted its streamed reply with ERROR {error.Code}: {error.GetMessage()}"));
                    return;
                default:
                    violation = "a second head for an open stream";
                    break;
            }
        }
        catch (ProtocolException ex)
        {
            violation = ex.Message;
        }

        if (violation is not null)
        {
            OnMalformed(ProtocolViolation.BadField, violation);
            _streams.TryRemove(new KeyValuePair<ulong, ReplyStream>(stream.CorrelationId, stream));
            CloseUpload(stream.CorrelationId);
            if (stream.Fail(new DatagramException(DatagramFailure.StreamAborted, BackendPath, $"The backend '{BackendPath}' broke its streamed reply: {violation}.")))
            {
                SendCancel(stream.CorrelationId);
            }
        }
    }

    private void Deliver(FrameHeader header, ReadOnlySpan<byte> payload, ReassembledMessage? message)
    {
        if (!_pending.TryGetValue(header.CorrelationId, out var entry))
        {
            message?.Dispose();
            Interlocked.Increment(ref Statistics._lateReplies);
            // A late RESPONSE_HEAD gets no CANCEL here: the request's failure (timeout, caller gone) already sent one.
            Log.LateReply(_logger, header.CorrelationId, header.Kind, BackendPath);
            return;
        }

        if (header.Kind == MessageKind.ResponseHead)
        {
            DeliverHead(entry, header, payload);
            return;
        }

        if (entry.IsPing != (header.Kind == MessageKind.Pong))
        {
            message?.Dispose();
            OnMalformed(ProtocolViolation.UnknownKind, $"A {header.Kind} does not answer a {(entry.IsPing ? "PING" : "REQUEST")}.");
            return;
        }

        DatagramReply reply;
        if (header.Kind == MessageKind.Pong)
        {
            if (!payload.IsEmpty)
            {
                OnMalformed(ProtocolViolation.BadLength, "A PONG carries a payload.");
                return;
            }

            reply = DatagramReply.Empty(header);
            Volatile.Write(ref _backendFeatures, (int)header.Features);
        }
        else
        {
            try
            {
                if (header.Kind == MessageKind.Response)
                {
                    _ = ResponseView.Read(payload);
                }
                else
                {
                    _ = ErrorView.Read(payload);
                }
            }
            catch (ProtocolException ex)
            {
                message?.Dispose();
                OnMalformed(ex.Reason, ex.Message);
                entry.Fail(new DatagramException(DatagramFailure.MalformedReply, BackendPath, $"The backend '{BackendPath}' sent a malformed {header.Kind}: {ex.Message}", ex));
                return;
            }

            reply = message is null ? DatagramReply.Copy(header, payload) : DatagramReply.FromReassembled(message);
        }

        if (!_uploads.IsEmpty && header.Kind != MessageKind.Pong)
        {
            // A RESPONSE or ERROR ends the request's upload, if it has one (docs/protocol.md §4.5.3).
            CloseUpload(header.CorrelationId);
        }

        if (entry.Complete(reply))
        {
            Interlocked.Increment(ref Statistics._repliesReceived);
        }
        else
        {
            reply.Dispose();
            Interlocked.Increment(ref Statistics._lateReplies);
            Log.LateReply(_logger, header.CorrelationId, header.Kind, BackendPath);
        }
    }

    private void DeliverHead(PendingRequest entry, FrameHeader header, ReadOnlySpan<byte> payload)
    {
        string? problem = entry.AcceptsStream ? null : "a RESPONSE_HEAD to a request that did not accept a streamed reply";
        if (problem is null)
        {
            try
            {
                _ = ResponseView.ReadHead(payload);
            }
            catch (ProtocolException ex)
            {
                problem = ex.Message;
            }
        }

        if (problem is not null)
        {
            OnMalformed(ProtocolViolation.BadField, problem);
            if (entry.Fail(new DatagramException(DatagramFailure.MalformedReply, BackendPath, $"The backend '{BackendPath}' sent a malformed RESPONSE_HEAD: {problem}")))
            {
                SendCancel(header.CorrelationId);
            }

            return;
        }

        // Registered before the entry completes: this loop delivers the stream's chunks, and none arrives before the
        // credit below is sent.
        var stream = new ReplyStream(this, header.CorrelationId, header.Attempt, _options.StreamWindowBytes);
        _streams[header.CorrelationId] = stream;
        var reply = DatagramReply.Streamed(header, payload, stream);
        if (entry.Complete(reply))
        {
            Interlocked.Increment(ref Statistics._repliesReceived);
            SendStreamControl(MessageKind.Credit, header.CorrelationId, header.Attempt, (uint)_options.StreamWindowBytes);
        }
        else
        {
            reply.Dispose();
            Interlocked.Increment(ref Statistics._lateReplies);
        }
    }

    private void OnMalformed(ProtocolViolation violation, string detail)
    {
        Interlocked.Increment(ref Statistics._malformedDatagrams);
        var dropLevel = DropLevel();
        if (_logger.IsEnabled(dropLevel))
        {
            Log.MalformedDatagram(_logger, dropLevel, BackendPath, violation, detail);
        }
    }

    /// <summary>Warning for the first drop of a window, Debug for the rest (see <see cref="DropLogThrottle"/>).</summary>
    private LogLevel DropLevel()
    {
        var level = _dropLog.Next(out var demoted);
        if (demoted > 0)
        {
            Log.DropsDemoted(_logger, demoted, LocalAddress);
        }

        return level;
    }

    /// <summary>
    /// A pending request: completed exactly once, by its reply, its timeout, its caller's token, a send failure or
    /// dispose. The one that completes it first removes it from the pending table and stops its timer and token
    /// registration, then completes its task: whoever awaits the task sees the table without it.
    /// </summary>
    private sealed class PendingRequest : TaskCompletionSource<DatagramReply>
    {
        private static readonly TimerCallback s_onTimeout = static state => ((PendingRequest)state!).OnTimeout();
        private static readonly Action<object?, CancellationToken> s_onCanceled = static (state, token) => ((PendingRequest)state!).OnCanceled(token);

        private readonly DatagramClient _owner;
        private ITimer? _timer;
        private CancellationTokenRegistration _registration;
        private CancellationTokenSource? _sendCancellation;
        private int _completing;

        public PendingRequest(DatagramClient owner, ulong correlationId, bool isPing)
            : base(TaskCreationOptions.RunContinuationsAsynchronously)
        {
            _owner = owner;
            CorrelationId = correlationId;
            IsPing = isPing;
        }

        public ulong CorrelationId { get; }

        public bool IsPing { get; }

        public bool AcceptsStream { get; init; }

        public void Start(TimeSpan timeout, CancellationToken cancellationToken)
        {
            if (cancellationToken.CanBeCanceled)
            {
                _registration = cancellationToken.UnsafeRegister(s_onCanceled, this);
            }

            if (timeout != Timeout.InfiniteTimeSpan)
            {
                Volatile.Write(ref _timer, _owner._timeProvider.CreateTimer(s_onTimeout, this, timeout, Timeout.InfiniteTimeSpan));
            }

            // A full fence (the stores above, then this load): either the completer saw the timer, or this sees the completion.
            if (Interlocked.CompareExchange(ref _completing, 0, 0) != 0)
            {
                // Completed (dispose) while starting: what was just created must not outlive it.
                Release();
            }
        }

        /// <summary>(Re)starts the timeout (a streamed upload's wait for credit or for the reply); no-op for an infinite timeout.</summary>
        public void ArmTimer(TimeSpan timeout)
        {
            if (timeout == Timeout.InfiniteTimeSpan)
            {
                return;
            }

            var timer = Volatile.Read(ref _timer);
            if (timer is not null)
            {
                timer.Change(timeout, Timeout.InfiniteTimeSpan);
                return;
            }

            Volatile.Write(ref _timer, _owner._timeProvider.CreateTimer(s_onTimeout, this, timeout, Timeout.InfiniteTimeSpan));
            if (Interlocked.CompareExchange(ref _completing, 0, 0) != 0)
            {
                Release();
            }
        }

        /// <summary>Stops the timeout while the upload waits for its body's source (which the client does not time).</summary>
        public void DisarmTimer() => Volatile.Read(ref _timer)?.Change(Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);

        /// <summary>Completes the request with its reply; returns whether this call completed it.</summary>
        public bool Complete(DatagramReply reply)
        {
            if (!BeginCompletion())
            {
                return false;
            }

            TrySetResult(reply);
            return true;
        }

        /// <summary>Completes the request with an exception; returns whether this call completed it.</summary>
        public bool Fail(Exception exception)
        {
            if (!BeginCompletion())
            {
                return false;
            }

            TrySetException(exception);
            CancelSend();
            return true;
        }

        /// <summary>Publishes the CTS of a waiting send; returns false if the request is already completed (do not send).</summary>
        public bool SetSendCancellation(CancellationTokenSource cancellation)
        {
            Volatile.Write(ref _sendCancellation, cancellation);
            if (Volatile.Read(ref _completing) != 0)
            {
                ClearSendCancellation();
                return false;
            }

            return true;
        }

        /// <summary>Withdraws the CTS published by <see cref="SetSendCancellation"/> before it is disposed.</summary>
        public void ClearSendCancellation() => Volatile.Write(ref _sendCancellation, null);

        /// <summary>Claims the completion; the winner leaves the pending table and stops its timer and registration.</summary>
        private bool BeginCompletion()
        {
            if (Interlocked.Exchange(ref _completing, 1) != 0)
            {
                return false;
            }

            _owner._pending.TryRemove(new KeyValuePair<ulong, PendingRequest>(CorrelationId, this));
            Release();
            return true;
        }

        /// <summary>Stops the timer and the caller-token registration (never waits for a running callback: both are idempotent).</summary>
        private void Release()
        {
            Volatile.Read(ref _timer)?.Dispose();
            _registration.Unregister();
        }

        private void CancelSend()
        {
            var cancellation = Volatile.Read(ref _sendCancellation);
            if (cancellation is null)
            {
                return;
            }

            try
            {
                cancellation.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The send finished and disposed its CTS meanwhile.
            }
        }

        private void OnTimeout()
        {
            if (Fail(new DatagramException(DatagramFailure.Timeout, _owner.BackendPath)))
            {
                Interlocked.Increment(ref _owner.Statistics._timeouts);
                Log.RequestTimedOut(_owner._logger, CorrelationId, _owner.BackendPath);
            }
        }

        private void OnCanceled(CancellationToken token)
        {
            if (BeginCompletion())
            {
                TrySetCanceled(token);
                CancelSend();
            }
        }
    }
}
