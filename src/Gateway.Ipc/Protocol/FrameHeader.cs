using System.Buffers.Binary;

namespace Gateway.Ipc.Protocol;

/// <summary>The 24-byte common header of every datagram.</summary>
/// <remarks>
/// <code>
/// offset size field
///      0    2 magic 'G' 'D'
///      2    1 version (1)
///      3    1 kind
///      4    1 flags (bit 0 FRAGMENT, bit 1 REPLAY)
///      5    1 features (PING, PONG, REQUEST, REQUEST_HEAD; else 0)
///      6    2 attempt
///      8    8 correlation_id (never 0)
///     16    4 budget_ms (0 = no deadline)
///     20    4 payload_length
/// </code>
/// All integers are big-endian.
/// </remarks>
/// <param name="Kind">The message kind.</param>
/// <param name="Flags">The flags.</param>
/// <param name="Attempt">The attempt number (1 for the first try).</param>
/// <param name="CorrelationId">The correlation ID chosen by the client.</param>
/// <param name="BudgetMs">Remaining time budget in milliseconds (requests only; 0 = none).</param>
/// <param name="PayloadLength">Length of the whole payload (reassembled, for fragments).</param>
public readonly record struct FrameHeader(
    MessageKind Kind,
    MessageFlags Flags,
    ushort Attempt,
    ulong CorrelationId,
    uint BudgetMs,
    uint PayloadLength)
{
    /// <summary>The <c>features</c> byte: meaningful in PING, PONG, REQUEST and REQUEST_HEAD (ignored, and written as 0 by this library, in other kinds).</summary>
    public StreamFeatures Features { get; init; }

    /// <summary>Whether the datagram is a fragment.</summary>
    public bool IsFragment => (Flags & MessageFlags.Fragment) != 0;

    /// <summary>Writes the header into the first 24 bytes of <paramref name="destination"/>.</summary>
    /// <param name="destination">At least <see cref="ProtocolConstants.HeaderSize"/> bytes.</param>
    public void Write(Span<byte> destination)
    {
        if (destination.Length < ProtocolConstants.HeaderSize)
        {
            throw new ArgumentException("The destination is shorter than the header.", nameof(destination));
        }

        destination[0] = ProtocolConstants.Magic0;
        destination[1] = ProtocolConstants.Magic1;
        destination[2] = ProtocolConstants.Version;
        destination[3] = (byte)Kind;
        destination[4] = (byte)Flags;
        destination[5] = (byte)Features;
        BinaryPrimitives.WriteUInt16BigEndian(destination[6..], Attempt);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], CorrelationId);
        BinaryPrimitives.WriteUInt32BigEndian(destination[16..], BudgetMs);
        BinaryPrimitives.WriteUInt32BigEndian(destination[20..], PayloadLength);
    }

    /// <summary>
    /// Reads a header. Returns <see langword="false"/> when <paramref name="source"/> is shorter than a header
    /// (partial input); throws <see cref="ProtocolException"/> when the header is malformed.
    /// </summary>
    /// <param name="source">The datagram.</param>
    /// <param name="header">The header read.</param>
    /// <returns>Whether a whole header was present.</returns>
    /// <exception cref="ProtocolException">Bad magic, version, kind, flags or a zero correlation ID.</exception>
    public static bool TryRead(ReadOnlySpan<byte> source, out FrameHeader header)
    {
        if (source.Length < ProtocolConstants.HeaderSize)
        {
            header = default;
            return false;
        }

        if (source[0] != ProtocolConstants.Magic0 || source[1] != ProtocolConstants.Magic1)
        {
            ProtocolException.Throw(ProtocolViolation.BadMagic, "The datagram does not start with the magic bytes 'GD'.");
        }

        if (source[2] != ProtocolConstants.Version)
        {
            ProtocolException.Throw(ProtocolViolation.UnsupportedVersion, $"Protocol version {source[2]} is not supported (expected {ProtocolConstants.Version}).");
        }

        var kind = (MessageKind)source[3];
        if (kind is < MessageKind.Request or > MessageKind.Credit)
        {
            ProtocolException.Throw(ProtocolViolation.UnknownKind, $"Message kind {source[3]} is not defined.");
        }

        var flags = (MessageFlags)source[4];
        if ((flags & ~(MessageFlags.Fragment | MessageFlags.Replay)) != 0)
        {
            ProtocolException.Throw(ProtocolViolation.BadFlags, $"Undefined flag bits 0x{source[4]:x2} are set.");
        }

        if ((flags & MessageFlags.Fragment) != 0 && kind is not (MessageKind.Request or MessageKind.Response))
        {
            ProtocolException.Throw(ProtocolViolation.BadFlags, $"A {kind} message is never fragmented.");
        }

        var correlationId = BinaryPrimitives.ReadUInt64BigEndian(source[8..]);
        if (correlationId == 0)
        {
            ProtocolException.Throw(ProtocolViolation.ZeroCorrelationId, "The correlation ID is 0.");
        }

        header = new FrameHeader(
            kind,
            flags,
            BinaryPrimitives.ReadUInt16BigEndian(source[6..]),
            correlationId,
            BinaryPrimitives.ReadUInt32BigEndian(source[16..]),
            BinaryPrimitives.ReadUInt32BigEndian(source[20..]))
        {
            Features = (StreamFeatures)source[5],
        };
        return true;
    }

    /// <summary>
    /// Reads and validates the header of a whole datagram: like <see cref="TryRead"/>, and also checks that
    /// an unfragmented datagram's <c>payload_length</c> matches its size and that a fragment is well formed.
    /// </summary>
    /// <param name="datagram">The whole datagram.</param>
    /// <returns>The header.</returns>
    /// <exception cref="ProtocolException">The datagram is malformed.</exception>
    public static FrameHeader ReadDatagram(ReadOnlySpan<byte> datagram) => ReadDatagram(datagram, refuseNeedlessFragments: true);

    /// <summary>
    /// <see cref="ReadDatagram(ReadOnlySpan{byte})"/>, optionally accepting a fragment of a message that would fit one
    /// datagram (the <see cref="Reassembler"/>'s unit tests build small fragmented messages; receivers refuse them
    /// before reassembly).
    /// </summary>
    internal static FrameHeader ReadDatagram(ReadOnlySpan<byte> datagram, bool refuseNeedlessFragments)
    {
        if (!TryRead(datagram, out var header))
        {
            throw new ProtocolException(ProtocolViolation.BadLength, $"The datagram has {datagram.Length} bytes, fewer than the {ProtocolConstants.HeaderSize}-byte header.");
        }

        if (header.Kind is MessageKind.Ping or MessageKind.Pong or MessageKind.Cancel && header.PayloadLength != 0)
        {
            ProtocolException.Throw(ProtocolViolation.BadLength, $"A {header.Kind} message has an empty payload, not {header.PayloadLength} bytes.");
        }

        if (header.Kind is MessageKind.End or MessageKind.Credit && header.PayloadLength != 4)
        {
            ProtocolException.Throw(ProtocolViolation.BadLength, $"A {header.Kind} message has a 4-byte payload, not {header.PayloadLength} bytes.");
        }

        if (header.Kind is MessageKind.Chunk && header.PayloadLength <= 4)
        {
            ProtocolException.Throw(ProtocolViolation.BadLength, "A CHUNK carries no data.");
        }

        if (!header.IsFragment)
        {
            if (header.PayloadLength != (uint)(datagram.Length - ProtocolConstants.HeaderSize))
            {
                ProtocolException.Throw(ProtocolViolation.BadLength, $"payload_length is {header.PayloadLength} but the datagram carries {datagram.Length - ProtocolConstants.HeaderSize} payload bytes.");
            }
        }
        else
        {
            if (datagram.Length <= ProtocolConstants.FragmentHeaderSize)
            {
                ProtocolException.Throw(ProtocolViolation.BadLength, "A fragment carries no data.");
            }

            if (refuseNeedlessFragments && header.PayloadLength <= ProtocolConstants.MaxUnfragmentedPayload)
            {
                ProtocolException.Throw(ProtocolViolation.BadLength, $"A fragment of a {header.PayloadLength}-byte payload, which fits one datagram: such a message must not be fragmented.");
            }

            var offset = BinaryPrimitives.ReadUInt32BigEndian(datagram[ProtocolConstants.HeaderSize..]);
            var dataLength = (ulong)(datagram.Length - ProtocolConstants.FragmentHeaderSize);
            if (offset + dataLength > header.PayloadLength)
            {
                ProtocolException.Throw(ProtocolViolation.BadLength, $"The fragment at offset {offset} with {dataLength} bytes runs past payload_length {header.PayloadLength}.");
            }
        }

        return header;
    }

    /// <summary>Reads the <c>fragment_offset</c> of a fragment datagram already validated by <see cref="ReadDatagram(ReadOnlySpan{byte})"/>.</summary>
    /// <param name="datagram">The fragment datagram.</param>
    /// <returns>The offset of the fragment's data within the payload.</returns>
    public static uint ReadFragmentOffset(ReadOnlySpan<byte> datagram) =>
        BinaryPrimitives.ReadUInt32BigEndian(datagram[ProtocolConstants.HeaderSize..]);

    /// <summary>Overwrites the attempt field of an encoded message in place.</summary>
    /// <param name="frame">An encoded message (at least the header).</param>
    /// <param name="attempt">The new attempt number.</param>
    public static void PatchAttempt(Span<byte> frame, ushort attempt) => BinaryPrimitives.WriteUInt16BigEndian(frame[6..], attempt);

    /// <summary>Overwrites the budget field of an encoded message in place.</summary>
    /// <param name="frame">An encoded message (at least the header).</param>
    /// <param name="budgetMs">The new budget in milliseconds.</param>
    public static void PatchBudget(Span<byte> frame, uint budgetMs) => BinaryPrimitives.WriteUInt32BigEndian(frame[16..], budgetMs);

    /// <summary>Sets the <c>features</c> byte of an encoded message in place.</summary>
    /// <param name="frame">An encoded message (at least the header).</param>
    /// <param name="features">The features.</param>
    public static void PatchFeatures(Span<byte> frame, StreamFeatures features) => frame[5] = (byte)features;

    /// <summary>Sets flag bits of an encoded message in place.</summary>
    /// <param name="frame">An encoded message (at least the header).</param>
    /// <param name="flags">The flags to add.</param>
    public static void AddFlags(Span<byte> frame, MessageFlags flags) => frame[4] |= (byte)flags;
}
