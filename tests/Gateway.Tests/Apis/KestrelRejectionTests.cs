using System.Text;
using Gateway.Testing;
using Gateway.Tests.Forwarding;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Apis;

/// <summary>
/// Requests Kestrel rejects while it parses them, before any middleware runs: it answers with a bodyless status and
/// closes the connection; there is no hook to give these problem details (docs/api.md, "Errors Kestrel answers
/// itself"). Each is pinned here from raw bytes, with the status Kestrel gives, and the gateway keeps answering.
/// </summary>
public class KestrelRejectionTests
{
    public static TheoryData<string, byte[], int> Rejected()
    {
        var data = new TheoryData<string, byte[], int>
        {
            { "malformed request line", "GET /x HTTP/1.1 extra\r\nHost: g\r\n\r\n"u8.ToArray(), 400 },
            { "no HTTP version", "GET /x\r\nHost: g\r\n\r\n"u8.ToArray(), 400 },
            { "Latin-1 byte in a header value", [.. "GET /x HTTP/1.1\r\nHost: g\r\nX-Name: caf"u8, 0xe9, .. "\r\n\r\n"u8], 400 },
            { "NUL in a header value", [.. "GET /x HTTP/1.1\r\nHost: g\r\nX-Name: a"u8, 0x00, .. "b\r\n\r\n"u8], 400 },
            { "space before the colon", "GET /x HTTP/1.1\r\nHost: g\r\nX-Name : v\r\n\r\n"u8.ToArray(), 400 },
            { "obs-fold", "GET /x HTTP/1.1\r\nHost: g\r\nX-Name: a\r\n b\r\n\r\n"u8.ToArray(), 400 },
            { "no Host", "GET /x HTTP/1.1\r\n\r\n"u8.ToArray(), 400 },
            { "bad Content-Length", "POST /x HTTP/1.1\r\nHost: g\r\nContent-Length: 1x\r\n\r\n"u8.ToArray(), 400 },
            { "HTTP/2.0 in the request line", "GET /x HTTP/2.0\r\nHost: g\r\n\r\n"u8.ToArray(), 505 },
            { "request line over 8 KiB", Encoding.ASCII.GetBytes($"GET /{new string('a', 9000)} HTTP/1.1\r\nHost: g\r\n\r\n"), 414 },
            { "1,000 header fields (Kestrel's backstop: 2 x MaxRequestHeaderCount)", Headers(1000, 10), 431 },
            { "headers over 2 x MaxRequestHeadersTotalSize (64 KiB)", Headers(20, 4000), 431 },
        };
        return data;
    }

    [Theory]
    [MemberData(nameof(Rejected))]
    public async Task KestrelRejectsBeforeTheGateway_BodylessStatus_ConnectionClosed_GatewayStaysUp(string what, byte[] request, int status)
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir).StartKestrel();

        var bytes = await RawUnixHttp.ExchangeAsync(factory.SocketPath, request, ReplyMappingTests.HangGuard);
        var response = Http11ResponseParser.Parse(bytes, headRequest: false);
        var after = Http11ResponseParser.Parse(await RawUnixHttp.ExchangeAsync(factory.SocketPath, RawUnixHttp.Request("GET", "/nothing-here"), ReplyMappingTests.HangGuard), headRequest: false);

        Assert.True(response.Status == status, $"{what}: {response.Status}");
        Assert.Empty(response.Body);
        Assert.Equal("0", response.Get("Content-Length"));
        Assert.Equal("close", response.Get("Connection"));
        Assert.Equal(404, after.Status);
        Assert.Equal("application/problem+json", after.Get("Content-Type"));
    }

    /// <summary>Kestrel decodes request header values as UTF-8: valid UTF-8 passes (and reaches the backend as UTF-8 bytes).</summary>
    [Fact]
    public async Task Utf8InARequestHeaderValue_PassesKestrel()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir).StartKestrel();

        var bytes = await RawUnixHttp.ExchangeAsync(factory.SocketPath, [.. "GET /x HTTP/1.1\r\nHost: g\r\nConnection: close\r\nX-Name: caf\u00e9\r\n\r\n"u8], ReplyMappingTests.HangGuard);
        var response = Http11ResponseParser.Parse(bytes, headRequest: false);

        Assert.Equal(404, response.Status); // the gateway's no-route problem: the request got past Kestrel
        Assert.Equal("application/problem+json", response.Get("Content-Type"));
    }

    private static byte[] Headers(int count, int valueLength)
    {
        var text = new StringBuilder("GET /x HTTP/1.1\r\nHost: g\r\n");
        for (var i = 0; i < count; i++)
        {
            text.Append("X-H").Append(i).Append(": ").Append('v', valueLength).Append("\r\n");
        }

        return Encoding.ASCII.GetBytes(text.Append("\r\n").ToString());
    }
}

/// <summary>A body Kestrel cannot decode is found while the gateway reads it: that one gets problem details.</summary>
public class MalformedRequestBodyTests
{
    [Theory]
    [InlineData("bad chunk size", "POST /r/x HTTP/1.1\r\nHost: g\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n")]
    [InlineData("chunk without CRLF", "POST /r/x HTTP/1.1\r\nHost: g\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcXY0\r\n\r\n")]
    public async Task UndecodableBody_Is400MalformedRequestBody_NothingSentToTheBackend(string what, string request)
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new ScriptedReplyBackend(dir.Socket("b.sock"), _ => ScriptedReplyBackend.Payload(200, [], "x"));
        await using var factory = new GatewayFactory(dir, ReplyMappingTests.Settings(backend.SocketPath)).StartKestrel();

        var bytes = await RawUnixHttp.ExchangeAsync(factory.SocketPath, Encoding.ASCII.GetBytes(request), ReplyMappingTests.HangGuard);
        var response = Http11ResponseParser.Parse(bytes, headRequest: false);

        Assert.True(response.Status == 400, $"{what}: {response.Status}");
        Assert.Equal("application/problem+json", response.Get("Content-Type"));
        Assert.Contains("urn:gateway:problem:malformed-request-body", Encoding.UTF8.GetString(response.Body), StringComparison.Ordinal);
        Assert.Equal(0, backend.Requests);
    }
}
