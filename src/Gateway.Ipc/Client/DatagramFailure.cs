namespace Gateway.Ipc.Client;

/// <summary>Why a datagram request failed (see <see cref="DatagramException"/>).</summary>
public enum DatagramFailure
{
    /// <summary>No reply arrived within the attempt's reply timeout.</summary>
    Timeout,

    /// <summary>
    /// The backend's socket does not exist, is stale (nobody reads it) or cannot be written to
    /// (<c>ENOENT</c>, <c>ECONNREFUSED</c>, <c>EACCES</c>, …). Nothing was delivered.
    /// </summary>
    BackendAbsent,

    /// <summary>The backend's receive queue stayed full for the whole send timeout. Nothing (or only part of a fragmented message) was delivered.</summary>
    BackendOverloaded,

    /// <summary>The request or the reply is larger than the configured maximum message size (or than the kernel accepts).</summary>
    TooLarge,

    /// <summary>The backend's reply broke a rule of the protocol (e.g. a RESPONSE payload that does not decode).</summary>
    MalformedReply,

    /// <summary>The client was disposed while the request was pending (or its reply stream open).</summary>
    Closed,

    /// <summary>
    /// A streamed reply ended without its END: the backend sent ERROR mid-stream, or broke the stream's rules (sequence,
    /// credit, chunk count). The status and headers were already delivered.
    /// </summary>
    StreamAborted,
}
