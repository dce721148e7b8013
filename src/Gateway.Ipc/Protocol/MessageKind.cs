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

    /// <summary>Client to backend: the client gave up on a request.</summary>
    Cancel = 6,
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
