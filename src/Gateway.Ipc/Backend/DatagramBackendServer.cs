using System.Net;
using System.Net.Sockets;
using System.Text;
using Gateway.Ipc.Diagnostics;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Transport;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Gateway.Ipc.Backend;

/// <summary>
/// Serves a <see cref="DatagramHandler"/> on a Unix datagram socket, speaking wire protocol v1 (docs/protocol.md).
/// </summary>
/// <remarks>
/// <para>
/// One receive loop reads datagrams; each valid REQUEST is handed to the handler on the thread pool (the loop never
/// waits for a handler), at most <see cref="DatagramBackendOptions.MaxConcurrency"/> at once (beyond that: ERROR
/// <c>OVERLOADED</c>). PING is answered with PONG straight from the loop, whatever the load.
/// </para>
/// <para>
/// At-most-once: requests are identified by (sender address, correlation ID). A retry of a request that is still
/// executing is dropped; a retry of a completed one gets the cached reply again, with the retry's attempt and the
/// <c>REPLAY</c> flag, without executing again (see <see cref="DatagramBackendOptions.ReplayCacheSize"/>).
/// </para>
/// <para>
/// Deadlines: a request with <c>budget_ms</c> &gt; 0 has the deadline <i>time of receipt + budget</i>. If it has
/// passed when the handler would start, the request is <b>dropped without a reply</b> (nobody waits for it any
/// more; counted in <see cref="DatagramBackendStatistics.DroppedExpired"/>). While the handler runs, its token fires
/// at the deadline and the reply becomes ERROR <c>DEADLINE_EXCEEDED</c> if the handler gives up.
/// </para>
/// <para>
/// Replies: sent with <c>sendto</c> to the request's sender. A handler's reply first tries a non-blocking send; if
/// the client's receive queue is full (or replies to that client are already queued), it joins a FIFO queue of that
/// client alone, drained by non-blocking retries, so a client that stopped reading never delays replies to other
/// clients. A client's queued replies are dropped and counted only when it accepts no datagram for
/// <see cref="DatagramBackendOptions.ReplySendTimeout"/> (no progress); a client that reads slowly gets them all. The
/// queue holds at most <see cref="DatagramBackendOptions.MaxConcurrency"/> + 64 replies per client. Replies sent by the
/// loop itself (PONG, ERROR, small replayed replies) never wait and never queue: dropped and counted when the client's
/// queue is full, so a client that does not read cannot stall the loop.
/// </para>
/// <para>
/// Shutdown (<see cref="StopAsync"/>): stop receiving, let executing handlers finish for up to
/// <see cref="DatagramBackendOptions.DrainTimeout"/>, then cancel their tokens (they are answered ERROR
/// <c>OVERLOADED</c>, retryable), then close the socket and unlink the socket file if it is still ours.
/// </para>
/// </remarks>
public sealed partial class DatagramBackendServer : IAsyncDisposable
{
    private const int StateNew = 0;
    private const int StateRunning = 1;
    private const int StateStopping = 2;

    /// <summary>Per client, how many replies beyond <see cref="DatagramBackendOptions.MaxConcurrency"/> may be queued (replayed fragmented replies).</summary>
    private const int ReplayQueueAllowance = 64;

    private static readonly int MaxAddressSize = SocketAddress.GetMaximumAddressSize(AddressFamily.Unix);

    private readonly DatagramHandler _handler;
    private readonly TimeProvider _timeProvider;
    private readonly DropLogThrottle _dropLog;
    private readonly ILogger _logger;
    private readonly ReplayCache _cache;
    private readonly Reassembler _reassembler;
    private readonly UnixFileMode _fileMode;
    private readonly int _maxConcurrency;
    private readonly bool _runHandlersInline;
    private readonly int _maxMessageBytes;
    private readonly bool _acceptUploads;
    private readonly int _uploadWindow;
    private readonly TimeSpan _drainTimeout;
    private readonly TimeSpan _replySendTimeout;
    private readonly Lock _stopLock = new();
    private readonly CancellationTokenSource _receiveStop = new();
    private readonly CancellationTokenSource _shutdown = new();
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly System.Collections.Concurrent.ConcurrentDictionary<RequestKey, ReplyStreamWriter> _streams = new();
    private readonly System.Collections.Concurrent.ConcurrentDictionary<RequestKey, RequestBodyStream> _uploads = new();

    /// <summary>How often idle state is swept: expired replay-cache entries and timed-out partial messages.</summary>
    private static readonly TimeSpan MaintenancePeriod = TimeSpan.FromSeconds(1);

    private ITimer? _maintenance;
    private UnixSocketFile? _socketFile;
    private Socket? _socket;
    private PerDestinationSendQueues? _replyQueues;
    private Task _receiveLoop = Task.CompletedTask;
    private Task? _stopTask;
    private int _state;
    private int _inFlight; // executions holding a MaxConcurrency slot (released once the reply is encoded)
    private int _pending; // executions not finished yet, reply sending included (what shutdown drains)

    /// <summary>Creates a server; nothing is bound until <see cref="StartAsync"/>.</summary>
    /// <param name="options">The options (validated here; later changes have no effect).</param>
    /// <param name="handler">The request handler.</param>
    /// <param name="timeProvider">The clock for deadlines and replay-cache expiry; <see cref="TimeProvider.System"/> if null.</param>
    /// <param name="loggerFactory">The logger factory; no logging if null.</param>
    /// <exception cref="ArgumentException">An option is invalid; the message names it.</exception>
    public DatagramBackendServer(DatagramBackendOptions options, DatagramHandler handler, TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(handler);
        var validation = new DatagramBackendOptionsValidator().Validate(null, options);
        if (validation.Failed)
        {
            throw new ArgumentException($"Invalid {nameof(DatagramBackendOptions)}: {validation.FailureMessage}", nameof(options));
        }

        SocketPath = Path.GetFullPath(options.SocketPath);
        _fileMode = options.GetUnixFileMode();
        _maxConcurrency = options.MaxConcurrency;
        _runHandlersInline = options.RunHandlersInline;
        _maxMessageBytes = options.MaxMessageBytes;
        _acceptUploads = options.AcceptStreamedRequestBodies;
        _uploadWindow = options.StreamWindowBytes;
        _drainTimeout = options.DrainTimeout;
        _replySendTimeout = options.ReplySendTimeout;
        _handler = handler;
        _timeProvider = timeProvider ?? TimeProvider.System;
        _dropLog = new DropLogThrottle(_timeProvider);
        _logger = (loggerFactory ?? NullLoggerFactory.Instance).CreateLogger<DatagramBackendServer>();
        _cache = new ReplayCache(options.ReplayCacheSize, options.ReplayCacheTtl, options.ReplayCacheMaxBytes);
        _reassembler = new Reassembler(options.MaxMessageBytes, options.MaxReassemblyBytes, options.ReassemblyTimeout, _timeProvider);
    }

    /// <summary>The full path of the socket file.</summary>
    public string SocketPath { get; }

    /// <summary>Counters.</summary>
    public DatagramBackendStatistics Statistics { get; } = new();

    /// <summary>
    /// The number of requests holding one of the <see cref="DatagramBackendOptions.MaxConcurrency"/> slots: from
    /// dispatch until the reply is encoded (sending it no longer counts).
    /// </summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>The number of streamed replies being sent (head sent, END or ERROR not yet).</summary>
    public int OpenStreamCount => _streams.Count;

    /// <summary>The number of completed replies held in the replay cache (expired ones are dropped first).</summary>
    public int ReplayCacheCount => _cache.Count(_timeProvider.GetUtcNow());

    /// <summary>
    /// Binds the socket (taking over a stale socket file, refusing a live one, see <see cref="UnixSocketFile.Bind"/>)
    /// and starts receiving.
    /// </summary>
    /// <param name="cancellationToken">Not used; binding does not wait.</param>
    /// <returns>A completed task once the socket is bound.</returns>
    /// <exception cref="SocketFileException">The path is not a socket, or a live socket (of this or another process) is bound to it.</exception>
    /// <exception cref="InvalidOperationException">The server was already started, or stopped.</exception>
    public Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (Interlocked.CompareExchange(ref _state, StateRunning, StateNew) != StateNew)
        {
            throw new InvalidOperationException("The server has already been started or stopped.");
        }

        try
        {
            _socketFile = UnixSocketFile.Bind(SocketPath, SocketType.Dgram, _fileMode);
        }
        catch
        {
            // Nothing was bound: the server may be started again (e.g. once the other process has gone).
            Volatile.Write(ref _state, StateNew);
            throw;
        }

        _socket = _socketFile.Socket;

        // Synchronous sends become non-blocking attempts (see TrySendNow); asynchronous operations are unaffected.
        _socket.Blocking = false;

        // Replies to a client whose queue is full wait in that client's own queue (bounded: handler replies by
        // MaxConcurrency, plus room for replayed fragmented replies), never in front of other clients' replies.
        _replyQueues = new PerDestinationSendQueues(_socket, _replySendTimeout, _maxConcurrency + ReplayQueueAllowance, long.MaxValue, _timeProvider);
        // A dedicated thread that waits in poll() and drains the queue with synchronous receives: a datagram is
        // picked up without a trip through the socket engine and the thread pool, so the 11-datagram queue
        // empties fast under bursts (a full queue makes senders wait ~1 ms) and one request costs one hop less.
        _receiveLoop = Task.Factory.StartNew(ReceiveLoop, CancellationToken.None, TaskCreationOptions.LongRunning, TaskScheduler.Default);

        // Without traffic nothing else would free expired replies and abandoned partial messages.
        _maintenance = _timeProvider.CreateTimer(static state => ((DatagramBackendServer)state!).Sweep(), this, MaintenancePeriod, MaintenancePeriod);
        Log.Listening(_logger, SocketPath, _maxConcurrency, _cache.MaxEntries, _cache.Ttl);
        var queueLength = UnixDatagramQueue.ReadMaxLength();
        if (UnixDatagramQueue.IsBelowRecommended(queueLength))
        {
            Log.SmallDatagramQueue(_logger, SocketPath, queueLength!.Value + 1, queueLength.Value, UnixDatagramQueue.RecommendedMinimum);
        }

        return Task.CompletedTask;
    }

    /// <summary>
    /// Stops receiving, waits for executing handlers up to the drain timeout, cancels the rest, closes the socket
    /// and unlinks the socket file if it is still ours. Idempotent.
    /// </summary>
    /// <param name="cancellationToken">When it fires, handlers are cancelled at once and stopping stops waiting for them.</param>
    /// <returns>A task that completes when the server has stopped.</returns>
    public Task StopAsync(CancellationToken cancellationToken = default)
    {
        lock (_stopLock)
        {
            if (_stopTask is null)
            {
                var previous = Interlocked.Exchange(ref _state, StateStopping);
                _stopTask = previous == StateRunning ? StopCoreAsync(cancellationToken) : Task.CompletedTask;
            }

            return _stopTask;
        }
    }

    /// <summary>Stops the server (see <see cref="StopAsync"/>) and releases its resources.</summary>
    /// <returns>A task that completes when the server has stopped.</returns>
    public async ValueTask DisposeAsync()
    {
        await StopAsync(CancellationToken.None).ConfigureAwait(false);
        _receiveStop.Dispose();
        _shutdown.Dispose();
        _reassembler.Dispose();
    }

    private async Task StopCoreAsync(CancellationToken cancellationToken)
    {
        await _receiveStop.CancelAsync().ConfigureAwait(false);
        await _receiveLoop.ConfigureAwait(false);

        if (Volatile.Read(ref _pending) == 0)
        {
            _drained.TrySetResult();
        }

        if (!_drained.Task.IsCompleted)
        {
            try
            {
                await _drained.Task.WaitAsync(_drainTimeout, _timeProvider, cancellationToken).ConfigureAwait(false);
            }
            catch (TimeoutException)
            {
                Log.DrainTimedOut(_logger, Volatile.Read(ref _pending), _drainTimeout);
            }
            catch (OperationCanceledException)
            {
            }

            await _shutdown.CancelAsync().ConfigureAwait(false);
            foreach (var upload in _uploads.Values)
            {
                upload.Abort(new OperationCanceledException("The backend is shutting down."));
            }
            try
            {
                await _drained.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                // The host gave up waiting: late replies will fail on the closed socket and be counted.
            }
        }

        _maintenance?.Dispose();
        _socketFile?.Dispose();
        _replyQueues?.Dispose();
        Log.Stopped(_logger, SocketPath);
    }

    private void Sweep()
    {
        _ = _cache.Count(_timeProvider.GetUtcNow());
        _reassembler.Sweep();
    }

    private void ReceiveLoop()
    {
        var socket = _socket!;
        var token = _receiveStop.Token;

        // MaxDatagram + 1: a datagram that fills the buffer may have been truncated and is dropped as oversized.
        var buffer = GC.AllocateUninitializedArray<byte>(ProtocolConstants.MaxDatagram + 1, pinned: true);
        var address = new SocketAddress(AddressFamily.Unix, MaxAddressSize);
        using var control = new FrameWriter(256);
        var replay = GC.AllocateUninitializedArray<byte>(ProtocolConstants.MaxDatagram);

        while (!token.IsCancellationRequested)
        {
            int received;
            try
            {
                // A receive shrinks Size to the sender's address length: reset it every time.
                address.Size = MaxAddressSize;
                received = ReceiveFrom(socket, buffer, address, token);
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                break;
            }
            catch (ObjectDisposedException)
            {
                break;
            }
            catch (SocketException ex)
            {
                Log.ReceiveFailed(_logger, ex, SocketPath);
                continue;
            }

            Interlocked.Increment(ref Statistics._received);
            try
            {
                ProcessDatagram(buffer.AsSpan(0, received), received == buffer.Length, address, control, replay);
            }
            catch (Exception ex)
            {
                // Never fatal: one bad datagram must not stop the backend.
                Interlocked.Increment(ref Statistics._processingFailures);
                Log.ProcessingFailed(_logger, ex, SocketPath);
            }
        }
    }

    /// <summary>Takes the next datagram (<see cref="CredentialReceiver.ReceiveOrWait"/>); throws when stopped.</summary>
    internal static int ReceiveFrom(Socket socket, byte[] buffer, SocketAddress address, CancellationToken token)
    {
        while (true)
        {
            token.ThrowIfCancellationRequested();
            if (CredentialReceiver.ReceiveOrWait(socket, buffer, address.Buffer.Span, out var result))
            {
                address.Size = Math.Min(result.AddressLength, address.Buffer.Length);
                return result.Truncated ? buffer.Length : result.Length;
            }
        }
    }

    private void ProcessDatagram(ReadOnlySpan<byte> datagram, bool filledBuffer, SocketAddress address, FrameWriter control, byte[] replay)
    {
        if (filledBuffer)
        {
            Interlocked.Increment(ref Statistics._droppedOversized);
            var dropLevel = DropLevel();
            if (_logger.IsEnabled(dropLevel))
            {
                var senderText = FormatAddress(address);
                Log.DroppedOversized(_logger, dropLevel, senderText, datagram.Length);
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
            Interlocked.Increment(ref Statistics._droppedMalformed);
            var dropLevel = DropLevel();
            if (_logger.IsEnabled(dropLevel))
            {
                var senderText = FormatAddress(address);
                Log.DroppedMalformed(_logger, dropLevel, datagram.Length, senderText, ex.Reason, ex.Message);
            }

            // A CREDIT whose payload is not 4 bytes, for an open stream, breaks that stream (§7).
            if (datagram.Length >= ProtocolConstants.HeaderSize && datagram[0] == 0x47 && datagram[1] == 0x44 && datagram[3] == (byte)MessageKind.Credit && address.Size > 2)
            {
                BreakStream(address, System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(datagram[8..]));
            }

            return;
        }

        switch (header.Kind)
        {
            case MessageKind.Ping:
                Interlocked.Increment(ref Statistics._pings);
                if (address.Size <= 2)
                {
                    // An unbound sender: no PONG can reach it.
                    return;
                }

                control.WriteControl(MessageKind.Pong, header.CorrelationId, header.Attempt, _acceptUploads ? StreamFeatures.StreamReply | StreamFeatures.StreamRequest : StreamFeatures.StreamReply);
                TrySendNow(control.WrittenSpan, address, header.CorrelationId);
                return;

            case MessageKind.Cancel:
                Interlocked.Increment(ref Statistics._cancels);
                if (address.Size <= 2)
                {
                    // An unbound sender has no requests here (they are dropped): nothing to cancel.
                    return;
                }

                var cancelKey = new RequestKey(RequestKey.CopyAddress(address), header.CorrelationId);
                var entry = _cache.Find(cancelKey, _timeProvider.GetUtcNow());
                if (entry is { Reply: null })
                {
                    entry.Cancel(CancelReason.ClientCancel);
                }

                if (!_uploads.IsEmpty && _uploads.TryRemove(cancelKey, out var cancelled))
                {
                    // A read the handler makes without the request's token must end too.
                    cancelled.Abort(new OperationCanceledException("The client cancelled the request."));
                }

                return;

            case MessageKind.RequestHead:
                ProcessRequestHead(header, datagram, address, control, replay);
                return;

            case MessageKind.Chunk or MessageKind.End when address.Size > 2:
                ProcessUploadMessage(header, datagram, address, control);
                return;

            case MessageKind.Request:
                ProcessRequest(header, datagram, address, control, replay);
                return;

            case MessageKind.Credit when address.Size > 2:
                uint credit;
                try
                {
                    credit = StreamFrames.ReadCredit(datagram[ProtocolConstants.HeaderSize..]);
                }
                catch (ProtocolException ex)
                {
                    Interlocked.Increment(ref Statistics._droppedMalformed);
                    var creditDropLevel = DropLevel();
                    if (_logger.IsEnabled(creditDropLevel))
                    {
                        var senderText = FormatAddress(address);
                        Log.DroppedMalformed(_logger, creditDropLevel, datagram.Length, senderText, ex.Reason, ex.Message);
                    }

                    BreakStream(address, header.CorrelationId);
                    return;
                }

                Interlocked.Increment(ref Statistics._credits);
                if (!_streams.IsEmpty && _streams.TryGetValue(new RequestKey(RequestKey.CopyAddress(address), header.CorrelationId), out var stream))
                {
                    stream.AddCredit(credit);
                }

                // Else late (the stream ended or was cancelled): dropped.
                return;

            default:
                Interlocked.Increment(ref Statistics._droppedMalformed);
                var dropLevel = DropLevel();
                if (_logger.IsEnabled(dropLevel))
                {
                    var senderText = FormatAddress(address);
                    Log.DroppedUnexpectedKind(_logger, dropLevel, header.Kind, senderText);
                }
                return;
        }
    }

    private void ProcessRequest(in FrameHeader header, ReadOnlySpan<byte> datagram, SocketAddress address, FrameWriter control, byte[] replay)
    {
        if (address.Size <= 2)
        {
            // An unbound sender has no address: no reply can reach it and its requests cannot be told apart.
            Interlocked.Increment(ref Statistics._droppedMalformed);
            var dropLevel = DropLevel();
            if (_logger.IsEnabled(dropLevel))
            {
                Log.DroppedUnbound(_logger, dropLevel, header.CorrelationId);
            }
            return;
        }

        if (header.PayloadLength > (uint)_maxMessageBytes)
        {
            // Refused once per message: on its first datagram (a fragmented one's later fragments are dropped).
            if (!header.IsFragment || FrameHeader.ReadFragmentOffset(datagram) == 0)
            {
                Interlocked.Increment(ref Statistics._tooLarge);
                Interlocked.Increment(ref Statistics._requestsTooLarge);
                Log.RequestTooLarge(_logger, header.CorrelationId, FormatAddress(address), header.PayloadLength, _maxMessageBytes);
                SendError(control, header, IpcErrorCode.TooLarge, $"The request has {header.PayloadLength} bytes; this backend accepts at most {_maxMessageBytes}.", address);
            }
            else
            {
                Interlocked.Increment(ref Statistics._fragmentsReceived);
                Interlocked.Increment(ref Statistics._fragmentsDropped);
            }

            return;
        }

        if (header.IsFragment)
        {
            Interlocked.Increment(ref Statistics._fragmentsReceived);
            var result = _reassembler.Add(address.Buffer.Span[..address.Size], datagram, out var message);
            switch (result)
            {
                case ReassemblyResult.Incomplete:
                    return;
                case ReassemblyResult.Completed:
                    Interlocked.Increment(ref Statistics._requestsReassembled);
                    using (message)
                    {
                        ProcessWholeRequest(message!.Header, message.Message.Span, address, control, replay);
                    }

                    return;
                case ReassemblyResult.TooLarge:
                    // Not reached while the early check above uses the same limit; kept for safety.
                    Interlocked.Increment(ref Statistics._tooLarge);
                    SendError(control, header, IpcErrorCode.TooLarge, $"The request has {header.PayloadLength} bytes; this backend accepts at most {_maxMessageBytes}.", address);
                    return;
                default:
                    Interlocked.Increment(ref Statistics._fragmentsDropped);
                    Log.FragmentDropped(_logger, header.CorrelationId, FormatAddress(address), result.ToString());
                    return;
            }
        }

        ProcessWholeRequest(header, datagram, address, control, replay);
    }

    /// <summary>Handles a whole (single-datagram or reassembled) REQUEST: replay cache, decoding, dispatch.</summary>
    /// <remarks>
    /// For a fragmented request the deadline counts from the last fragment's arrival (the reassembly time, a few
    /// milliseconds for the largest messages, is not subtracted).
    /// </remarks>
    private void ProcessWholeRequest(in FrameHeader header, ReadOnlySpan<byte> datagram, SocketAddress address, FrameWriter control, byte[] replay, bool streamed = false)
    {
        var receivedAt = _timeProvider.GetUtcNow();
        var key = new RequestKey(RequestKey.CopyAddress(address), header.CorrelationId);
        if (_cache.Find(key, receivedAt) is { } existing)
        {
            if (existing.Reply is null)
            {
                Interlocked.Increment(ref Statistics._duplicatesInFlight);
                Log.DuplicateInFlight(_logger, header.CorrelationId, header.Attempt);
            }
            else
            {
                Interlocked.Increment(ref Statistics._replayed);
                Log.Replayed(_logger, header.CorrelationId, header.Attempt);
                Replay(existing.Reply, header.Attempt, key.Address, replay);
            }

            return;
        }

        // Checked before decoding so that a refused request costs no copies. Only this loop increments
        // _inFlight, so the check cannot be overtaken before Dispatch increments it.
        var inFlight = Volatile.Read(ref _inFlight);
        if (inFlight >= _maxConcurrency)
        {
            Interlocked.Increment(ref Statistics._overloaded);
            Log.Overloaded(_logger, header.CorrelationId, inFlight);
            SendError(control, header, IpcErrorCode.Overloaded, "The backend is at its concurrency limit; retry later.", key.Address);
            return;
        }

        BackendRequest request;
        try
        {
            request = Decode(header, datagram[ProtocolConstants.HeaderSize..], receivedAt, key.Address, streamed ? NewUpload(key, header) : null);
        }
        catch (ProtocolException ex)
        {
            Interlocked.Increment(ref Statistics._malformedErrorsSent);
            var dropLevel = DropLevel();
            if (_logger.IsEnabled(dropLevel))
            {
                var senderText = FormatAddress(address);
                Log.MalformedRequest(_logger, dropLevel, header.CorrelationId, senderText, ex.Message);
            }
            SendError(control, header, IpcErrorCode.Malformed, ex.Message, address);
            return;
        }

        if (request.StreamedBody is { } upload)
        {
            _uploads[key] = upload;
            Interlocked.Increment(ref Statistics._uploadsStarted);
        }

        Dispatch(key, request);
    }

    /// <summary>
    /// A REQUEST_HEAD (docs/protocol.md §4.5.3): handled as a REQUEST (replay cache, concurrency, dispatch) whose body the
    /// handler reads from <see cref="BackendRequest.BodyStream"/> as the CHUNKs arrive. Refused with ERROR <c>MALFORMED</c>
    /// by a backend that does not accept streamed request bodies, and when fragmented.
    /// </summary>
    private void ProcessRequestHead(in FrameHeader header, ReadOnlySpan<byte> datagram, SocketAddress address, FrameWriter control, byte[] replay)
    {
        if (address.Size <= 2)
        {
            Interlocked.Increment(ref Statistics._droppedMalformed);
            var dropLevel = DropLevel();
            if (_logger.IsEnabled(dropLevel))
            {
                Log.DroppedUnbound(_logger, dropLevel, header.CorrelationId);
            }
            return;
        }

        var refusal = !_acceptUploads ? "This backend does not accept streamed request bodies (its PONG does not announce STREAM_REQUEST)."
            : header.IsFragment ? "A REQUEST_HEAD is never fragmented."
            : null;
        if (refusal is not null)
        {
            Interlocked.Increment(ref Statistics._malformedErrorsSent);
            var dropLevel = DropLevel();
            if (_logger.IsEnabled(dropLevel))
            {
                var senderText = FormatAddress(address);
                Log.MalformedRequest(_logger, dropLevel, header.CorrelationId, senderText, refusal);
            }

            SendError(control, header, IpcErrorCode.Malformed, refusal, address);
            return;
        }

        ProcessWholeRequest(header, datagram, address, control, replay, streamed: true);
    }

    /// <summary>The body of a streamed request: grants credit to the client through the reply queue (a lost CREDIT would stall the upload).</summary>
    private RequestBodyStream NewUpload(RequestKey key, in FrameHeader header)
    {
        var destination = key.Address;
        var correlationId = header.CorrelationId;
        var attempt = header.Attempt;
        return new RequestBodyStream(
            credit =>
            {
                var frame = new byte[StreamFrames.ControlSize];
                StreamFrames.WriteControl(frame, MessageKind.Credit, correlationId, attempt, credit);
                _ = SendReplyAsync(frame, destination, correlationId).AsTask();
            },
            _uploadWindow);
    }

    /// <summary>A CHUNK or END of a streamed request body; dropped when its upload is not open (ended, replied, cancelled).</summary>
    private void ProcessUploadMessage(in FrameHeader header, ReadOnlySpan<byte> datagram, SocketAddress address, FrameWriter control)
    {
        RequestBodyStream? upload = null;
        var key = _uploads.IsEmpty ? default : new RequestKey(RequestKey.CopyAddress(address), header.CorrelationId);
        if (_uploads.IsEmpty || !_uploads.TryGetValue(key, out upload))
        {
            Interlocked.Increment(ref Statistics._lateStreamMessages);
            return;
        }

        Interlocked.Increment(ref Statistics._uploadMessages);

        string? violation;
        try
        {
            var payload = datagram[ProtocolConstants.HeaderSize..];
            if (header.Kind == MessageKind.Chunk)
            {
                var data = StreamFrames.ReadChunk(payload, out var sequence);
                violation = upload.OnChunk(sequence, data);
                if (violation is null)
                {
                    Interlocked.Increment(ref Statistics._uploadChunks);
                }
            }
            else
            {
                violation = upload.OnEnd(StreamFrames.ReadEnd(payload));
            }
        }
        catch (ProtocolException ex)
        {
            violation = ex.Message;
            upload.Break(violation);
        }

        if (violation is not null)
        {
            // The handler's read fails, and the reply is ERROR MALFORMED (ExecuteAsync).
            Interlocked.Increment(ref Statistics._uploadViolations);
            _uploads.TryRemove(new KeyValuePair<RequestKey, RequestBodyStream>(key, upload));
            var dropLevel = DropLevel();
            if (_logger.IsEnabled(dropLevel))
            {
                var senderText = FormatAddress(address);
                Log.MalformedRequest(_logger, dropLevel, header.CorrelationId, senderText, violation);
            }
        }
    }

    private void Dispatch(RequestKey key, BackendRequest request)
    {
        Interlocked.Increment(ref Statistics._dispatched);
        Interlocked.Increment(ref _inFlight);
        Interlocked.Increment(ref _pending);
        var cancellation = request.Deadline is { } deadline
            ? new CancellationTokenSource(Max(deadline - _timeProvider.GetUtcNow(), TimeSpan.Zero), _timeProvider)
            : new CancellationTokenSource();
        var entry = new ReplayCache.Entry(key, cancellation);
        entry.ShutdownRegistration = _shutdown.Token.UnsafeRegister(static state => ((ReplayCache.Entry)state!).Cancel(CancelReason.Shutdown), entry);
        _cache.Add(entry);
        if (_runHandlersInline)
        {
            _ = ExecuteAsync(entry, request);
        }
        else
        {
            ThreadPool.UnsafeQueueUserWorkItem(new Execution(this, entry, request), preferLocal: false);
        }
    }

    private async Task ExecuteAsync(ReplayCache.Entry entry, BackendRequest request)
    {
        var slotReleased = false;
        try
        {
            if (request.Deadline is { } deadline && _timeProvider.GetUtcNow() >= deadline)
            {
                Interlocked.Increment(ref Statistics._droppedExpired);
                Log.Expired(_logger, request.CorrelationId, deadline);
                _cache.Remove(entry);
                return;
            }

            Interlocked.Increment(ref Statistics._executed);
            using var activity = IpcDiagnostics.StartServerActivity(request, SocketPath);
            var token = entry.Cancellation.Token;
            // NO_RETRY (§5): no retry will ask for this reply, so it is not kept (its entry still drops duplicates while it runs).
            var cacheable = !request.WillNotBeRetried;
            BackendResponse response;
            try
            {
                request.StreamedBody?.GrantInitial();
                response = await _handler(request, token).ConfigureAwait(false);
                if (response.IsStreamed && !request.AcceptsStreamedReply)
                {
                    response = await CollectStreamAsync(response, token).ConfigureAwait(false);
                }

                if (request.StreamedBody?.Violation is { } broken)
                {
                    response = BackendResponse.Error(IpcErrorCode.Malformed, $"The streamed request body broke the protocol: {broken}.");
                }
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                switch (entry.Reason)
                {
                    case CancelReason.ClientCancel:
                        IpcDiagnostics.SetServerCancelled(activity);
                        Log.CancelledByClient(_logger, request.CorrelationId);
                        _cache.Remove(entry);
                        return;
                    case CancelReason.Shutdown:
                        cacheable = false;
                        response = BackendResponse.Error(IpcErrorCode.Overloaded, "The backend is shutting down.");
                        break;
                    default:
                        response = BackendResponse.Error(IpcErrorCode.DeadlineExceeded, "The request's deadline passed while the backend worked on it.");
                        break;
                }
            }
            catch (Exception) when (request.StreamedBody?.Violation is { } broken)
            {
                response = BackendResponse.Error(IpcErrorCode.Malformed, $"The streamed request body broke the protocol: {broken}.");
            }
            catch (Exception ex)
            {
                Interlocked.Increment(ref Statistics._handlerFailures);
                Log.HandlerFailed(_logger, ex, request.CorrelationId, request.Method, request.Target);
                IpcDiagnostics.RecordException(activity, ex);
                response = BackendResponse.Error(IpcErrorCode.Internal, "The backend's handler failed.");
            }

            IpcDiagnostics.SetServerResponse(activity, response);
            if (response.IsStreamed)
            {
                await StreamReplyAsync(entry, request, response).ConfigureAwait(false);
                return;
            }

            var reply = Encode(request, response);
            if (cacheable)
            {
                _cache.Complete(entry, reply, _timeProvider.GetUtcNow());
            }
            else
            {
                _cache.Remove(entry);
            }

            // Free the concurrency slot before sending, so that a client that has the reply can use the slot.
            Interlocked.Decrement(ref _inFlight);
            slotReleased = true;
            await SendReplyAsync(reply, entry.Key.Address, request.CorrelationId).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            Log.ProcessingFailed(_logger, ex, SocketPath);
            _cache.Remove(entry);
        }
        finally
        {
            if (request.StreamedBody is { } upload)
            {
                // Chunks that still arrive are late: dropped.
                _uploads.TryRemove(new KeyValuePair<RequestKey, RequestBodyStream>(entry.Key, upload));
                upload.Dispose();
            }

            entry.Dispose();
            if (!slotReleased)
            {
                Interlocked.Decrement(ref _inFlight);
            }

            if (Interlocked.Decrement(ref _pending) == 0 && Volatile.Read(ref _state) == StateStopping)
            {
                _drained.TrySetResult();
            }
        }
    }

    /// <summary>
    /// Sends a streamed reply (docs/protocol.md §4.5.2): RESPONSE_HEAD, then the handler's writes as CHUNKs within the
    /// client's credit, then END; ERROR if the handler fails after the head; nothing more after a CANCEL. The request's
    /// deadline covers the head only. The concurrency slot is held until the stream ends. The replay cache keeps an ERROR
    /// for the key: a retry is never executed again, and a streamed reply is never replayed.
    /// </summary>
    private async Task StreamReplyAsync(ReplayCache.Entry entry, BackendRequest request, BackendResponse response)
    {
        var token = entry.Cancellation.Token;
        var destination = entry.Key.Address;
        var cid = request.CorrelationId;
        byte[] head;
        using (var writer = new FrameWriter(512))
        {
            try
            {
                writer.BeginResponseHead(cid, request.Attempt, response.Status);
                foreach (var (name, value) in response.Headers)
                {
                    writer.AddHeader(name, value);
                }

                writer.Complete();
                if (writer.PayloadLength > ProtocolConstants.MaxUnfragmentedPayload)
                {
                    throw new ArgumentException("The head of a streamed reply must fit one datagram.");
                }
            }
            catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
            {
                Interlocked.Increment(ref Statistics._handlerFailures);
                Log.InvalidResponse(_logger, ex, cid);
                writer.WriteError(cid, request.Attempt, IpcErrorCode.Internal, "The backend's handler returned an invalid response.");
            }

            head = writer.WrittenMemory.ToArray();
        }

        if (head[3] == (byte)MessageKind.Error || token.IsCancellationRequested)
        {
            var error = token.IsCancellationRequested
                ? ErrorFrame(cid, request.Attempt, IpcErrorCode.DeadlineExceeded, "The request's deadline passed before the stream started.")
                : head;
            _cache.Complete(entry, error, _timeProvider.GetUtcNow());
            await SendReplyAsync(error, destination, cid).ConfigureAwait(false);
            return;
        }

        // The deadline was for the head: once it is sent the stream lasts while the client grants credit.
        entry.Cancellation.CancelAfter(Timeout.InfiniteTimeSpan);
        var stream = new ReplyStreamWriter(frame => SendReplyAsync(frame, destination, cid), cid, request.Attempt, token);
        _streams[entry.Key] = stream;
        Interlocked.Increment(ref Statistics._streamsStarted);
        byte[]? last = null;
        try
        {
            await SendReplyAsync(head, destination, cid).ConfigureAwait(false);
            try
            {
                await response.StreamBody!(stream, token).ConfigureAwait(false);
                last = ErrorFrame(cid, request.Attempt, 0, null);
                StreamFrames.WriteControl(last, MessageKind.End, cid, request.Attempt, stream.ChunkCount);
            }
            catch (StreamClientGoneException)
            {
                // The client took no CHUNK (it is gone, or read nothing for ReplySendTimeout): nothing more can reach it.
                Interlocked.Increment(ref Statistics._streamsCancelled);
            }
            catch (OperationCanceledException) when (token.IsCancellationRequested)
            {
                if (entry.Reason == CancelReason.ClientCancel)
                {
                    Interlocked.Increment(ref Statistics._streamsCancelled);
                    Log.CancelledByClient(_logger, cid);
                }
                else if (entry.Reason == CancelReason.Violation)
                {
                    last = ErrorFrame(cid, request.Attempt, IpcErrorCode.Malformed, "A CREDIT for this stream broke the rules (docs/protocol.md 4.5.5: 4 bytes, 1 to 2,147,483,647).");
                }
                else
                {
                    last = ErrorFrame(cid, request.Attempt, IpcErrorCode.Overloaded, "The backend is shutting down.");
                }
            }
            catch (Exception ex)
            {
                Interlocked.Increment(ref Statistics._handlerFailures);
                Log.HandlerFailed(_logger, ex, cid, request.Method, request.Target);
                last = ErrorFrame(cid, request.Attempt, IpcErrorCode.Internal, "The backend's handler failed mid-stream.");
            }

            if (last is not null)
            {
                await SendReplyAsync(last, destination, cid).ConfigureAwait(false);
            }
        }
        finally
        {
            _streams.TryRemove(new KeyValuePair<RequestKey, ReplyStreamWriter>(entry.Key, stream));
            _cache.Complete(entry, ErrorFrame(cid, request.Attempt, IpcErrorCode.Internal, "A streamed reply cannot be replayed."), _timeProvider.GetUtcNow());
        }
    }

    /// <summary>A malformed CREDIT for an open reply stream breaks it (§7): the stream ends with ERROR MALFORMED.</summary>
    private void BreakStream(SocketAddress address, ulong correlationId)
    {
        if (_streams.IsEmpty)
        {
            return;
        }

        var key = new RequestKey(RequestKey.CopyAddress(address), correlationId);
        if (_streams.ContainsKey(key) && _cache.Find(key, _timeProvider.GetUtcNow()) is { Reply: null } broken)
        {
            broken.Cancel(CancelReason.Violation);
        }
    }

    /// <summary>An encoded ERROR, or (with a null message) a 28-byte buffer for an END.</summary>
    private static byte[] ErrorFrame(ulong correlationId, ushort attempt, IpcErrorCode code, string? message)
    {
        if (message is null)
        {
            return new byte[StreamFrames.ControlSize];
        }

        using var writer = new FrameWriter(64 + message.Length);
        writer.WriteError(correlationId, attempt, code, message);
        return writer.WrittenMemory.ToArray();
    }

    /// <summary>A streamed response for a client that does not accept streams: the body collected into one RESPONSE.</summary>
    private async Task<BackendResponse> CollectStreamAsync(BackendResponse response, CancellationToken token)
    {
        using var buffer = new BoundedMemoryStream(_maxMessageBytes);
        await response.StreamBody!(buffer, token).ConfigureAwait(false);
        return new BackendResponse(response.Status, response.Headers, buffer.ToArray());
    }

    /// <summary>Encodes the reply; an invalid or oversized response becomes an ERROR.</summary>
    private byte[] Encode(BackendRequest request, BackendResponse response)
    {
        using var writer = new FrameWriter(512 + response.Body.Length);
        try
        {
            if (response.ErrorCode is { } code)
            {
                writer.WriteError(request.CorrelationId, request.Attempt, code, response.ErrorMessage);
            }
            else
            {
                writer.BeginResponse(request.CorrelationId, request.Attempt, response.Status);
                foreach (var (name, value) in response.Headers)
                {
                    writer.AddHeader(name, value);
                }

                writer.WriteBody(response.Body.Span);
                writer.Complete();
            }
        }
        catch (Exception ex) when (ex is ArgumentException or InvalidOperationException)
        {
            Interlocked.Increment(ref Statistics._handlerFailures);
            Log.InvalidResponse(_logger, ex, request.CorrelationId);
            writer.WriteError(request.CorrelationId, request.Attempt, IpcErrorCode.Internal, "The backend's handler returned an invalid response.");
        }

        if (writer.PayloadLength > _maxMessageBytes)
        {
            Interlocked.Increment(ref Statistics._tooLarge);
            Log.ReplyTooLarge(_logger, request.CorrelationId, writer.PayloadLength, _maxMessageBytes);
            writer.WriteError(request.CorrelationId, request.Attempt, IpcErrorCode.TooLarge, $"The response has {writer.PayloadLength} bytes; the limit is {_maxMessageBytes}.");
        }

        return writer.WrittenMemory.ToArray();
    }

    private void Replay(byte[] cached, ushort attempt, SocketAddress destination, byte[] scratch)
    {
        var correlationId = FrameHeaderCorrelationId(cached);
        if (cached.Length > scratch.Length)
        {
            // A fragmented reply: sent off the loop, which must not wait on the client.
            var copy = (byte[])cached.Clone();
            FrameHeader.PatchAttempt(copy, attempt);
            FrameHeader.AddFlags(copy, MessageFlags.Replay);
            _ = SendReplyAsync(copy, destination, correlationId).AsTask();
            return;
        }

        // The cached reply is shared and never mutated: patch a copy.
        var datagram = scratch.AsSpan(0, cached.Length);
        cached.CopyTo(datagram);
        FrameHeader.PatchAttempt(datagram, attempt);
        FrameHeader.AddFlags(datagram, MessageFlags.Replay);
        TrySendNow(datagram, destination, correlationId);
    }

    private static ulong FrameHeaderCorrelationId(ReadOnlySpan<byte> frame) =>
        System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(frame[8..]);

    private void SendError(FrameWriter control, in FrameHeader header, IpcErrorCode code, string message, SocketAddress destination)
    {
        control.WriteError(header.CorrelationId, header.Attempt, code, message);
        TrySendNow(control.WrittenSpan, destination, header.CorrelationId);
    }

    /// <summary>
    /// One non-blocking <c>sendto</c> from the receive loop (the socket is in non-blocking mode, so this neither
    /// waits nor queues behind a pending asynchronous send to another client). A full client queue or a vanished
    /// client is counted in <see cref="DatagramBackendStatistics.ReplyFailures"/>.
    /// </summary>
    private void TrySendNow(ReadOnlySpan<byte> datagram, SocketAddress destination, ulong correlationId)
    {
        try
        {
            if (!DatagramSender.TrySend(_socket!, datagram, destination))
            {
                Interlocked.Increment(ref Statistics._replyFailures);
                Log.ReplyFailed(_logger, correlationId, FormatAddress(destination), SocketError.WouldBlock);
            }
        }
        catch (DatagramSendException ex)
        {
            Interlocked.Increment(ref Statistics._replyFailures);
            Log.ReplyFailed(_logger, correlationId, FormatAddress(destination), ex.SocketError);
        }
    }

    /// <summary>
    /// Sends a handler's reply, fragmenting it if needed: a non-blocking attempt first (when nothing is queued for this
    /// client), otherwise through the client's own send queue, which fails it only when the client accepts no datagram
    /// for <see cref="DatagramBackendOptions.ReplySendTimeout"/>. Never throws; failures are counted.
    /// </summary>
    /// <returns>Whether the datagram was sent (false: the client is gone or took nothing for the send timeout).</returns>
    private async ValueTask<bool> SendReplyAsync(ReadOnlyMemory<byte> frame, SocketAddress destination, ulong correlationId)
    {
        var queues = _replyQueues!;
        try
        {
            if (queues.TrySendNow(frame.Span, destination))
            {
                return true;
            }

            await queues.EnqueueAsync(frame, destination, CancellationToken.None).ConfigureAwait(false);
            return true;
        }
        catch (DatagramSendException ex) when (ex.Failure == Client.DatagramFailure.BackendOverloaded)
        {
            Interlocked.Increment(ref Statistics._replyFailures);
            Log.ReplyTimedOut(_logger, correlationId, FormatAddress(destination), _replySendTimeout);
        }
        catch (DatagramSendException ex)
        {
            Interlocked.Increment(ref Statistics._replyFailures);
            Log.ReplyFailed(_logger, correlationId, FormatAddress(destination), ex.SocketError);
        }

        return false;
    }

    /// <summary>
    /// The sender address last formatted by <see cref="Decode"/>: its bytes and its text. Requests come in runs from
    /// the same client (one gateway reply socket), so this saves a string per request. Only the receive loop uses it.
    /// </summary>
    private byte[] _lastSender = [];
    private string _lastSenderText = string.Empty;

    private string SenderText(SocketAddress sender)
    {
        var bytes = sender.Buffer.Span[..sender.Size];
        if (!bytes.SequenceEqual(_lastSender))
        {
            _lastSenderText = FormatAddress(sender);
            _lastSender = bytes.ToArray();
        }

        return _lastSenderText;
    }

    private BackendRequest Decode(in FrameHeader header, ReadOnlySpan<byte> payload, DateTimeOffset receivedAt, SocketAddress sender, RequestBodyStream? upload = null)
    {
        var view = RequestView.Read(payload);
        if (upload is not null && !view.Body.IsEmpty)
        {
            ProtocolException.Throw(ProtocolViolation.BadField, "A REQUEST_HEAD carries no body bytes (the body follows as CHUNKs).");
        }

        var headers = new KeyValuePair<string, string>[view.Headers.Count];
        var i = 0;
        foreach (var field in view.Headers)
        {
            headers[i++] = new(Encoding.ASCII.GetString(field.Name), Encoding.UTF8.GetString(field.Value));
        }

        return new BackendRequest(view.GetMethod(), view.GetTarget(), headers, view.Body.ToArray())
        {
            AcceptsStreamedReply = (header.Features & StreamFeatures.StreamReply) != 0,
            WillNotBeRetried = (header.Features & StreamFeatures.NoRetry) != 0,
            CorrelationId = header.CorrelationId,
            Attempt = header.Attempt,
            Deadline = header.BudgetMs > 0 ? receivedAt + TimeSpan.FromMilliseconds(header.BudgetMs) : null,
            TraceParent = view.TraceParent.IsEmpty ? null : Encoding.ASCII.GetString(view.TraceParent),
            TraceState = view.TraceState.IsEmpty ? null : Encoding.ASCII.GetString(view.TraceState),
            SenderAddress = SenderText(sender),
            StreamedBody = upload,
        };
    }

    /// <summary>Warning for the first drop of a window, Debug for the rest (see <see cref="DropLogThrottle"/>).</summary>
    private LogLevel DropLevel()
    {
        var level = _dropLog.Next(out var demoted);
        if (demoted > 0)
        {
            Log.DropsDemoted(_logger, demoted, SocketPath);
        }

        return level;
    }

    /// <summary>A sender's address for people: the path, <c>@name</c> for an abstract name, or <c>(unbound)</c>.</summary>
    internal static string FormatAddress(SocketAddress address)
    {
        // An unbound sender's address may be shorter than the family field (recvfrom reports length 0).
        if (address.Size <= 2)
        {
            return "(unbound)";
        }

        var path = address.Buffer.Span[2..address.Size];
        if (path.IsEmpty)
        {
            return "(unbound)";
        }

        if (path[0] == 0)
        {
            return "@" + Encoding.UTF8.GetString(path[1..]);
        }

        var nul = path.IndexOf((byte)0);
        return Encoding.UTF8.GetString(nul < 0 ? path : path[..nul]);
    }

    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    /// <summary>A memory stream that refuses to grow beyond a limit (a stream collected into one RESPONSE).</summary>
    private sealed class BoundedMemoryStream(int limit) : MemoryStream
    {
        public override void Write(ReadOnlySpan<byte> buffer) => Write(buffer.ToArray(), 0, buffer.Length);

        public override void Write(byte[] buffer, int offset, int count)
        {
            if (Length + count > limit)
            {
                throw new InvalidOperationException($"The streamed body exceeds {limit} bytes, the most one RESPONSE carries; the client does not accept streamed replies.");
            }

            // MemoryStream's own write (its span overload would come back here).
            base.Write(buffer, offset, count);
        }

        public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            Write(buffer.Span);
            return ValueTask.CompletedTask;
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            Write(buffer, offset, count);
            return Task.CompletedTask;
        }
    }

    /// <summary>Runs one handler execution on the thread pool.</summary>
    private sealed class Execution(DatagramBackendServer server, ReplayCache.Entry entry, BackendRequest request) : IThreadPoolWorkItem
    {
        public void Execute() => _ = server.ExecuteAsync(entry, request);
    }
}
