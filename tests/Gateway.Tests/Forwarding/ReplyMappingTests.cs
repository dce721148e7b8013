using System.Diagnostics.Metrics;
using System.Text;
using System.Text.Json;
using Gateway.Testing;
using Microsoft.AspNetCore.Http;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// Replies the wire protocol allows, or that break it, each become a well-formed HTTP/1.1 response: the backend's
/// status and headers, or a 502 <c>malformed-reply</c> problem; never Kestrel's empty 500 (docs/protocol.md section 4.2).
/// Every response is read from the raw bytes of a real Unix socket and parsed strictly (<see cref="Http11ResponseParser"/>).
/// </summary>
public class ReplyMappingTests
{
    internal static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    internal static Dictionary<string, string?> Settings(string backendPath) => new()
    {
        ["Gateway:Backends:s:Instances:0"] = backendPath,
        ["Gateway:Backends:s:Retry:MaxAttempts"] = "1",
        ["Gateway:Routes:r:Path"] = "/r/{**rest}",
        ["Gateway:Routes:r:Backend"] = "s",
    };

    internal static async Task<Http11Response> SendAsync(GatewayFactory factory, string method, byte[]? body = null)
    {
        var bytes = await RawUnixHttp.ExchangeAsync(factory.SocketPath, RawUnixHttp.Request(method, "/r/x", body), HangGuard);
        return Http11ResponseParser.Parse(bytes, HttpMethods.IsHead(method));
    }

    internal static void AssertMalformedReply(Http11Response response, bool head, string? detailContains = null)
    {
        Assert.Equal(502, response.Status);
        Assert.Equal("application/problem+json", response.Get("Content-Type"));
        if (head)
        {
            return;
        }

        var problem = JsonDocument.Parse(response.Body).RootElement;
        Assert.Equal("urn:gateway:problem:malformed-reply", problem.GetProperty("type").GetString());
        Assert.Equal(502, problem.GetProperty("status").GetInt32());
        if (detailContains is not null)
        {
            Assert.Contains(detailContains, problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(204, "GET")]
    [InlineData(204, "POST")]
    [InlineData(205, "GET")]
    [InlineData(304, "GET")]
    [InlineData(204, "HEAD")]
    public async Task NoContentStatus_WithBody_StatusAndHeadersForwarded_BodyDroppedAndCounted(int status, string method)
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new ScriptedReplyBackend(dir.Socket("b.sock"), _ => ScriptedReplyBackend.Payload(status, [("etag", "\"v1\""), ("x-kind", "empty")], "a body that must not be sent"));
        await using var factory = new GatewayFactory(dir, Settings(backend.SocketPath)).StartKestrel();
        var dropped = new List<(long Value, int Status)>();
        using var listener = ListenBodyDropped(factory, dropped);

        var response = await SendAsync(factory, method, method == "POST" ? "x"u8.ToArray() : null);

        Assert.Equal(status, response.Status);
        Assert.Equal("\"v1\"", response.Get("ETag"));
        Assert.Equal("empty", response.Get("x-kind"));
        Assert.Empty(response.Body);
        Assert.Equal(status == 205 ? "0" : null, response.Get("Content-Length")); // 205: zero-length content, RFC 9110 section 15.3.6
        Assert.Null(response.Get("Transfer-Encoding"));
        listener.RecordObservableInstruments();
        Assert.Equal([(1L, status)], dropped);
    }

    [Fact]
    public async Task Head_ReplyWithTheGetBody_ContentLengthIsItsLength_NoBodySent_NotCountedAsDropped()
    {
        using var dir = new TempSocketDirectory();
        var methods = new List<string>();
        await using var backend = new ScriptedReplyBackend(dir.Socket("b.sock"), method =>
        {
            lock (methods)
            {
                methods.Add(method);
            }

            return ScriptedReplyBackend.Payload(200, [("content-type", "text/plain")], "twelve bytes");
        });
        await using var factory = new GatewayFactory(dir, Settings(backend.SocketPath)).StartKestrel();
        var dropped = new List<(long Value, int Status)>();
        using var listener = ListenBodyDropped(factory, dropped);

        var head = await SendAsync(factory, "HEAD");
        var get = await SendAsync(factory, "GET");

        Assert.Equal(200, head.Status);
        Assert.Equal("12", head.Get("Content-Length"));
        Assert.Equal("text/plain", head.Get("Content-Type"));
        Assert.Empty(head.Body);
        Assert.Equal("twelve bytes", Encoding.ASCII.GetString(get.Body));
        Assert.Equal(["HEAD", "GET"], methods);
        Assert.Empty(dropped);
    }

    public static TheoryData<string, byte[], byte[], string> BadHeaders => new()
    {
        { "non-ASCII byte (UTF-8 é)", "x-name"u8.ToArray(), "caf\u00e9"u8.ToArray(), "byte 0xc3 at offset 3" },
        { "Latin-1 byte", "x-name"u8.ToArray(), [0x61, 0xe9], "byte 0xe9 at offset 1" },
        { "LF (response splitting)", "x-name"u8.ToArray(), "a\nset-cookie: evil=1"u8.ToArray(), "byte 0x0a at offset 1" },
        { "CR", "x-name"u8.ToArray(), "a\rb"u8.ToArray(), "byte 0x0d at offset 1" },
        { "NUL", "x-name"u8.ToArray(), [0x61, 0x00], "byte 0x00 at offset 1" },
        { "DEL", "x-name"u8.ToArray(), [0x7f], "byte 0x7f at offset 0" },
        { "space in the name", "x name"u8.ToArray(), "v"u8.ToArray(), "byte 0x20 at offset 1" },
        { "colon in the name", ":status"u8.ToArray(), "200"u8.ToArray(), "byte 0x3a at offset 0" },
        { "non-ASCII name", [0x78, 0xff], "v"u8.ToArray(), "byte 0xff at offset 1" },
    };

    [Theory]
    [MemberData(nameof(BadHeaders))]
    public async Task HeaderFieldThatHttpCannotCarry_Is502MalformedReply_NamingTheByte_GatewayStaysUp(string why, byte[] name, byte[] value, string detail)
    {
        using var dir = new TempSocketDirectory();
        var good = true;
        await using var backend = new ScriptedReplyBackend(dir.Socket("b.sock"), _ => Volatile.Read(ref good)
            ? ScriptedReplyBackend.Payload(200, [("x-ok", "1")], "fine")
            : ScriptedReplyBackend.Payload(200, [("x-ok"u8.ToArray(), "1"u8.ToArray()), (name, value)], "body"u8.ToArray()));
        await using var factory = new GatewayFactory(dir, Settings(backend.SocketPath)).StartKestrel();

        Volatile.Write(ref good, false);
        var bad = await SendAsync(factory, "GET");
        var badHead = await SendAsync(factory, "HEAD");
        Volatile.Write(ref good, true);
        var after = await SendAsync(factory, "GET");

        Assert.True(bad.Status == 502, $"{why}: {bad.Status}");
        AssertMalformedReply(bad, head: false, detail);
        Assert.Null(bad.Get("x-ok")); // nothing of the rejected reply leaks into the problem response
        Assert.NotNull(bad.Get("X-Correlation-Id"));
        AssertMalformedReply(badHead, head: true);
        Assert.Equal(200, after.Status);
        Assert.Equal("fine", Encoding.ASCII.GetString(after.Body));
    }

    [Fact]
    public async Task HopByHopAndFramingHeadersFromTheBackend_AreDropped_TheGatewayFramesTheBody()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new ScriptedReplyBackend(dir.Socket("b.sock"), _ => ScriptedReplyBackend.Payload(
            200,
            [("connection", "close"), ("keep-alive", "timeout=5"), ("transfer-encoding", "chunked"), ("content-length", "999"), ("te", "trailers"),
             ("trailer", "x-t"), ("upgrade", "h2c"), ("proxy-authenticate", "Basic"), ("x-a", "1"), ("x-a", "2")],
            "hello"));
        await using var factory = new GatewayFactory(dir, Settings(backend.SocketPath)).StartKestrel();

        var response = await SendAsync(factory, "GET");

        Assert.Equal(200, response.Status);
        Assert.Equal("hello", Encoding.ASCII.GetString(response.Body));
        Assert.Equal("5", response.Get("Content-Length"));
        Assert.Equal(["1", "2"], response.GetAll("x-a"));
        foreach (var name in new[] { "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate" })
        {
            Assert.Empty(response.GetAll(name));
        }
    }

    /// <summary>The gateway's <c>gateway.reply.body_dropped</c> measurements (this host's meter only).</summary>
    internal static MeterListener ListenBodyDropped(GatewayFactory factory, List<(long Value, int Status)> into)
    {
        var scope = factory.Services.GetRequiredService<IMeterFactory>();
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Scope == scope && instrument.Name == "gateway.reply.body_dropped")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            var status = 0;
            foreach (var tag in tags)
            {
                if (tag.Key == "http.response.status_code")
                {
                    status = (int)tag.Value!;
                }
            }

            lock (into)
            {
                into.Add((value, status));
            }
        });
        listener.Start();
        return listener;
    }
}
