using System.Buffers.Binary;

namespace Gateway.Ipc.Protocol;

/// <summary>Encoding and decoding of the stream messages CHUNK, END and CREDIT (docs/protocol.md §4.5).</summary>
public static class StreamFrames
{
    /// <summary>The size of an encoded END or CREDIT message.</summary>
    public const int ControlSize = ProtocolConstants.HeaderSize + 4;

    /// <summary>Encodes a whole END or CREDIT message into <paramref name="destination"/> (at least <see cref="ControlSize"/> bytes).</summary>
    /// <param name="destination">The buffer.</param>
    /// <param name="kind"><see cref="MessageKind.End"/> or <see cref="MessageKind.Credit"/>.</param>
    /// <param name="correlationId">The stream's correlation ID.</param>
    /// <param name="attempt">The request's attempt.</param>
    /// <param name="value">END: the chunk count; CREDIT: the bytes granted.</param>
    /// <returns>The number of bytes written (<see cref="ControlSize"/>).</returns>
    public static int WriteControl(Span<byte> destination, MessageKind kind, ulong correlationId, ushort attempt, uint value)
    {
        if (correlationId == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(correlationId), "The correlation ID must not be 0.");
        }

        new FrameHeader(kind, MessageFlags.None, attempt, correlationId, 0, 4).Write(destination);
        WriteValue(kind, value, destination[ProtocolConstants.HeaderSize..]);
        return ControlSize;
    }

    /// <summary>Reads a CHUNK payload.</summary>
    /// <param name="payload">The payload (after the header).</param>
    /// <param name="sequence">The chunk's sequence number.</param>
    /// <returns>The chunk's data.</returns>
    /// <exception cref="ProtocolException">The payload carries no data.</exception>
    public static ReadOnlySpan<byte> ReadChunk(ReadOnlySpan<byte> payload, out uint sequence)
    {
        if (payload.Length <= 4)
        {
            ProtocolException.Throw(ProtocolViolation.BadLength, "A CHUNK carries no data.");
        }

        sequence = BinaryPrimitives.ReadUInt32BigEndian(payload);
        return payload[4..];
    }

    /// <summary>Reads an END payload: the number of chunks of the stream.</summary>
    /// <param name="payload">The payload.</param>
    /// <returns>The chunk count.</returns>
    /// <exception cref="ProtocolException">The payload is not 4 bytes.</exception>
    public static uint ReadEnd(ReadOnlySpan<byte> payload)
    {
        if (payload.Length != 4)
        {
            ProtocolException.Throw(ProtocolViolation.BadLength, $"An END payload has 4 bytes, not {payload.Length}.");
        }

        return BinaryPrimitives.ReadUInt32BigEndian(payload);
    }

    /// <summary>Reads a CREDIT payload: the bytes granted (1 to <see cref="ProtocolConstants.MaxCredit"/>).</summary>
    /// <param name="payload">The payload.</param>
    /// <returns>The bytes granted.</returns>
    /// <exception cref="ProtocolException">The payload is not 4 bytes, or the credit is 0 or too large.</exception>
    public static uint ReadCredit(ReadOnlySpan<byte> payload)
    {
        if (payload.Length != 4)
        {
            ProtocolException.Throw(ProtocolViolation.BadLength, $"A CREDIT payload has 4 bytes, not {payload.Length}.");
        }

        var credit = BinaryPrimitives.ReadUInt32BigEndian(payload);
        if (credit is 0 or > ProtocolConstants.MaxCredit)
        {
            ProtocolException.Throw(ProtocolViolation.BadField, $"A CREDIT grants 1 to {ProtocolConstants.MaxCredit} bytes, not {credit}.");
        }

        return credit;
    }

    /// <summary>Where a CHUNK's data starts: after the header and the sequence number.</summary>
    internal const int ChunkDataOffset = ProtocolConstants.HeaderSize + 4;

    /// <summary>
    /// Writes a CHUNK's header and sequence number into the start of <paramref name="destination"/>, for data of
    /// <paramref name="dataLength"/> bytes that the caller puts (or has put) at <see cref="ChunkDataOffset"/>: a sender
    /// that reads or copies its data straight into the datagram's buffer.
    /// </summary>
    internal static void WriteChunkPrefix(Span<byte> destination, ulong correlationId, ushort attempt, uint sequence, int dataLength)
    {
        new FrameHeader(MessageKind.Chunk, MessageFlags.None, attempt, correlationId, 0, (uint)(4 + dataLength)).Write(destination);
        BinaryPrimitives.WriteUInt32BigEndian(destination[ProtocolConstants.HeaderSize..], sequence);
    }

    internal static void WriteValue(MessageKind kind, uint value, Span<byte> destination)
    {
        if (kind is not (MessageKind.End or MessageKind.Credit))
        {
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Only END and CREDIT carry a single u32.");
        }

        if (kind == MessageKind.Credit && value is 0 or > ProtocolConstants.MaxCredit)
        {
            throw new ArgumentOutOfRangeException(nameof(value), value, $"A credit is 1 to {ProtocolConstants.MaxCredit} bytes.");
        }

        BinaryPrimitives.WriteUInt32BigEndian(destination, value);
    }
}
