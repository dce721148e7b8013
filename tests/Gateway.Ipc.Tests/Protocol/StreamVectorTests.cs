using System.Text;
using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Tests.Protocol;

/// <summary>The stream vectors of docs/protocol.md §8.5–8.11, byte-exact in both directions.</summary>
public class StreamVectorTests
{
    // 8.5
    internal const string PingFeaturesHex = "4744010400030000000000000000002a0000000000000000";
    internal const string PongFeaturesHex = "4744010500030000000000000000002a0000000000000000";

    // 8.6
    internal const string RequestHeadHex =
        "4744" + "01" + "08" + "00" + "01" + "0001" // magic, version, REQUEST_HEAD, flags, features STREAM_REPLY, attempt 1
        + "0102030405060708" + "00001388" + "0000002c"
        + "04" + "504f5354" // POST
        + "0007" + "2f75706c6f6164" // /upload
        + "00" + "0000" // no trace context
        + "0001" + "0c" + "636f6e74656e742d74797065" + "000a" + "746578742f706c61696e";

    // 8.7
    internal const string ResponseHeadHex =
        "4744" + "01" + "07" + "00" + "00" + "0001" + "0102030405060708" + "00000000" + "00000024"
        + "00c8" + "0001" + "0c" + "636f6e74656e742d74797065" + "0011" + "746578742f6576656e742d73747265616d";

    // 8.8, 8.9, 8.10
    internal const string ChunkHex = "47440109000000010102030405060708000000000000000e" + "00000000" + "646174613a2068690a0a";
    internal const string EndHex = "4744010a000000010102030405060708000000000000000400000001";
    internal const string CreditHex = "4744010b000000010102030405060708000000000000000400010000";

    // 8.11
    internal const string StreamErrorHex = "47440103000000010102030405060708000000000000000d000600096469736b20676f6e65";
    internal const string CancelHex = "474401060000000001020304050607080000000000000000";

    private const ulong Cid = 0x0102030405060708;

    [Theory]
    [InlineData(MessageKind.Ping, PingFeaturesHex)]
    [InlineData(MessageKind.Pong, PongFeaturesHex)]
    public void PingPongWithFeatures_RoundTrip(MessageKind kind, string hex)
    {
        using var writer = new FrameWriter();
        writer.WriteControl(kind, 42, 0, StreamFeatures.StreamReply | StreamFeatures.StreamRequest);

        Assert.Equal(hex, Convert.ToHexStringLower(writer.WrittenMemory.Span));
        var header = FrameHeader.ReadDatagram(Convert.FromHexString(hex));
        Assert.Equal(StreamFeatures.StreamReply | StreamFeatures.StreamRequest, header.Features);
        Assert.Equal(kind, header.Kind);
    }

    [Fact]
    public void RequestHead_RoundTrip()
    {
        using var writer = new FrameWriter();
        writer.BeginRequestHead(Cid, 1, 5000, "POST", "/upload");
        writer.SetFeatures(StreamFeatures.StreamReply);
        writer.AddHeader("content-type", "text/plain");
        Assert.Equal(RequestHeadHex, Convert.ToHexStringLower(writer.Complete().Span));

        var bytes = Convert.FromHexString(RequestHeadHex);
        var header = FrameHeader.ReadDatagram(bytes);
        Assert.Equal(new FrameHeader(MessageKind.RequestHead, MessageFlags.None, 1, Cid, 5000, 44) { Features = StreamFeatures.StreamReply }, header);
        var request = RequestView.ReadHead(bytes.AsSpan(ProtocolConstants.HeaderSize));
        Assert.Equal("POST", request.GetMethod());
        Assert.Equal("/upload", request.GetTarget());
        Assert.Equal("text/plain", request.Headers.GetValue("content-type"));
    }

    [Fact]
    public void ResponseHead_RoundTrip()
    {
        using var writer = new FrameWriter();
        writer.BeginResponseHead(Cid, 1, 200);
        writer.AddHeader("content-type", "text/event-stream");
        Assert.Equal(ResponseHeadHex, Convert.ToHexStringLower(writer.Complete().Span));

        var bytes = Convert.FromHexString(ResponseHeadHex);
        Assert.Equal(new FrameHeader(MessageKind.ResponseHead, MessageFlags.None, 1, Cid, 0, 36), FrameHeader.ReadDatagram(bytes));
        var head = ResponseView.ReadHead(bytes.AsSpan(ProtocolConstants.HeaderSize));
        Assert.Equal(200, head.Status);
        Assert.Equal("text/event-stream", head.Headers.GetValue("content-type"));
    }

    [Fact]
    public void Chunk_RoundTrip()
    {
        using var writer = new FrameWriter();
        writer.WriteChunk(Cid, 1, 0, "data: hi\n\n"u8);
        Assert.Equal(ChunkHex, Convert.ToHexStringLower(writer.WrittenMemory.Span));

        var bytes = Convert.FromHexString(ChunkHex);
        Assert.Equal(MessageKind.Chunk, FrameHeader.ReadDatagram(bytes).Kind);
        var data = StreamFrames.ReadChunk(bytes.AsSpan(ProtocolConstants.HeaderSize), out var sequence);
        Assert.Equal(0u, sequence);
        Assert.Equal("data: hi\n\n", Encoding.ASCII.GetString(data));
    }

    [Theory]
    [InlineData(MessageKind.End, 1u, EndHex)]
    [InlineData(MessageKind.Credit, 65536u, CreditHex)]
    public void EndAndCredit_RoundTrip(MessageKind kind, uint value, string hex)
    {
        using var writer = new FrameWriter();
        writer.WriteStreamControl(kind, Cid, 1, value);
        Assert.Equal(hex, Convert.ToHexStringLower(writer.WrittenMemory.Span));

        Span<byte> direct = stackalloc byte[StreamFrames.ControlSize];
        StreamFrames.WriteControl(direct, kind, Cid, 1, value);
        Assert.Equal(hex, Convert.ToHexStringLower(direct));

        var bytes = Convert.FromHexString(hex);
        Assert.Equal(kind, FrameHeader.ReadDatagram(bytes).Kind);
        var payload = bytes.AsSpan(ProtocolConstants.HeaderSize);
        Assert.Equal(value, kind == MessageKind.End ? StreamFrames.ReadEnd(payload) : StreamFrames.ReadCredit(payload));
    }

    [Fact]
    public void MidStreamErrorAndCancel_RoundTrip()
    {
        using var writer = new FrameWriter();
        writer.WriteError(Cid, 1, IpcErrorCode.Internal, "disk gone");
        Assert.Equal(StreamErrorHex, Convert.ToHexStringLower(writer.WrittenMemory.Span));
        writer.WriteControl(MessageKind.Cancel, Cid);
        Assert.Equal(CancelHex, Convert.ToHexStringLower(writer.WrittenMemory.Span));
    }

    [Theory]
    [InlineData("4744010900000001010203040506070800000000000000040000000" + "0")] // CHUNK without data
    [InlineData("4744010a0000000101020304050607080000000000000003000000")] // END with 3 bytes
    [InlineData("4744010b000000010102030405060708000000000000000500000001" + "00")] // CREDIT with 5 bytes
    [InlineData("4744010c000000010102030405060708000000000000000000")] // kind 12
    [InlineData("4744010901000001010203040506070800000000000000050000000000")] // FRAGMENT on a CHUNK
    public void MalformedStreamMessages_AreRefused(string hex)
    {
        Assert.Throws<ProtocolException>(() => FrameHeader.ReadDatagram(Convert.FromHexString(hex)));
    }

    [Fact]
    public void ZeroCredit_And_BodyInHead_AreRefused()
    {
        Assert.Throws<ProtocolException>(() => StreamFrames.ReadCredit(new byte[4]));
        Assert.Throws<ProtocolException>(() => StreamFrames.ReadCredit(Convert.FromHexString("80000000")));
        var headWithBody = Convert.FromHexString(ResponseHeadHex + "41")[ProtocolConstants.HeaderSize..];
        Assert.Throws<ProtocolException>(() => ResponseView.ReadHead(headWithBody));
    }

    [Fact]
    public void SpecDocument_ContainsTheStreamVectors()
    {
        var doc = File.ReadAllText(Path.Combine(VectorTests.RepoRoot(), "docs", "protocol.md"));
        foreach (var hex in new[] { PingFeaturesHex, PongFeaturesHex, RequestHeadHex, ResponseHeadHex, ChunkHex, EndHex, CreditHex, StreamErrorHex, CancelHex })
        {
            Assert.Contains(VectorTests.HexDump(Convert.FromHexString(hex)), doc, StringComparison.Ordinal);
        }
    }
}
