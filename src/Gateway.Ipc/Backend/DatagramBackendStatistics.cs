namespace Gateway.Ipc.Backend;

/// <summary>Counters of a <see cref="DatagramBackendServer"/>; every read is an atomic snapshot of one counter.</summary>
/// <remarks>
/// Every received datagram ends in exactly one of <see cref="DroppedOversized"/>, <see cref="DroppedMalformed"/>,
/// <see cref="Pings"/>, <see cref="Cancels"/>, <see cref="Credits"/>, <see cref="RequestsTooLarge"/>, <see cref="FragmentsReceived"/>,
/// <see cref="DuplicatesInFlight"/>, <see cref="Replayed"/>, <see cref="Overloaded"/>, <see cref="MalformedErrorsSent"/>,
/// <see cref="Dispatched"/> or <see cref="ProcessingFailures"/>; a fragmented request that reassembly completes is
/// counted once more, by its outcome. Once the loop has handled every datagram:
/// <c>Received + RequestsReassembled == DroppedOversized + DroppedMalformed + Pings + Cancels + Credits + RequestsTooLarge + FragmentsReceived + DuplicatesInFlight + Replayed + Overloaded + MalformedErrorsSent + Dispatched + ProcessingFailures</c>,
/// and once every dispatched request has started or been dropped: <c>Dispatched == Executed + DroppedExpired</c>.
/// </remarks>
public sealed class DatagramBackendStatistics
{
    internal long _received;
    internal long _executed;
    internal long _replayed;
    internal long _duplicatesInFlight;
    internal long _droppedMalformed;
    internal long _droppedOversized;
    internal long _droppedExpired;
    internal long _malformedErrorsSent;
    internal long _overloaded;
    internal long _pings;
    internal long _cancels;
    internal long _credits;
    internal long _streamsStarted;
    internal long _uploadsStarted;
    internal long _uploadChunks;
    internal long _uploadViolations;
    internal long _uploadMessages;
    internal long _lateStreamMessages;
    internal long _streamsCancelled;
    internal long _replyFailures;
    internal long _tooLarge;
    internal long _handlerFailures;
    internal long _fragmentsReceived;
    internal long _fragmentsDropped;
    internal long _requestsTooLarge;
    internal long _requestsReassembled;
    internal long _dispatched;
    internal long _processingFailures;

    /// <summary>Datagrams received (every datagram, valid or not).</summary>
    public long Received => Interlocked.Read(ref _received);

    /// <summary>Handler executions started.</summary>
    public long Executed => Interlocked.Read(ref _executed);

    /// <summary>Retries answered from the replay cache without executing again.</summary>
    public long Replayed => Interlocked.Read(ref _replayed);

    /// <summary>Retries dropped because the same request (sender, correlation ID) was still executing.</summary>
    public long DuplicatesInFlight => Interlocked.Read(ref _duplicatesInFlight);

    /// <summary>Datagrams dropped because their header was malformed, or of a kind a backend does not accept.</summary>
    public long DroppedMalformed => Interlocked.Read(ref _droppedMalformed);

    /// <summary>Datagrams dropped because they filled the receive buffer (possibly truncated).</summary>
    public long DroppedOversized => Interlocked.Read(ref _droppedOversized);

    /// <summary>Requests dropped unexecuted because their deadline had passed before the handler could start.</summary>
    public long DroppedExpired => Interlocked.Read(ref _droppedExpired);

    /// <summary>ERROR <c>MALFORMED</c> replies sent for requests with a valid header and a bad payload.</summary>
    public long MalformedErrorsSent => Interlocked.Read(ref _malformedErrorsSent);

    /// <summary>Requests refused with ERROR <c>OVERLOADED</c> because <see cref="DatagramBackendOptions.MaxConcurrency"/> were executing.</summary>
    public long Overloaded => Interlocked.Read(ref _overloaded);

    /// <summary>PING messages received.</summary>
    public long Pings => Interlocked.Read(ref _pings);

    /// <summary>CANCEL messages received.</summary>
    public long Cancels => Interlocked.Read(ref _cancels);

    /// <summary>Well-formed CREDIT messages received (for open or already ended streams).</summary>
    public long Credits => Interlocked.Read(ref _credits);

    /// <summary>Streamed replies started (RESPONSE_HEAD sent).</summary>
    public long StreamsStarted => Interlocked.Read(ref _streamsStarted);

    /// <summary>Streamed request bodies accepted (REQUEST_HEAD dispatched to the handler).</summary>
    public long UploadsStarted => Interlocked.Read(ref _uploadsStarted);

    /// <summary>CHUNKs of streamed request bodies received for an open upload.</summary>
    public long UploadChunks => Interlocked.Read(ref _uploadChunks);

    /// <summary>CHUNK and END messages received for an open streamed request body (accepted or breaking it).</summary>
    public long UploadMessages => Interlocked.Read(ref _uploadMessages);

    /// <summary>CHUNK and END messages dropped because no upload of theirs is open (it ended, was replied to, or was cancelled).</summary>
    public long LateStreamMessages => Interlocked.Read(ref _lateStreamMessages);

    /// <summary>Streamed request bodies broken by the client (chunk beyond credit, out of sequence, wrong END count): answered ERROR <c>MALFORMED</c>.</summary>
    public long UploadViolations => Interlocked.Read(ref _uploadViolations);

    /// <summary>Streamed replies stopped by the client's CANCEL.</summary>
    public long StreamsCancelled => Interlocked.Read(ref _streamsCancelled);

    /// <summary>Replies that could not be sent (client gone, or its queue stayed full past the send timeout).</summary>
    public long ReplyFailures => Interlocked.Read(ref _replyFailures);

    /// <summary>Requests or replies refused with ERROR <c>TOO_LARGE</c>.</summary>
    public long TooLarge => Interlocked.Read(ref _tooLarge);

    /// <summary>Fragment datagrams of requests received.</summary>
    public long FragmentsReceived => Interlocked.Read(ref _fragmentsReceived);

    /// <summary>
    /// Fragments dropped by reassembly: out of order, malformed, over the memory limit (partial messages freed by the
    /// reassembly timeout are counted by the reassembler, not here).
    /// </summary>
    public long FragmentsDropped => Interlocked.Read(ref _fragmentsDropped);

    /// <summary>Requests refused with ERROR <c>TOO_LARGE</c> on arrival (their announced payload exceeds the limit; once per message).</summary>
    public long RequestsTooLarge => Interlocked.Read(ref _requestsTooLarge);

    /// <summary>Fragmented requests that reassembly completed (each is then counted by its outcome too).</summary>
    public long RequestsReassembled => Interlocked.Read(ref _requestsReassembled);

    /// <summary>Requests handed to the handler's queue (each then counts in <see cref="Executed"/> or <see cref="DroppedExpired"/>).</summary>
    public long Dispatched => Interlocked.Read(ref _dispatched);

    /// <summary>Datagrams whose processing failed unexpectedly (a bug: logged as an error, never fatal).</summary>
    public long ProcessingFailures => Interlocked.Read(ref _processingFailures);

    /// <summary>Handler executions that threw (answered with ERROR <c>INTERNAL</c>).</summary>
    public long HandlerFailures => Interlocked.Read(ref _handlerFailures);
}
