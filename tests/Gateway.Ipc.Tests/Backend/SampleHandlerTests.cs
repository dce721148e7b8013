using System.Text;
using System.Text.Json;
using EchoBackend;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Protocol;
using Gateway.Testing;
using KeyValueBackend;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Ipc.Tests.Backend;

/// <summary>The sample handlers: EchoHandler per ECHO.md, KeyValueHandler's semantics.</summary>
public sealed class SampleHandlerTests
{
    private readonly EchoHandler _echo = new(TimeProvider.System);
    private readonly KeyValueHandler _kv = new();

    [Fact]
    public async Task Echo_NonEmptyBody_IsEchoedWithItsContentType()
    {
        var response = await _echo.HandleAsync(new BackendRequest("POST", "/any/where", [new("content-type", "application/json")], "{\"a\":1}"u8.ToArray()), default);

        Assert.Equal(200, response.Status);
        Assert.Equal("{\"a\":1}"u8.ToArray(), response.Body.ToArray());
        Assert.Equal([new("content-type", "application/json")], response.Headers);
    }

    [Fact]
    public async Task Echo_NonEmptyBodyWithoutContentType_IsOctetStream()
    {
        var response = await _echo.HandleAsync(new BackendRequest("PUT", "/", body: new byte[] { 0, 255, 1 }), default);

        Assert.Equal(new byte[] { 0, 255, 1 }, response.Body.ToArray());
        Assert.Equal("application/octet-stream", Header(response, "content-type"));
    }

    [Fact]
    public async Task Echo_EmptyBody_DescribesMethodAndTarget()
    {
        var response = await _echo.HandleAsync(new BackendRequest("GET", "/echo/hello?x=1"), default);

        Assert.Equal(200, response.Status);
        Assert.Equal("GET /echo/hello?x=1\n", Encoding.UTF8.GetString(response.Body.Span));
        Assert.Equal("text/plain; charset=utf-8", Header(response, "content-type"));
    }

    [Theory]
    [InlineData("404", 404)]
    [InlineData("200", 200)]
    [InlineData("599", 599)]
    [InlineData("600", 200)]
    [InlineData("199", 200)]
    [InlineData("abc", 200)]
    public async Task Echo_StatusHeader_SetsStatusWithin200To599(string value, int expected)
    {
        var response = await _echo.HandleAsync(new BackendRequest("GET", "/", [new("x-echo-status", value)]), default);

        Assert.Equal(expected, response.Status);
    }

    [Fact]
    public async Task Echo_DelayHeader_WaitsOnTheClock()
    {
        var time = new FakeTimeProvider();
        var echo = new EchoHandler(time);

        var pending = echo.HandleAsync(new BackendRequest("GET", "/d", [new("x-echo-delay-ms", "1500")]), default).AsTask();
        time.Advance(TimeSpan.FromMilliseconds(1499));
        Assert.False(pending.IsCompleted);
        time.Advance(TimeSpan.FromMilliseconds(1));
        var response = await pending.WaitAsync(TestClient.ReceiveTimeout);

        Assert.Equal("GET /d\n", Encoding.UTF8.GetString(response.Body.Span));
    }

    [Fact]
    public async Task Echo_Delay_HonoursCancellation()
    {
        using var cts = new CancellationTokenSource();
        var pending = _echo.HandleAsync(new BackendRequest("GET", "/", [new("x-echo-delay-ms", "60000")]), cts.Token).AsTask();

        await cts.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending);
    }

    [Fact]
    public async Task Echo_ServedOverASocket_AnswersPerEchoMd()
    {
        using var dir = new TempSocketDirectory();
        await using var server = new DatagramBackendServer(new DatagramBackendOptions { SocketPath = dir.Socket("echo.sock") }, _echo.HandleAsync);
        await server.StartAsync();
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(1, method: "GET", target: "/echo/hello?x=1", headers: [("x-echo-status", "203")]);
        var reply = await client.ReceiveAsync();

        Assert.Equal(203, reply.Status);
        Assert.Equal("GET /echo/hello?x=1\n", reply.BodyText);
        Assert.Equal("text/plain; charset=utf-8", reply.GetHeader("content-type"));
    }

    [Fact]
    public async Task Kv_PutGetDelete()
    {
        Assert.Equal(404, (await Kv("GET", "/kv/a")).Status);

        var put = await Kv("PUT", "/kv/a", "hello", "text/plain");
        var get = await Kv("GET", "/kv/a");
        var delete = await Kv("DELETE", "/kv/a");
        var deleteAgain = await Kv("DELETE", "/kv/a");
        var getAgain = await Kv("GET", "/kv/a");

        Assert.Equal(204, put.Status);
        Assert.Equal(200, get.Status);
        Assert.Equal("hello", Encoding.UTF8.GetString(get.Body.Span));
        Assert.Equal("text/plain", Header(get, "content-type"));
        Assert.Equal(204, delete.Status);
        Assert.Equal(404, deleteAgain.Status);
        Assert.Equal(404, getAgain.Status);
    }

    [Fact]
    public async Task Kv_CounterIncrementsAndReads()
    {
        Assert.Equal("0", Text(await Kv("GET", "/counter/c")));
        Assert.Equal("1", Text(await Kv("POST", "/counter/c")));
        Assert.Equal("2", Text(await Kv("POST", "/counter/c")));
        Assert.Equal("1", Text(await Kv("POST", "/counter/other")));
        Assert.Equal("2", Text(await Kv("GET", "/counter/c")));
    }

    [Fact]
    public async Task Kv_Stats_CountsExecutionsPerRoute()
    {
        await Kv("PUT", "/kv/a", "1");
        await Kv("PUT", "/kv/b", "2");
        await Kv("POST", "/counter/c");

        var stats = await Kv("GET", "/stats");

        Assert.Equal(BackendResponse.JsonContentType, Header(stats, "content-type"));
        using var json = JsonDocument.Parse(stats.Body);
        Assert.Equal(2, json.RootElement.GetProperty("PUT /kv/{key}").GetInt64());
        Assert.Equal(1, json.RootElement.GetProperty("POST /counter/{name}").GetInt64());
        Assert.Equal(1, json.RootElement.GetProperty("GET /stats").GetInt64());
        Assert.False(json.RootElement.TryGetProperty("GET /kv/{key}", out _));
    }

    [Theory]
    [InlineData("GET", "/nothing", 404)]
    [InlineData("GET", "/kv/", 404)]
    [InlineData("POST", "/kv/a", 405)]
    [InlineData("DELETE", "/counter/c", 405)]
    [InlineData("POST", "/stats", 405)]
    public async Task Kv_UnknownRoutesAndMethods(string method, string target, int status) =>
        Assert.Equal(status, (await Kv(method, target)).Status);

    [Fact]
    public async Task Kv_RetriedIncrement_OverASocket_ExecutesOnce()
    {
        using var dir = new TempSocketDirectory();
        await using var server = new DatagramBackendServer(new DatagramBackendOptions { SocketPath = dir.Socket("kv.sock") }, _kv.HandleAsync);
        await server.StartAsync();
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(77, attempt: 1, method: "POST", target: "/counter/retried");
        var first = await client.ReceiveAsync();
        client.SendRequest(77, attempt: 2, method: "POST", target: "/counter/retried");
        var retry = await client.ReceiveAsync();

        Assert.Equal("1", first.BodyText);
        Assert.Equal("1", retry.BodyText);
        Assert.Equal(MessageFlags.Replay, retry.Header.Flags);
        Assert.Equal(1, _kv.GetExecutions("POST /counter/{name}"));
        Assert.Equal("1", Text(await Kv("GET", "/counter/retried")));
    }

    [Fact]
    public async Task Kv_Ops_ExecutesEachPost_AndRefusesOtherMethods()
    {
        var first = await Kv("POST", "/ops/a");
        var again = await Kv("POST", "/ops/a"); // no journal, no key: a POST is executed every time it arrives

        Assert.Equal((201, "executed a\n"), (first.Status, Text(first)));
        Assert.Equal(201, again.Status);
        Assert.Equal(2, _kv.GetExecutions("POST /ops/{id}"));
        Assert.Equal(405, (await Kv("GET", "/ops/a")).Status);
    }

    [Fact]
    public async Task Kv_OpsJournal_RecordsEveryExecution_AndRemembersIdempotencyKeysAcrossRestarts()
    {
        using var dir = new TempSocketDirectory();
        var path = Path.Combine(dir.Path, "kv.journal");
        using (var journal = new OperationJournal(path))
        {
            var kv = new KeyValueHandler(journal);
            Assert.Equal(201, (await kv.HandleAsync(Post("/ops/one", key: "k1"), default)).Status);
            Assert.Equal(201, (await kv.HandleAsync(Post("/ops/two", key: null), default)).Status);
            Assert.Equal(201, (await kv.HandleAsync(Post("/ops/two", key: null), default)).Status);
        }

        // A new process on the same journal (a restart: its replay cache is empty) does not execute k1 again.
        using (var journal = new OperationJournal(path))
        {
            var kv = new KeyValueHandler(journal);
            var replayed = await kv.HandleAsync(Post("/ops/one", key: "k1"), default);
            Assert.Equal((200, "already executed one\n"), (replayed.Status, Text(replayed)));
            Assert.Equal(0, kv.GetExecutions("POST /ops/{id}"));
            Assert.Equal(201, (await kv.HandleAsync(Post("/ops/three", key: "k3"), default)).Status);
        }

        Assert.Equal(["one\tk1", "two\t-", "two\t-", "three\tk3"], File.ReadAllLines(path));

        static BackendRequest Post(string target, string? key) =>
            new("POST", target, key is null ? [] : [new("idempotency-key", key)]);
    }

    private ValueTask<BackendResponse> Kv(string method, string target, string? body = null, string? contentType = null) =>
        _kv.HandleAsync(
            new BackendRequest(method, target, contentType is null ? [] : [new("content-type", contentType)], body is null ? default : Encoding.UTF8.GetBytes(body)),
            default);

    private static string Text(BackendResponse response) => Encoding.UTF8.GetString(response.Body.Span);

    private static string? Header(BackendResponse response, string name) =>
        response.Headers.FirstOrDefault(h => h.Key == name).Value;
}
