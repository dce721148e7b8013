using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Text;
using Gateway.Ipc.Diagnostics;

namespace Gateway.Diagnostics.Capture;

/// <summary>
/// Writes a capture as pcapng (https://www.ietf.org/archive/id/draft-ietf-opsawg-pcapng-02.html), which Wireshark and
/// tshark open: one section, one interface of link type USER0 (147; the datagram protocol has no link type of its
/// own, tools/wireshark/gateway-dgram.lua dissects it), and one Enhanced Packet Block per datagram — the whole datagram
/// as it was on the wire, its time in microseconds, its direction in <c>epb_flags</c> (outbound = sent to the backend),
/// and the backend and instance in a comment. Little-endian, as the byte-order magic says.
/// </summary>
internal static class PcapngWriter
{
    public const string ContentType = "application/vnd.tcpdump.pcap";

    /// <summary>LINKTYPE_USER0.</summary>
    public const ushort LinkType = 147;

    public static void WriteHeader(PipeWriter writer)
    {
        // Section Header Block: type, length, byte-order magic, version 1.0, section length unknown (-1), no options.
        Span<byte> shb = stackalloc byte[28];
        BinaryPrimitives.WriteUInt32LittleEndian(shb, 0x0A0D0D0A);
        BinaryPrimitives.WriteUInt32LittleEndian(shb[4..], 28);
        BinaryPrimitives.WriteUInt32LittleEndian(shb[8..], 0x1A2B3C4D);
        BinaryPrimitives.WriteUInt16LittleEndian(shb[12..], 1);
        BinaryPrimitives.WriteUInt16LittleEndian(shb[14..], 0);
        BinaryPrimitives.WriteInt64LittleEndian(shb[16..], -1);
        BinaryPrimitives.WriteUInt32LittleEndian(shb[24..], 28);
        writer.Write(shb);

        // Interface Description Block: USER0, no snap length limit, if_name "gateway", if_tsresol 6 (microseconds).
        var name = "gateway"u8;
        var options = Option(2, name.Length) + Option(9, 1) + 4;
        var length = 16 + options + 4;
        var idb = writer.GetSpan(length)[..length];
        idb.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(idb, 1);
        BinaryPrimitives.WriteUInt32LittleEndian(idb[4..], (uint)length);
        BinaryPrimitives.WriteUInt16LittleEndian(idb[8..], LinkType);
        BinaryPrimitives.WriteUInt32LittleEndian(idb[12..], 0);
        var at = 16;
        at = WriteOption(idb, at, 2, name);
        at = WriteOption(idb, at, 9, [6]);
        at += 4; // opt_endofopt
        BinaryPrimitives.WriteUInt32LittleEndian(idb[at..], (uint)length);
        writer.Advance(length);
    }

    public static void WritePacket(PipeWriter writer, CapturedDatagram datagram)
    {
        var data = datagram.Wire ?? [];
        var comment = Encoding.UTF8.GetBytes($"{(datagram.Direction == DatagramDirection.Sent ? "to" : "from")} backend {datagram.Backend} ({datagram.Instance}){(datagram.Route is null ? "" : $", route {datagram.Route}")}");
        var padded = (data.Length + 3) & ~3;
        var options = Option(2, 4) + Option(1, comment.Length) + 4;
        var length = 28 + padded + options + 4;
        var block = writer.GetSpan(length)[..length];
        block.Clear();
        var micros = (ulong)((datagram.Time.UtcTicks - DateTime.UnixEpoch.Ticks) / 10);
        BinaryPrimitives.WriteUInt32LittleEndian(block, 6);
        BinaryPrimitives.WriteUInt32LittleEndian(block[4..], (uint)length);
        BinaryPrimitives.WriteUInt32LittleEndian(block[8..], 0); // interface 0
        BinaryPrimitives.WriteUInt32LittleEndian(block[12..], (uint)(micros >> 32));
        BinaryPrimitives.WriteUInt32LittleEndian(block[16..], (uint)micros);
        BinaryPrimitives.WriteUInt32LittleEndian(block[20..], (uint)data.Length);
        BinaryPrimitives.WriteUInt32LittleEndian(block[24..], (uint)data.Length);
        data.CopyTo(block[28..]);
        var at = 28 + padded;
        Span<byte> flags = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32LittleEndian(flags, datagram.Direction == DatagramDirection.Sent ? 2u : 1u); // outbound : inbound
        at = WriteOption(block, at, 2, flags);
        at = WriteOption(block, at, 1, comment);
        at += 4; // opt_endofopt
        BinaryPrimitives.WriteUInt32LittleEndian(block[at..], (uint)length);
        writer.Advance(length);
    }

    private static int Option(int code, int valueLength) => 4 + ((valueLength + 3) & ~3);

    private static int WriteOption(Span<byte> block, int at, ushort code, ReadOnlySpan<byte> value)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(block[at..], code);
        BinaryPrimitives.WriteUInt16LittleEndian(block[(at + 2)..], (ushort)value.Length);
        value.CopyTo(block[(at + 4)..]);
        return at + Option(code, value.Length);
    }
}
