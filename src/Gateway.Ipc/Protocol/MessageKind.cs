namespace Gateway.Ipc.Protocol;

/// <summary>The <c>kind</c> field of the common header.</summary>
public enum MessageKind : byte
{
    /// <summary>Client to backend: an HTTP-like request.</summary>
    Request = 1,

    /// <summary>Backend to client: the response to a request.</summary>
    Response = 2,

    /// <summary>Backend to client: the backend could not produce a response.</summary>
    Error = 3,

    /// <summary>Client to backend: health probe.</summary>
    Ping = 4,

    /// <summary>Backend to client: answer to a ping.</summary>
    Pong = 5,

    /// <summary>Client to backend: the client gave up on a request (and stops its stream, if any).</summary>
    Cancel = 6,

    /// <summary>Backend to client: status and headers of a streamed reply; CHUNKs and an END (or an ERROR) follow.</summary>
    ResponseHead = 7,

    /// <summary>Client to backend: a request whose body follows as CHUNKs and an END.</summary>
    RequestHead = 8,

    /// <summary>Either direction: a piece of a streamed body (<c>u32</c> sequence, then data).</summary>
    Chunk = 9,

    /// <summary>Either direction: the end of a streamed body (<c>u32</c> chunk count).</summary>
    End = 10,

    /// <summary>Either direction, from a stream's receiver: more bytes the sender may send (<c>u32</c>).</summary>
    Credit = 11,
}

/// <summary>The <c>features</c> byte of the header (byte 5): what a peer implements (PING, PONG) or allows for one request (REQUEST, REQUEST_HEAD).</summary>
[Flags]
public enum StreamFeatures : byte
{
    /// <summary>No feature (what a peer written before streams sends).</summary>
    None = 0,

    /// <summary>Streamed replies: RESPONSE_HEAD, CHUNK, END (in a REQUEST: this request accepts one).</summary>
    StreamReply = 1,

    /// <summary>Streamed request bodies: REQUEST_HEAD, CHUNK, END (announced in PING and PONG only).</summary>
    StreamRequest = 2,

    /// <summary>
    /// In a REQUEST or REQUEST_HEAD only: the client will send no other attempt of this request, so the backend need not
    /// keep its reply for a replay (docs/protocol.md §5). Not a capability: never in PING or PONG.
    /// </summary>
    NoRetry = 4,
}

/// <summary>The <c>flags</c> field of the common header.</summary>
[Flags]
public enum MessageFlags : byte
{
    /// <summary>No flag.</summary>
    None = 0,

    /// <summary>The datagram is a fragment of a larger message; a <c>fragment_offset</c> follows the header.</summary>
    Fragment = 1,

    /// <summary>The response was replayed from the backend's replay cache instead of being executed again.</summary>
    Replay = 2,
}

/// <summary>The <c>code</c> of an ERROR message.</summary>
public enum IpcErrorCode : ushort
{
    /// <summary>The backend could read the header but not the payload.</summary>
    Malformed = 1,

    /// <summary>The backend has nothing for this method and target.</summary>
    NotFound = 2,

    /// <summary>The backend refuses work now; retryable.</summary>
    Overloaded = 3,

    /// <summary>The request is larger than the backend accepts.</summary>
    TooLarge = 4,

    /// <summary>The time budget ran out before or while the backend worked.</summary>
    DeadlineExceeded = 5,

    /// <summary>The handler failed.</summary>
    Internal = 6,
}
