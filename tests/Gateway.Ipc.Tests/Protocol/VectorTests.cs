using System.Text;
using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Tests.Protocol;

/// <summary>The worked examples of docs/protocol.md section 8, byte-exact in both directions.</summary>
public class VectorTests
{
    // docs/protocol.md 8.1
    internal const string RequestHex =
        "4744" + "01" + "01" + "00" + "00" + "0001" // magic, version, REQUEST, flags, reserved, attempt 1
        + "0102030405060708" // correlation_id
        + "00001388" // budget_ms 5000
        + "00000064" // payload_length 100
        + "03" + "474554" // method GET
        + "000f" + "2f6563686f2f68656c6c6f3f783d31" // target /echo/hello?x=1
        + "37" + "30302d30616637363531393136636434336464383434386562323131633830333139632d623761643662373136393230333333312d3031" // traceparent
        + "0000" // tracestate (empty)
        + "0001" // header_count 1
        + "06" + "616363657074" + "000a" + "746578742f706c61696e"; // accept: text/plain

    // docs/protocol.md 8.2
    internal const string ResponseHex =
        "4744" + "01" + "02" + "00" + "00" + "0001"
        + "0102030405060708"
        + "00000000" // budget_ms
        + "00000022" // payload_length 34
        + "00c8" // status 200
        + "0001" // header_count
        + "0c" + "636f6e74656e742d74797065" + "000a" + "746578742f706c61696e" // content-type: text/plain
        + "68656c6c6f"; // hello

    // docs/protocol.md 8.3 and 8.4
    internal const string ErrorHex = "4744010300000001010203040506070800000000000000080003000462757379";
    internal const string PingHex = "4744010400000000000000000000002a0000000000000000";
    internal const string PongHex = "4744010500000000000000000000002a0000000000000000";

    internal const string TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    [Fact]
    public void Request_Encode_MatchesSpecBytes()
    {
        using var writer = new FrameWriter();
        writer.BeginRequest(0x0102030405060708, 1, 5000, "GET", "/echo/hello?x=1", TraceParent);
        writer.AddHeader("Accept", "text/plain");
        var frame = writer.Complete();

        Assert.Equal(RequestHex, Convert.ToHexStringLower(frame.Span));
    }

    [Fact]
    public void Request_Decode_GivesSpecValues()
    {
        var bytes = Convert.FromHexString(RequestHex);

        var header = FrameHeader.ReadDatagram(bytes);
        var request = RequestView.Read(bytes.AsSpan(ProtocolConstants.HeaderSize));

        Assert.Equal(new FrameHeader(MessageKind.Request, MessageFlags.None, 1, 0x0102030405060708, 5000, 100), header);
        Assert.Equal("GET", request.GetMethod());
        Assert.Equal("/echo/hello?x=1", request.GetTarget());
        Assert.Equal(TraceParent, Encoding.ASCII.GetString(request.TraceParent));
        Assert.True(request.TraceState.IsEmpty);
        Assert.Equal(1, request.Headers.Count);
        Assert.Equal("text/plain", request.Headers.GetValue("accept"));
        Assert.True(request.Body.IsEmpty);
    }

    [Fact]
    public void Response_Encode_MatchesSpecBytes()
    {
        using var writer = new FrameWriter();
        writer.BeginResponse(0x0102030405060708, 1, 200);
        writer.AddHeader("Content-Type", "text/plain");
        writer.WriteBody("hello"u8);
        var frame = writer.Complete();

        Assert.Equal(ResponseHex, Convert.ToHexStringLower(frame.Span));
    }

    [Fact]
    public void Response_Decode_GivesSpecValues()
    {
        var bytes = Convert.FromHexString(ResponseHex);

        var header = FrameHeader.ReadDatagram(bytes);
        var response = ResponseView.Read(bytes.AsSpan(ProtocolConstants.HeaderSize));

        Assert.Equal(new FrameHeader(MessageKind.Response, MessageFlags.None, 1, 0x0102030405060708, 0, 34), header);
        Assert.Equal(200, response.Status);
        Assert.Equal("text/plain", response.Headers.GetValue("content-type"));
        Assert.Equal("hello", Encoding.UTF8.GetString(response.Body));
    }

    [Fact]
    public void Error_RoundTrip_MatchesSpecBytes()
    {
        using var writer = new FrameWriter();
        writer.WriteError(0x0102030405060708, 1, IpcErrorCode.Overloaded, "busy");

        Assert.Equal(ErrorHex, Convert.ToHexStringLower(writer.WrittenMemory.Span));
        var error = ErrorView.Read(Convert.FromHexString(ErrorHex).AsSpan(ProtocolConstants.HeaderSize));
        Assert.Equal(IpcErrorCode.Overloaded, error.Code);
        Assert.Equal("busy", error.GetMessage());
    }

    [Theory]
    [InlineData(MessageKind.Ping, PingHex)]
    [InlineData(MessageKind.Pong, PongHex)]
    public void Control_RoundTrip_MatchesSpecBytes(MessageKind kind, string hex)
    {
        using var writer = new FrameWriter();
        writer.WriteControl(kind, 42);

        Assert.Equal(hex, Convert.ToHexStringLower(writer.WrittenMemory.Span));
        Assert.Equal(new FrameHeader(kind, MessageFlags.None, 0, 42, 0, 0), FrameHeader.ReadDatagram(Convert.FromHexString(hex)));
    }

    [Fact]
    public void SpecDocument_ContainsTheVectors()
    {
        // The hex dumps in docs/protocol.md are the same bytes as these constants.
        var doc = File.ReadAllText(Path.Combine(RepoRoot(), "docs", "protocol.md"));
        foreach (var hex in new[] { RequestHex, ResponseHex, ErrorHex, PingHex, PongHex })
        {
            Assert.Contains(HexDump(Convert.FromHexString(hex)), doc, StringComparison.Ordinal);
        }
    }

    internal static string RepoRoot()
    {
        var dir = new DirectoryInfo(AppContext.BaseDirectory);
        while (dir is not null && !File.Exists(Path.Combine(dir.FullName, "Gateway.sln")))
        {
            dir = dir.Parent;
        }

        return dir?.FullName ?? throw new InvalidOperationException("Gateway.sln not found above the test directory.");
    }

    internal static string HexDump(byte[] bytes)
    {
        var sb = new StringBuilder();
        for (var i = 0; i < bytes.Length; i += 16)
        {
            var chunk = bytes.AsSpan(i, Math.Min(16, bytes.Length - i));
            var hex = string.Join(' ', chunk.ToArray().Select(b => b.ToString("x2", System.Globalization.CultureInfo.InvariantCulture)));
            var ascii = new string(chunk.ToArray().Select(b => b is >= 32 and < 127 ? (char)b : '.').ToArray());
            if (i > 0)
            {
                sb.Append('\n');
            }

            sb.Append(System.Globalization.CultureInfo.InvariantCulture, $"{i:x8}  {hex,-47}  |{ascii}|");
        }

        return sb.ToString();
    }
}
