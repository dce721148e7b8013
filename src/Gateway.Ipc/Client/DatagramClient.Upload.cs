using System.Buffers;
using Gateway.Ipc.Diagnostics;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Transport;

namespace Gateway.Ipc.Client;

/// <summary>Streamed request bodies (docs/protocol.md §4.5.3): REQUEST_HEAD, CHUNKs within the backend's credit, END.</summary>
public sealed partial class DatagramClient
{
    /// <summary>The most body bytes one upload CHUNK carries (less when the credit left is smaller).</summary>
    public const int MaxUploadChunkBytes = 64 * 1024;

    private readonly System.Collections.Concurrent.ConcurrentDictionary<ulong, Upload> _uploads = new();
    private int _backendFeatures = -1;

    /// <summary>
    /// The features the backend announced in its most recent PONG (docs/protocol.md §4.5.1), or <see langword="null"/>
    /// before the first PONG (send a PING with <see cref="PingAsync"/> to learn them).
    /// </summary>
    public StreamFeatures? BackendFeatures => Volatile.Read(ref _backendFeatures) is var f and >= 0 ? (StreamFeatures)f : null;

    /// <summary>
    /// Sends a request whose body is streamed (docs/protocol.md §4.5.3): the REQUEST_HEAD, then <paramref name="body"/> as
    /// CHUNKs as it is read, never more than the backend granted (CREDIT), then END; and waits for the reply (RESPONSE,
    /// ERROR or a streamed reply when the head accepts one). Only for a backend whose PONG announced
    /// <see cref="StreamFeatures.StreamRequest"/> (<see cref="BackendFeatures"/>). Never retried: the body is consumed.
    /// </summary>
    /// <remarks>
    /// <para>
    /// At most one chunk of the body (<see cref="MaxUploadChunkBytes"/>) is held by the client. A RESPONSE or ERROR that
    /// arrives before the body has been sent whole ends the upload (no more CHUNKs, no END); the rest of
    /// <paramref name="body"/> is not read. A streamed reply (RESPONSE_HEAD) does not: the task completes with the reply
    /// and the upload goes on beside it (full duplex: a backend may stream the body back as it reads it) until END, or
    /// until the reply stream ends, fails or is disposed.
    /// </para>
    /// <para>
    /// If reading <paramref name="body"/> throws, the request is CANCELled at the backend and the task fails with that
    /// exception (after a streamed reply's head: the reply stream fails with <see cref="DatagramFailure.StreamAborted"/>).
    /// </para>
    /// </remarks>
    /// <param name="head">The encoded REQUEST_HEAD (<see cref="FrameWriter.BeginRequestHead"/>); it must fit one datagram.</param>
    /// <param name="body">The body, read to its end.</param>
    /// <param name="timeout">
    /// How long the client waits for the backend each time it waits until the reply: for credit while the body is sent,
    /// and for the reply once END is sent (<see cref="Timeout.InfiniteTimeSpan"/> = no limit). Reading
    /// <paramref name="body"/> is not limited by it (the body's source bounds that).
    /// </param>
    /// <param name="cancellationToken">The caller's token.</param>
    /// <returns>The reply; dispose it.</returns>
    /// <exception cref="DatagramException">The request failed; <see cref="DatagramException.Failure"/> says why.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired.</exception>
    /// <exception cref="InvalidOperationException">A request with the same correlation ID is pending.</exception>
    /// <exception cref="ArgumentException"><paramref name="head"/> is not a whole, single-datagram REQUEST_HEAD.</exception>
    public async Task<DatagramReply> SendStreamedAsync(ReadOnlyMemory<byte> head, Stream body, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(body);
        FrameHeader header;
        try
        {
            header = FrameHeader.ReadDatagram(head.Span);
        }
        catch (ProtocolException ex)
        {
            throw new ArgumentException($"The head is not a valid encoded message: {ex.Message}", nameof(head), ex);
        }

        if (header.Kind != MessageKind.RequestHead || header.IsFragment || head.Length > ProtocolConstants.MaxDatagram)
        {
            throw new ArgumentException("The head must be a whole REQUEST_HEAD that fits one datagram.", nameof(head));
        }

        ValidateTimeout(timeout);
        cancellationToken.ThrowIfCancellationRequested();
        var correlationId = header.CorrelationId;
        var entry = new PendingRequest(this, correlationId, isPing: false) { AcceptsStream = (header.Features & StreamFeatures.StreamReply) != 0 };
        if (!_pending.TryAdd(correlationId, entry))
        {
            throw new InvalidOperationException($"A request with correlation ID {correlationId} is already pending.");
        }

        // Registered before the head goes out: the backend's first CREDIT may come back before this thread runs again.
        var upload = new Upload(cancellationToken);
        _uploads[correlationId] = upload;
        var pump = Task.CompletedTask;
        try
        {
            if (Volatile.Read(ref _disposed) != 0)
            {
                entry.Fail(new DatagramException(DatagramFailure.Closed, BackendPath));
            }

            entry.Start(Timeout.InfiniteTimeSpan, cancellationToken);
            Interlocked.Increment(ref Statistics._uploadsStarted);
            if (!entry.Task.IsCompleted)
            {
                entry.ArmTimer(timeout);
                await SendFrameAsync(head, entry).ConfigureAwait(false);
            }

            // A RESPONSE_HEAD does not end the upload (full duplex): under load it can arrive before this line runs.
            if (!entry.Task.IsCompleted || entry.Task is { IsCompletedSuccessfully: true, Result.IsStreamed: true })
            {
                pump = PumpAsync(entry, upload, header.Attempt, body, timeout);
            }
            else
            {
                EndUpload(correlationId, upload);
            }

            DatagramReply reply;
            try
            {
                reply = await entry.Task.ConfigureAwait(false);
            }
            catch
            {
                upload.Close();
                await pump.ConfigureAwait(false);
                throw;
            }

            if (!reply.IsStreamed)
            {
                // A RESPONSE or ERROR ended the upload (Deliver closed it).
                upload.Close();
                await pump.ConfigureAwait(false);
            }

            return reply;
        }
        catch when (pump.IsCompleted)
        {
            EndUpload(correlationId, upload);
            throw;
        }
    }

    private void EndUpload(ulong correlationId, Upload upload)
    {
        _uploads.TryRemove(new KeyValuePair<ulong, Upload>(correlationId, upload));
        upload.Close();
    }

    /// <summary>Receive loop and reply streams: the request's reply (or its stream) is over, so is its upload.</summary>
    internal void CloseUpload(ulong correlationId)
    {
        if (!_uploads.IsEmpty && _uploads.TryGetValue(correlationId, out var upload))
        {
            upload.Close();
        }
    }

    /// <summary>Sends the body as CHUNKs within the credit, then END. Ends when the body is sent or the upload is closed. Never throws.</summary>
    private async Task PumpAsync(PendingRequest entry, Upload upload, ushort attempt, Stream body, TimeSpan timeout)
    {
        const int prefix = StreamFrames.ChunkDataOffset;
        var correlationId = entry.CorrelationId;
        var buffer = ArrayPool<byte>.Shared.Rent(prefix + MaxUploadChunkBytes);

        // A request that fails (timeout, caller gone, dispose, send failure) ends its upload, and the backend's handler,
        // which would otherwise wait for the rest of the body, is CANCELled.
        _ = entry.Task.ContinueWith(
            static (task, state) =>
            {
                var (client, upload, correlationId) = ((DatagramClient, Upload, ulong))state!;
                upload.Close();
                client.SendCancel(correlationId);
            },
            (this, upload, correlationId),
            CancellationToken.None,
            TaskContinuationOptions.NotOnRanToCompletion,
            TaskScheduler.Default);

        uint sequence = 0;
        try
        {
            while (!upload.IsClosed)
            {
                var available = upload.Available;
                if (available <= 0)
                {
                    // The entry's timer bounds the wait for credit until the reply (armed when the head was sent or by the last chunk).
                    await upload.WaitForCreditAsync().ConfigureAwait(false);
                    continue;
                }

                entry.DisarmTimer();
                int read;
                try
                {
                    read = await body.ReadAsync(buffer.AsMemory(prefix, (int)Math.Min(available, MaxUploadChunkBytes)), upload.Stopped).ConfigureAwait(false);
                }
                catch (OperationCanceledException) when (upload.IsClosed)
                {
                    return;
                }
                catch (Exception ex)
                {
                    // The body's source failed (or the caller went away): the backend drops the request.
                    Abandon(entry, upload, ex, $"The request body could not be read: {ex.Message}");
                    return;
                }

                if (upload.IsClosed)
                {
                    return;
                }

                entry.ArmTimer(timeout);
                int length;
                if (read == 0)
                {
                    StreamFrames.WriteControl(buffer, MessageKind.End, correlationId, attempt, sequence);
                    length = StreamFrames.ControlSize;
                }
                else
                {
                    StreamFrames.WriteChunkPrefix(buffer, correlationId, attempt, sequence, read);
                    length = prefix + read;
                    upload.Consume(read);
                    sequence++;
                }

                if (!await SendUploadDatagramAsync(buffer.AsMemory(0, length), entry, upload).ConfigureAwait(false) || read == 0)
                {
                    return;
                }

                Interlocked.Increment(ref Statistics._uploadChunksSent);
                Interlocked.Add(ref Statistics._uploadBytesSent, read);
            }
        }
        catch (Exception ex)
        {
            // Not expected: the request must still end.
            Abandon(entry, upload, ex, $"The upload failed: {ex.Message}");
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            EndUpload(correlationId, upload);
            upload.Dispose();
        }
    }

    /// <summary>Ends an upload that cannot go on: the request fails with <paramref name="failure"/> (or, after a streamed reply's head, its stream does) and is CANCELled at the backend.</summary>
    private void Abandon(PendingRequest entry, Upload upload, Exception failure, string streamMessage)
    {
        upload.Close();
        if (entry.Fail(failure))
        {
            // The failed request's continuation (PumpAsync) CANCELs it.
        }
        else if (_streams.TryGetValue(entry.CorrelationId, out var stream)
            && stream.Fail(new DatagramException(DatagramFailure.StreamAborted, BackendPath, streamMessage, failure)))
        {
            _streams.TryRemove(new KeyValuePair<ulong, ReplyStream>(entry.CorrelationId, stream));
            SendCancel(entry.CorrelationId);
        }
    }

    /// <summary>Sends one CHUNK or END, waiting in the send queue when the backend's queue is full. False when the upload ended.</summary>
    private async ValueTask<bool> SendUploadDatagramAsync(ReadOnlyMemory<byte> datagram, PendingRequest entry, Upload upload)
    {
        _tap?.Observer?.OnDatagram(DatagramDirection.Sent, BackendPath, datagram.Span);
        try
        {
            if (!_sendQueue.TrySendNow(datagram.Span))
            {
                await _sendQueue.EnqueueAsync(datagram, upload.Stopped).ConfigureAwait(false);
            }

            return true;
        }
        catch (OperationCanceledException) when (upload.IsClosed)
        {
            return false;
        }
        catch (DatagramSendException ex)
        {
            Interlocked.Increment(ref Statistics._sendFailures);
            Log.SendFailed(_logger, BackendPath, ex.Failure, ex.SocketError);
            Abandon(entry, upload, new DatagramException(ex.Failure, BackendPath, $"Sending to backend '{BackendPath}' failed: {ex.Message}", ex), $"Sending the request body to backend '{BackendPath}' failed: {ex.Message}");
            return false;
        }
        catch (ObjectDisposedException ex)
        {
            Abandon(entry, upload, new DatagramException(DatagramFailure.Closed, BackendPath), $"The client closed: {ex.Message}");
            return false;
        }
    }

    /// <summary>Receive loop: a CREDIT from the backend for an upload (dropped when the upload is over).</summary>
    private void OnCredit(ulong correlationId, ReadOnlySpan<byte> payload)
    {
        uint bytes;
        try
        {
            bytes = StreamFrames.ReadCredit(payload);
        }
        catch (ProtocolException ex)
        {
            OnMalformed(ex.Reason, ex.Message);
            return;
        }

        if (!_uploads.IsEmpty && _uploads.TryGetValue(correlationId, out var upload))
        {
            upload.Add(bytes);
        }
    }

    /// <summary>An upload's state: the credit it may still use, a wait for more, and its end.</summary>
    private sealed class Upload : IDisposable
    {
        private readonly Lock _lock = new();
        private readonly CancellationTokenSource _stop;
        private long _available;
        private bool _closed;
        private TaskCompletionSource? _waiter;

        public Upload(CancellationToken callerToken)
        {
            _stop = CancellationTokenSource.CreateLinkedTokenSource(callerToken);
            Stopped = _stop.Token;
        }

        /// <summary>Fires when the upload is closed (or the caller's token fires): ends a read of the body or a queued send.</summary>
        public CancellationToken Stopped { get; }

        public bool IsClosed
        {
            get
            {
                lock (_lock)
                {
                    return _closed;
                }
            }
        }

        public long Available
        {
            get
            {
                lock (_lock)
                {
                    return _available;
                }
            }
        }

        public void Add(uint bytes)
        {
            TaskCompletionSource? waiter;
            lock (_lock)
            {
                _available += bytes;
                waiter = _waiter;
                _waiter = null;
            }

            waiter?.TrySetResult();
        }

        public void Consume(int bytes)
        {
            lock (_lock)
            {
                _available -= bytes;
            }
        }

        /// <summary>Completes when there is credit or the upload is closed.</summary>
        public Task WaitForCreditAsync()
        {
            lock (_lock)
            {
                return _available > 0 || _closed ? Task.CompletedTask : (_waiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously)).Task;
            }
        }

        public void Close()
        {
            TaskCompletionSource? waiter;
            lock (_lock)
            {
                if (_closed)
                {
                    return;
                }

                _closed = true;
                waiter = _waiter;
                _waiter = null;
            }

            waiter?.TrySetResult();
            try
            {
                _stop.Cancel();
            }
            catch (ObjectDisposedException)
            {
                // The pump has ended.
            }
        }

        public void Dispose()
        {
            lock (_lock)
            {
                _closed = true;
            }

            _stop.Dispose();
        }
    }
}
