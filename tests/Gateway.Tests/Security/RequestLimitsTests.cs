using System.Net;
using System.Net.Sockets;
using System.Text;
using Gateway.Testing;
using Gateway.Tests.Forwarding;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Security;

/// <summary>Header count and size limits answer 431 problem details (not Kestrel's bare 431); the body limit 413.</summary>
public class RequestLimitsTests
{
    [Fact]
    public async Task TooManyHeaders_Returns431ProblemWithLimitAndActual()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await CallerAuthorizationTests.StartOkBackend(dir);
        var settings = ForwardingTests.Route(backend.SocketPath);
        settings["Gateway:Limits:MaxRequestHeaderCount"] = "10";
        await using var factory = new GatewayFactory(dir, settings).StartKestrel();
        using var client = factory.CreateGatewayClient();
        using var message = new HttpRequestMessage(HttpMethod.Get, "/api/x");
        for (var i = 0; i < 20; i++)
        {
            message.Headers.Add($"X-H{i}", "v");
        }

        using var response = await client.SendAsync(message);

        Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, response.StatusCode);
        var problem = await CallerAuthorizationTests.ProblemAsync(response);
        Assert.Equal("urn:gateway:problem:too-many-headers", problem.GetProperty("type").GetString());
        Assert.Equal(10, problem.GetProperty("limit").GetInt32());
        Assert.True(problem.GetProperty("actual").GetInt32() >= 21); // ours + Host
        Assert.Contains("Gateway:Limits:MaxRequestHeaderCount", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task HeadersTooLarge_Returns431ProblemWithLimitAndActual()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await CallerAuthorizationTests.StartOkBackend(dir);
        var settings = ForwardingTests.Route(backend.SocketPath);
        settings["Gateway:Limits:MaxRequestHeadersTotalSize"] = "2048";
        await using var factory = new GatewayFactory(dir, settings).StartKestrel();
        using var client = factory.CreateGatewayClient();
        using var small = await client.GetAsync("/api/x");
        using var message = new HttpRequestMessage(HttpMethod.Get, "/api/x");
        message.Headers.Add("X-Big", new string('a', 3000));

        using var response = await client.SendAsync(message);

        Assert.Equal(HttpStatusCode.OK, small.StatusCode);
        Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, response.StatusCode);
        var problem = await CallerAuthorizationTests.ProblemAsync(response);
        Assert.Equal("urn:gateway:problem:headers-too-large", problem.GetProperty("type").GetString());
        Assert.Equal(2048, problem.GetProperty("limit").GetInt64());
        Assert.True(problem.GetProperty("actual").GetInt64() > 3000);
    }

    [Fact]
    public async Task DefaultLimit_OverKestrelsOwnDefault_StillGetsProblemDetails()
    {
        // 150 fields: over the gateway's default of 100 and over Kestrel's default of 100, which the gateway raised
        // to a backstop of 200 so that its own 431 (with a body) answers.
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir).StartKestrel();
        using var client = factory.CreateGatewayClient();
        using var message = new HttpRequestMessage(HttpMethod.Get, "/healthz");
        for (var i = 0; i < 150; i++)
        {
            message.Headers.Add($"X-H{i}", "v");
        }

        using var response = await client.SendAsync(message);

        Assert.Equal(HttpStatusCode.RequestHeaderFieldsTooLarge, response.StatusCode);
        Assert.Equal(100, (await CallerAuthorizationTests.ProblemAsync(response)).GetProperty("limit").GetInt32());
    }

    [Fact]
    public async Task BeyondTheBackstop_KestrelRejectsWithoutABody()
    {
        using var dir = new TempSocketDirectory();
        var settings = new Dictionary<string, string?> { ["Gateway:Limits:MaxRequestHeaderCount"] = "60" };
        await using var factory = new GatewayFactory(dir, settings).StartKestrel();

        // The backstop is max(Kestrel's default 100, 2 × 60) = 120 fields.
        var ours = await RawResponseAsync(factory.SocketPath, 110);
        var kestrels = await RawResponseAsync(factory.SocketPath, 130);

        Assert.StartsWith("HTTP/1.1 431 ", ours, StringComparison.Ordinal);
        Assert.Contains("application/problem+json", ours, StringComparison.Ordinal);
        Assert.StartsWith("HTTP/1.1 431 ", kestrels, StringComparison.Ordinal);
        Assert.DoesNotContain("problem+json", kestrels, StringComparison.Ordinal);
    }

    [Fact]
    public async Task BodyOverTheRouteLimit_Returns413ProblemStatingTheLimit()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await CallerAuthorizationTests.StartOkBackend(dir);
        await using var factory = new GatewayFactory(dir, ForwardingTests.Route(backend.SocketPath, maxBody: "100")).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var response = await client.PostAsync("/api/x", new ByteArrayContent(new byte[101]));

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        var problem = await CallerAuthorizationTests.ProblemAsync(response);
        Assert.Equal("urn:gateway:problem:body-too-large", problem.GetProperty("type").GetString());
        Assert.Contains("at most 100 bytes", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    /// <summary>Sends a GET with <paramref name="headers"/> header fields by hand; returns the whole response.</summary>
    private static async Task<string> RawResponseAsync(string socketPath, int headers)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath));
        var request = new StringBuilder("GET /healthz HTTP/1.1\r\nHost: localhost\r\n");
        for (var i = 1; i < headers; i++)
        {
            request.Append("X-H").Append(i).Append(": v\r\n");
        }

        request.Append("Connection: close\r\n\r\n");
        await socket.SendAsync(Encoding.ASCII.GetBytes(request.ToString()));
        using var stream = new NetworkStream(socket);
        using var reader = new StreamReader(stream, Encoding.ASCII);
        return await reader.ReadToEndAsync();
    }
}
