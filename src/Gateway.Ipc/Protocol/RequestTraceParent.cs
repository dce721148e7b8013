using System.Buffers.Binary;
using System.Text;

namespace Gateway.Ipc.Protocol;

/// <summary>
/// Locates and rewrites, in place, the <c>traceparent</c> field of an encoded REQUEST (docs/protocol.md, 4.1).
/// </summary>
/// <remarks>
/// <para>
/// Layout from the start of the frame: the 24-byte header, <c>method</c> (<c>str8</c>: 1 + m bytes), <c>target</c>
/// (<c>str16</c>: 2 + t bytes), then <c>traceparent</c> (<c>str8</c>): a length byte that is 0 or 55, and the 55 ASCII
/// characters. Because a present traceparent always has exactly 55 bytes, a retry can carry the context of its own
/// attempt span by overwriting those bytes, like <see cref="FrameHeader.PatchAttempt"/> overwrites the attempt: no
/// re-encoding, no change of any length or offset. A frame encoded without a traceparent has no room for one and is
/// left unchanged.
/// </para>
/// </remarks>
public static class RequestTraceParent
{
    /// <summary>
    /// Returns the offset of the 55 traceparent characters in a whole, unfragmented REQUEST frame, or -1 when the
    /// frame has no traceparent (or is not a well-formed REQUEST up to that field).
    /// </summary>
    /// <param name="frame">The encoded frame, header included.</param>
    /// <returns>The offset, or -1.</returns>
    public static int FindOffset(ReadOnlySpan<byte> frame)
    {
        FrameHeader header;
        try
        {
            if (!FrameHeader.TryRead(frame, out header))
            {
                return -1;
            }
        }
        catch (ProtocolException)
        {
            return -1;
        }

        if (header.Kind != MessageKind.Request || header.IsFragment)
        {
            return -1;
        }

        var offset = ProtocolConstants.HeaderSize;
        if (frame.Length < offset + 1)
        {
            return -1;
        }

        offset += 1 + frame[offset];
        if (frame.Length < offset + 2)
        {
            return -1;
        }

        offset += 2 + BinaryPrimitives.ReadUInt16BigEndian(frame[offset..]);
        if (frame.Length < offset + 1 + ProtocolConstants.TraceParentLength || frame[offset] != ProtocolConstants.TraceParentLength)
        {
            return -1;
        }

        return offset + 1;
    }

    /// <summary>Overwrites the traceparent of an encoded REQUEST with <paramref name="traceParent"/>.</summary>
    /// <param name="frame">The encoded frame, header included (e.g. <see cref="FrameWriter.WrittenSpan"/>).</param>
    /// <param name="traceParent">A W3C traceparent of exactly 55 ASCII characters.</param>
    /// <returns><see langword="true"/> if the frame had a traceparent and it was replaced; <see langword="false"/> if the frame has none or <paramref name="traceParent"/> has the wrong length (the frame is unchanged).</returns>
    public static bool TryPatch(Span<byte> frame, ReadOnlySpan<char> traceParent)
    {
        if (traceParent.Length != ProtocolConstants.TraceParentLength || !Ascii.IsValid(traceParent))
        {
            return false;
        }

        var offset = FindOffset(frame);
        if (offset < 0)
        {
            return false;
        }

        return Encoding.ASCII.GetBytes(traceParent, frame.Slice(offset, ProtocolConstants.TraceParentLength)) == ProtocolConstants.TraceParentLength;
    }
}
