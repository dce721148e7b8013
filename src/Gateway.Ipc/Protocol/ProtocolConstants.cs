namespace Gateway.Ipc.Protocol;

/// <summary>Constants of wire protocol v1 (see <c>docs/protocol.md</c>).</summary>
public static class ProtocolConstants
{
    /// <summary>First magic byte, ASCII <c>G</c>.</summary>
    public const byte Magic0 = 0x47;

    /// <summary>Second magic byte, ASCII <c>D</c>.</summary>
    public const byte Magic1 = 0x44;

    /// <summary>The protocol version this library speaks.</summary>
    public const byte Version = 1;

    /// <summary>Size of the common header that starts every datagram.</summary>
    public const int HeaderSize = 24;

    /// <summary>Size of the header of a fragment datagram (common header + <c>fragment_offset</c>).</summary>
    public const int FragmentHeaderSize = HeaderSize + 4;

    /// <summary>
    /// The largest datagram a sender may send: the largest one Linux accepts with the default send buffer
    /// (<c>net.core.wmem_default</c> = 212,992 B).
    /// </summary>
    public const int MaxDatagram = 212_960;

    /// <summary>The largest payload that travels in one datagram without fragmentation.</summary>
    public const int MaxUnfragmentedPayload = MaxDatagram - HeaderSize;

    /// <summary>The most payload bytes one fragment datagram carries.</summary>
    public const int MaxFragmentData = MaxDatagram - FragmentHeaderSize;

    /// <summary>The most data bytes one CHUNK of a stream carries (a CHUNK is never fragmented).</summary>
    public const int MaxChunkData = MaxUnfragmentedPayload - 4;

    /// <summary>The largest credit one CREDIT message grants.</summary>
    public const uint MaxCredit = int.MaxValue;

    /// <summary>Maximum length of the request method.</summary>
    public const int MaxMethodLength = 32;

    /// <summary>Exact length of a W3C <c>traceparent</c> of version 00.</summary>
    public const int TraceParentLength = 55;

    /// <summary>Maximum length of a W3C <c>tracestate</c>.</summary>
    public const int MaxTraceStateLength = 512;

    /// <summary>Maximum length in bytes of the message of an ERROR.</summary>
    public const int MaxErrorMessageLength = 1024;

    /// <summary>Largest body the default limits carry: 16 MiB.</summary>
    public const int DefaultMaxBodyBytes = 16 * 1024 * 1024;

    /// <summary>
    /// Default maximum size of a (reassembled) message payload: 17 MiB, a 16 MiB body plus up to 1 MiB of
    /// method, target, trace context and headers.
    /// </summary>
    public const int DefaultMaxMessageBytes = DefaultMaxBodyBytes + (1024 * 1024);
}
