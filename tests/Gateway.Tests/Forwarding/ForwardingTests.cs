using System.Net;
using System.Net.Http.Json;
using System.Text.Json;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Protocol;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Forwarding;

/// <summary>HTTP → envelope datagram → backend → HTTP, over the in-memory TestServer and real datagram sockets.</summary>
public class ForwardingTests
{
    internal static Dictionary<string, string?> Route(string backendSocket, string path = "/api/{**rest}", string? maxBody = null, params string[] methods)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Gateway:Backends:b:Instances:0"] = backendSocket,
            ["Gateway:Routes:api:Path"] = path,
            ["Gateway:Routes:api:Backend"] = "b",
        };
        if (maxBody is not null)
        {
            settings["Gateway:Routes:api:MaxBodySize"] = maxBody;
        }

        for (var i = 0; i < methods.Length; i++)
        {
            settings[$"Gateway:Routes:api:Methods:{i}"] = methods[i];
        }

        return settings;
    }

    [Theory]
    [InlineData("GET")]
    [InlineData("POST")]
    [InlineData("PUT")]
    [InlineData("DELETE")]
    [InlineData("PATCH")]
    public async Task Request_MethodTargetAndBody_ReachTheBackendUnchanged(string method)
    {
        using var dir = new TempSocketDirectory();
        BackendRequest? seen = null;
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) =>
        {
            seen = request;
            return ValueTask.FromResult(BackendResponse.Text("done"));
        });
        await using var factory = new GatewayFactory(dir, Route(backend.SocketPath));
        using var client = factory.CreateClient();
        using var message = new HttpRequestMessage(new HttpMethod(method), "/api/items/42?filter=a%20b&x=1");
        if (method != "GET")
        {
            message.Content = new ByteArrayContent([0, 1, 2, 255]);
        }

        using var response = await client.SendAsync(message);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("done", await response.Content.ReadAsStringAsync());
        Assert.NotNull(seen);
        Assert.Equal(method, seen.Method);
        Assert.Equal("/api/items/42?filter=a%20b&x=1", seen.Target);
        Assert.Equal(method == "GET" ? [] : new byte[] { 0, 1, 2, 255 }, seen.Body.ToArray());
        Assert.Equal(1, seen.Attempt);
        Assert.NotNull(seen.Deadline);
    }

    [Fact]
    public async Task Headers_CrossBothWays_HopByHopDropped_ForwardedAndIdsAdded()
    {
        using var dir = new TempSocketDirectory();
        BackendRequest? seen = null;
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) =>
        {
            seen = request;
            return ValueTask.FromResult(new BackendResponse(201, [new("x-backend", "yes"), new("set-cookie", "a=1"), new("set-cookie", "b=2"), new("connection", "close"), new("content-type", "application/json")], "{}"u8.ToArray()));
        });
        await using var factory = new GatewayFactory(dir, Route(backend.SocketPath));
        using var client = factory.CreateClient();
        using var message = new HttpRequestMessage(HttpMethod.Get, "/api/h");
        message.Headers.Add("X-Custom", ["one", "two"]);
        message.Headers.Add("X-Request-Id", "my-request-1");
        message.Headers.Add("Keep-Alive", "timeout=5");
        message.Headers.TryAddWithoutValidation("Upgrade", "websocket");

        using var response = await client.SendAsync(message);

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.Equal(["yes"], response.Headers.GetValues("x-backend"));
        Assert.Equal(["a=1", "b=2"], response.Headers.GetValues("set-cookie"));
        Assert.False(response.Headers.ConnectionClose ?? false);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal(["my-request-1"], response.Headers.GetValues("X-Request-Id"));
        var correlationId = Assert.Single(response.Headers.GetValues("X-Correlation-Id"));

        Assert.NotNull(seen);
        Assert.Equal(["one", "two"], seen.Headers.Where(h => h.Key == "x-custom").Select(h => h.Value));
        Assert.Equal("my-request-1", seen.GetHeader("x-request-id"));
        Assert.Equal("http", seen.GetHeader("x-forwarded-proto"));
        Assert.Equal("localhost", seen.GetHeader("x-forwarded-host"));
        Assert.Null(seen.GetHeader("keep-alive"));
        Assert.Null(seen.GetHeader("upgrade"));
        Assert.Equal(correlationId, seen.CorrelationId.ToString("x16", System.Globalization.CultureInfo.InvariantCulture));
    }

    [Fact]
    public async Task InvalidIncomingRequestId_IsReplacedByTheGatewaysOwn()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) => ValueTask.FromResult(BackendResponse.Text(request.GetHeader("x-request-id") ?? "none")));
        await using var factory = new GatewayFactory(dir, Route(backend.SocketPath));
        using var client = factory.CreateClient();
        using var message = new HttpRequestMessage(HttpMethod.Get, "/api/x");
        message.Headers.TryAddWithoutValidation("X-Request-Id", "bad id with spaces");

        using var response = await client.SendAsync(message);

        var id = Assert.Single(response.Headers.GetValues("X-Request-Id"));
        Assert.NotEqual("bad id with spaces", id);
        Assert.Equal(id, await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task HeadRequest_GetsHeadersWithoutBody()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("twelve bytes")));
        await using var factory = new GatewayFactory(dir, Route(backend.SocketPath));
        using var client = factory.CreateClient();

        using var response = await client.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/api/x"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(12, response.Content.Headers.ContentLength);
        Assert.Empty(await response.Content.ReadAsByteArrayAsync());
    }

    [Fact]
    public async Task NoRoute_Is404ProblemDetails()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, Route(dir.Socket("b.sock")));
        using var client = factory.CreateClient();

        using var response = await client.GetAsync("/elsewhere");

        var problem = await ReadProblemAsync(response, HttpStatusCode.NotFound, "no-route");
        Assert.Equal("No route matches GET /elsewhere.", problem.GetProperty("detail").GetString());
        Assert.True(problem.TryGetProperty("requestId", out _));
    }

    [Fact]
    public async Task WrongMethod_Is405WithAllowAndProblemDetails()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, Route(dir.Socket("b.sock"), "/api/{id}", null, "GET", "PUT"));
        using var client = factory.CreateClient();

        using var response = await client.PostAsync("/api/7", new StringContent("x"));

        var problem = await ReadProblemAsync(response, HttpStatusCode.MethodNotAllowed, "method-not-allowed");
        Assert.Equal(["GET", "PUT"], response.Content.Headers.Allow.Order());
        Assert.Contains("does not allow POST", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task BodyOverLimit_WithContentLength_Is413StatingTheLimit()
    {
        using var dir = new TempSocketDirectory();
        var executed = 0;
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => { Interlocked.Increment(ref executed); return ValueTask.FromResult(BackendResponse.Text("no")); });
        await using var factory = new GatewayFactory(dir, Route(backend.SocketPath, maxBody: "1000"));
        using var client = factory.CreateClient();

        using var response = await client.PostAsync("/api/x", new ByteArrayContent(new byte[1001]));

        var problem = await ReadProblemAsync(response, HttpStatusCode.RequestEntityTooLarge, "body-too-large");
        Assert.Equal("The body has 1001 bytes; route 'api' accepts at most 1000 bytes.", problem.GetProperty("detail").GetString());
        Assert.Equal(0, executed);
    }

    [Fact]
    public async Task BodyOverLimit_Chunked_Is413()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("no")));
        await using var factory = new GatewayFactory(dir, Route(backend.SocketPath, maxBody: "1000"));
        using var client = factory.CreateClient();
        using var content = new StreamContent(new MemoryStream(new byte[5000]));
        using var message = new HttpRequestMessage(HttpMethod.Post, "/api/x") { Content = content };
        message.Headers.TransferEncodingChunked = true;

        using var response = await client.SendAsync(message);

        await ReadProblemAsync(response, HttpStatusCode.RequestEntityTooLarge, "body-too-large");
    }

    [Fact]
    public async Task ChunkedBodyWithinLimit_IsForwardedWhole()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) => ValueTask.FromResult(BackendResponse.Bytes(request.Body, "application/octet-stream")));
        await using var factory = new GatewayFactory(dir, Route(backend.SocketPath));
        using var client = factory.CreateClient();
        var body = new byte[300_000];
        new Random(7).NextBytes(body);
        using var message = new HttpRequestMessage(HttpMethod.Post, "/api/x") { Content = new StreamContent(new MemoryStream(body)) };
        message.Headers.TransferEncodingChunked = true;

        using var response = await client.SendAsync(message);

        Assert.Equal(body, await response.Content.ReadAsByteArrayAsync());
    }

    [Theory]
    [InlineData(IpcErrorCode.Internal, HttpStatusCode.BadGateway, "backend-error")]
    [InlineData(IpcErrorCode.Malformed, HttpStatusCode.BadGateway, "backend-error")]
    [InlineData(IpcErrorCode.NotFound, HttpStatusCode.BadGateway, "backend-not-found")]
    [InlineData(IpcErrorCode.Overloaded, HttpStatusCode.ServiceUnavailable, "backend-overloaded")]
    [InlineData(IpcErrorCode.TooLarge, HttpStatusCode.RequestEntityTooLarge, "backend-too-large")]
    [InlineData(IpcErrorCode.DeadlineExceeded, HttpStatusCode.GatewayTimeout, "backend-deadline-exceeded")]
    public async Task BackendErrorReply_MapsToItsStatus(IpcErrorCode code, HttpStatusCode status, string type)
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Error(code, "because of reasons")));
        await using var factory = new GatewayFactory(dir, Route(backend.SocketPath));
        using var client = factory.CreateClient();

        using var response = await client.GetAsync("/api/x");

        var problem = await ReadProblemAsync(response, status, type);
        Assert.Contains("because of reasons", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.True(problem.TryGetProperty("correlationId", out _));
        Assert.Equal(status == HttpStatusCode.ServiceUnavailable, response.Headers.RetryAfter is not null);
    }

    [Fact]
    public async Task HandlerThrows_Is502()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => throw new InvalidOperationException("boom"));
        await using var factory = new GatewayFactory(dir, Route(backend.SocketPath));
        using var client = factory.CreateClient();

        using var response = await client.GetAsync("/api/x");

        await ReadProblemAsync(response, HttpStatusCode.BadGateway, "backend-error");
    }

    [Fact]
    public async Task BackendAbsent_Is503WithRetryAfter()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, Route(dir.Socket("nobody.sock")));
        using var client = factory.CreateClient();

        using var response = await client.GetAsync("/api/x");

        var problem = await ReadProblemAsync(response, HttpStatusCode.ServiceUnavailable, "backend-absent");
        Assert.Contains(dir.Socket("nobody.sock"), problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(TimeSpan.FromSeconds(1), response.Headers.RetryAfter?.Delta);
    }

    [Fact]
    public async Task ThousandConcurrentRequests_EachGetsItsOwnReply()
    {
        using var dir = new TempSocketDirectory();
        // This test is about correlation under concurrency, not overload detection: on a CI machine whose two
        // cores are shared with builds, this whole process can be starved for more than the default 1 s
        // no-progress limits, so both sides get generous ones.
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) => ValueTask.FromResult(BackendResponse.Bytes(request.Body, "text/plain")), o => o.ReplySendTimeout = TimeSpan.FromSeconds(60));
        var settings = Route(backend.SocketPath);
        settings["Gateway:Backends:b:SendTimeout"] = "00:01:00";
        settings["Gateway:Backends:b:Timeout"] = "00:02:00";
        await using var factory = new GatewayFactory(dir, settings);
        using var client = factory.CreateClient();

        var results = await Task.WhenAll(Enumerable.Range(0, 1000).Select(async i =>
        {
            using var response = await client.PostAsync($"/api/{i}", new StringContent($"body {i}"));
            return (i, await response.Content.ReadAsStringAsync());
        }));

        Assert.All(results, r => Assert.Equal($"body {r.i}", r.Item2));
    }

    internal static async Task<JsonElement> ReadProblemAsync(HttpResponseMessage response, HttpStatusCode status, string type)
    {
        Assert.Equal(status, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        var problem = await response.Content.ReadFromJsonAsync<JsonElement>();
        Assert.Equal("urn:gateway:problem:" + type, problem.GetProperty("type").GetString());
        Assert.Equal((int)status, problem.GetProperty("status").GetInt32());
        return problem;
    }
}
