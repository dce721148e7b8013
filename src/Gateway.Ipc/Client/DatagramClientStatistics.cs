using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Client;

/// <summary>Counters of a <see cref="DatagramClient"/>. Each value is read atomically and only grows.</summary>
/// <remarks>
/// Every datagram read from the reply socket (<see cref="DatagramsReceived"/>) ends in exactly one of
/// <see cref="SpoofedReplies"/>, <see cref="ForeignUidReplies"/>, <see cref="OversizedDatagrams"/>,
/// <see cref="MalformedDatagrams"/>, <see cref="LateReplies"/>, <see cref="RepliesReceived"/> or
/// <see cref="FragmentsReceived"/>; a fragmented reply that reassembly completes is counted once more, by its outcome
/// (reply, late or malformed). Once the loop has handled every datagram:
/// <c>DatagramsReceived + ReassembledReplies == SpoofedReplies + ForeignUidReplies + OversizedDatagrams + MalformedDatagrams + LateReplies + RepliesReceived + FragmentsReceived</c>.
/// </remarks>
public sealed class DatagramClientStatistics
{
    internal long _requestsSent;
    internal long _repliesReceived;
    internal long _lateReplies;
    internal long _spoofedReplies;
    internal long _malformedDatagrams;
    internal long _oversizedDatagrams;
    internal long _timeouts;
    internal long _sendFailures;
    internal long _fragmentsReceived;
    internal long _datagramsReceived;
    internal long _foreignUidReplies;
    internal long _queuedSends;
    internal long _uploadsStarted;
    internal long _uploadChunksSent;
    internal long _uploadBytesSent;
    internal Transport.SendWaitCounters? _sendWaits;
    private readonly ReassemblerStatistics _reassembly;

    internal DatagramClientStatistics(ReassemblerStatistics reassembly)
    {
        _reassembly = reassembly;
    }

    /// <summary>Datagrams read from the reply socket, whatever became of them.</summary>
    public long DatagramsReceived => Interlocked.Read(ref _datagramsReceived);

    /// <summary>
    /// Datagrams from the backend's address dropped because their sender's uid was not
    /// <see cref="DatagramClientOptions.ExpectedReplyUid"/> (or they carried no credentials).
    /// </summary>
    public long ForeignUidReplies => Interlocked.Read(ref _foreignUidReplies);

    /// <summary>Fragmented replies that reassembly completed (each is then counted by its outcome too).</summary>
    public long ReassembledReplies => _reassembly.Completed;

    /// <summary>Streamed request bodies started (<see cref="DatagramClient.SendStreamedAsync"/>).</summary>
    public long UploadsStarted => Interlocked.Read(ref _uploadsStarted);

    /// <summary>Upload CHUNKs sent.</summary>
    public long UploadChunksSent => Interlocked.Read(ref _uploadChunksSent);

    /// <summary>Upload body bytes sent in CHUNKs.</summary>
    public long UploadBytesSent => Interlocked.Read(ref _uploadBytesSent);

    /// <summary>Requests (and pings) whose datagrams were all queued at the backend.</summary>
    public long RequestsSent => Interlocked.Read(ref _requestsSent);

    /// <summary>Replies (RESPONSE, ERROR, PONG) that completed a pending request.</summary>
    public long RepliesReceived => Interlocked.Read(ref _repliesReceived);

    /// <summary>Replies dropped because their correlation ID was not pending (late, duplicate or unknown).</summary>
    public long LateReplies => Interlocked.Read(ref _lateReplies);

    /// <summary>Datagrams dropped because they did not come from the backend's address.</summary>
    public long SpoofedReplies => Interlocked.Read(ref _spoofedReplies);

    /// <summary>Datagrams dropped because they broke the protocol (bad header, bad reply payload, unexpected kind).</summary>
    public long MalformedDatagrams => Interlocked.Read(ref _malformedDatagrams);

    /// <summary>Datagrams dropped because they filled the receive buffer (larger than <see cref="ProtocolConstants.MaxDatagram"/>).</summary>
    public long OversizedDatagrams => Interlocked.Read(ref _oversizedDatagrams);

    /// <summary>Requests that failed with <see cref="DatagramFailure.Timeout"/>.</summary>
    public long Timeouts => Interlocked.Read(ref _timeouts);

    /// <summary>Requests that could not be sent (absent or overloaded backend, too large).</summary>
    public long SendFailures => Interlocked.Read(ref _sendFailures);

    /// <summary>
    /// Requests that could not be sent at once (the backend's receive queue was full, other requests were queued, or
    /// the request is fragmented) and went through the send queue; their wait is the
    /// <c>gateway.ipc.client.send_queue.wait</c> histogram.
    /// </summary>
    public long QueuedSends => Interlocked.Read(ref _queuedSends);

    /// <summary>
    /// Times the send queue found the backend's receive queue full and slept until the kernel reported room (a socket
    /// connected to the backend is woken when the backend reads; see PLATFORM.md), or until its wait chunk (50 ms) ended.
    /// Not a retry count: the send is tried again only when woken.
    /// </summary>
    public long FullQueueWaits => _sendWaits?.FullQueueWaits ?? 0;

    /// <summary>Waits of <see cref="FullQueueWaits"/> that the kernel ended by reporting room (the backend read a datagram).</summary>
    public long RoomWakes => _sendWaits?.RoomWakes ?? 0;

    /// <summary>
    /// Times the kernel reported room in the backend's queue but the send was refused again (another sender took the
    /// room first, or the backend was restarted and the waiter still watched its old socket; it then reconnects).
    /// </summary>
    public long EmptyWakes => _sendWaits?.EmptyWakes ?? 0;

    /// <summary>Fragment datagrams from the backend handed to reassembly (a first fragment for a correlation ID that is not pending counts as late instead).</summary>
    public long FragmentsReceived => Interlocked.Read(ref _fragmentsReceived);

    /// <summary>Fragmented replies dropped or refused by reassembly (out of order, over a limit, too large, malformed, expired).</summary>
    public long ReassemblyDropped =>
        _reassembly.OutOfOrder + _reassembly.OverLimit + _reassembly.TooLarge + _reassembly.Malformed + _reassembly.Expired;
}
