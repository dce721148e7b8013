using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Client;

/// <summary>Counters of a <see cref="DatagramClient"/>. Each value is read atomically and only grows.</summary>
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
    internal long _queuedSends;
    private readonly ReassemblerStatistics _reassembly;

    internal DatagramClientStatistics(ReassemblerStatistics reassembly)
    {
        _reassembly = reassembly;
    }

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

    /// <summary>Fragment datagrams received from the backend.</summary>
    public long FragmentsReceived => Interlocked.Read(ref _fragmentsReceived);

    /// <summary>Fragmented replies dropped or refused by reassembly (out of order, over a limit, too large, malformed, expired).</summary>
    public long ReassemblyDropped =>
        _reassembly.OutOfOrder + _reassembly.OverLimit + _reassembly.TooLarge + _reassembly.Malformed + _reassembly.Expired;
}
