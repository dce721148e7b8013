using System.Net;
using System.Net.Http.Headers;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.EndToEnd;

/// <summary>
/// Real Kestrel on a Unix socket (WebApplicationFactory + UseKestrel) in front of the sample backends running as
/// separate processes: what a user gets.
/// </summary>
public class SampleBackendTests
{
    private static Dictionary<string, string?> Settings(string echoSocket, string kvSocket) => new()
    {
        ["Gateway:Backends:echo:Instances:0"] = echoSocket,
        ["Gateway:Backends:kv:Instances:0"] = kvSocket,
        ["Gateway:Routes:echo:Path"] = "/echo/{**rest}",
        ["Gateway:Routes:echo:Backend"] = "echo",
        ["Gateway:Routes:kv:Path"] = "/kv/{key}",
        ["Gateway:Routes:kv:Backend"] = "kv",
        ["Gateway:Routes:kv:Methods:0"] = "GET",
        ["Gateway:Routes:kv:Methods:1"] = "PUT",
        ["Gateway:Routes:kv:Methods:2"] = "DELETE",
        ["Gateway:Routes:counter:Path"] = "/counter/{name}",
        ["Gateway:Routes:counter:Backend"] = "kv",
    };

    [Fact]
    public async Task KeyValueBackend_PutGetDelete_OverTheUnixSocket()
    {
        using var dir = new TempSocketDirectory();
        await using var echo = await SampleBackends.StartEchoAsync(dir.Socket("echo.sock"));
        await using var kv = await SampleBackends.StartKeyValueAsync(dir.Socket("kv.sock"));
        await using var factory = new GatewayFactory(dir, Settings(dir.Socket("echo.sock"), dir.Socket("kv.sock"))).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var put = await client.PutAsync("/kv/color", new StringContent("blue", new MediaTypeHeaderValue("text/plain")));
        using var get = await client.GetAsync("/kv/color");
        using var delete = await client.DeleteAsync("/kv/color");
        using var gone = await client.GetAsync("/kv/color");
        using var post = await client.PostAsync("/kv/color", new StringContent("x"));

        Assert.Equal(HttpStatusCode.NoContent, put.StatusCode);
        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        Assert.Equal("blue", await get.Content.ReadAsStringAsync());
        Assert.Equal("text/plain", get.Content.Headers.ContentType?.MediaType);
        Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        Assert.Equal(HttpStatusCode.MethodNotAllowed, post.StatusCode);
    }

    [Fact]
    public async Task EchoBackend_QueryStringsHeadersAndBinaryBodies_RoundTrip()
    {
        using var dir = new TempSocketDirectory();
        await using var echo = await SampleBackends.StartEchoAsync(dir.Socket("echo.sock"));
        await using var factory = new GatewayFactory(dir, Settings(dir.Socket("echo.sock"), dir.Socket("kv.sock"))).StartKestrel();
        using var client = factory.CreateGatewayClient();
        var binary = new byte[256];
        for (var i = 0; i < binary.Length; i++)
        {
            binary[i] = (byte)i;
        }

        var get = await client.GetStringAsync("/echo/a%20b/caf%C3%A9?q=%E2%9C%93&empty=&x=1%2F");
        using var post = await client.PostAsync("/echo/bin", new ByteArrayContent(binary) { Headers = { ContentType = new MediaTypeHeaderValue("application/x-test") } });
        using var status = new HttpRequestMessage(HttpMethod.Delete, "/echo/s");
        status.Headers.Add("x-echo-status", "418");
        using var teapot = await client.SendAsync(status);

        Assert.Equal("GET /echo/a%20b/caf%C3%A9?q=%E2%9C%93&empty=&x=1%2F\n", get);
        Assert.Equal(binary, await post.Content.ReadAsByteArrayAsync());
        Assert.Equal("application/x-test", post.Content.Headers.ContentType?.MediaType);
        Assert.Equal((HttpStatusCode)418, teapot.StatusCode);
    }

    [Theory]
    [InlineData(212_000)] // just under one datagram
    [InlineData(5 * 1024 * 1024)] // fragmented both ways
    [InlineData(16 * 1024 * 1024)] // the default limit exactly
    public async Task EchoBackend_LargeButAllowedBodies_RoundTripByteExact(int size)
    {
        using var dir = new TempSocketDirectory();
        await using var echo = await SampleBackends.StartEchoAsync(dir.Socket("echo.sock"));
        await using var factory = new GatewayFactory(dir, Settings(dir.Socket("echo.sock"), dir.Socket("kv.sock"))).StartKestrel();
        using var client = factory.CreateGatewayClient();
        var body = new byte[size];
        new Random(size).NextBytes(body);

        using var response = await client.PostAsync("/echo/large", new ByteArrayContent(body));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(body, await response.Content.ReadAsByteArrayAsync());
    }

    /// <summary>
    /// The largest request the gateway accepts (a 16 MiB body, header fields up to the largest allowed
    /// MaxRequestHeadersTotalSize, a long target) is delivered to both reference backends: the envelope fits the
    /// 17 MiB message of docs/protocol.md §6, which they accept.
    /// </summary>
    [Theory]
    [InlineData("csharp")]
    [InlineData("python")]
    public async Task LargestAcceptedRequest_ReachesTheReferenceBackends(string backend)
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("echo.sock");
        await using var echo = await StartReferenceAsync(backend, socket);
        var settings = Settings(socket, dir.Socket("kv.sock"));
        var limit = Gateway.Configuration.RequestLimitsOptions.MaxHeadersTotalSizeLimit;
        settings["Gateway:Limits:MaxRequestHeadersTotalSize"] = limit.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await using var factory = new GatewayFactory(dir, settings).StartKestrel();
        using var client = factory.CreateGatewayClient();
        var body = new byte[16 * 1024 * 1024];
        new Random(7).NextBytes(body);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/echo/" + new string('t', 7000)) { Content = new ByteArrayContent(body) };

        // Header fields up to the limit (name + value + 4 per line), leaving room for Host, Content-Length and the like.
        var budget = limit - 512;
        for (var i = 0; budget > 64; i++)
        {
            var value = new string('h', Math.Min(8000, budget - 16));
            request.Headers.Add($"x-pad-{i:D3}", value);
            budget -= 9 + value.Length + 4;
        }

        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(body, await response.Content.ReadAsByteArrayAsync());
    }

    /// <summary>
    /// Both reference backends stream through a real gateway (docs/protocol.md §4.5): the echo's stream headers give a
    /// chunked HTTP reply with exactly the pieces the conformance kit expects, an EventSource-style request gets
    /// <c>text/event-stream</c>, and a 5 MiB upload of unknown length (streamed: above StreamBodiesAbove, 1 MiB) comes back whole.
    /// </summary>
    [Theory]
    [InlineData("csharp")]
    [InlineData("python")]
    public async Task ReferenceBackends_StreamRepliesAndUploads_ThroughTheGateway(string backend)
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("echo.sock");
        await using var echo = await StartReferenceAsync(backend, socket);
        await using var factory = new GatewayFactory(dir, Settings(socket, dir.Socket("kv.sock"))).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using (var request = new HttpRequestMessage(HttpMethod.Get, "/echo/stream"))
        {
            request.Headers.Add("x-echo-stream-count", "40");
            request.Headers.Add("x-echo-stream-chunk-bytes", "1000");
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.True(response.Headers.TransferEncodingChunked, "a streamed reply goes out chunked");
            // docs/conformance.md, "Streams": piece i is "chunk i", dots, a newline, B bytes in all.
            var expected = Enumerable.Range(1, 40).SelectMany(i => System.Text.Encoding.ASCII.GetBytes($"chunk {i}".PadRight(999, '.') + "\n")).ToArray();
            Assert.Equal(expected, await response.Content.ReadAsByteArrayAsync());
        }

        using (var request = new HttpRequestMessage(HttpMethod.Get, "/echo/events?x-echo-stream-count=3"))
        {
            request.Headers.Add("accept", "text/event-stream");
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
            Assert.Equal("data: chunk 1\n\ndata: chunk 2\n\ndata: chunk 3\n\n", await response.Content.ReadAsStringAsync());
        }

        var body = new byte[5 * 1024 * 1024];
        new Random(11).NextBytes(body);
        using var upload = new StreamContent(new UnseekableStream(body)); // no length: chunked transfer encoding
        using var echoed = await client.PostAsync("/echo/upload", upload);
        Assert.Equal(HttpStatusCode.OK, echoed.StatusCode);
        Assert.Equal(body, await echoed.Content.ReadAsByteArrayAsync());
    }

    /// <summary>A read-only stream of known bytes that hides its length, so HttpClient sends it chunked.</summary>
    private sealed class UnseekableStream(byte[] bytes) : MemoryStream(bytes, writable: false)
    {
        public override bool CanSeek => false;
    }

    /// <summary>Starts a reference backend: "python" (samples/python/backend.py) or "csharp" (the C# echo sample).</summary>
    private static async Task<ExternalProcess> StartReferenceAsync(string backend, string socketPath) =>
        backend == "python" ? await StartPythonAsync(socketPath) : await SampleBackends.StartEchoAsync(socketPath);

    private static async Task<ExternalProcess> StartPythonAsync(string socketPath)
    {
        var process = ExternalProcess.Start("python3", RepoPaths.Combine("samples", "python", "backend.py"), "--socket", socketPath);
        await process.WaitForFileAsync(socketPath);
        return process;
    }

    [Fact]
    public async Task EchoBackend_500ConcurrentRequests_AllCorrect()
    {
        using var dir = new TempSocketDirectory();
        await using var echo = await SampleBackends.StartEchoAsync(dir.Socket("echo.sock"));
        await using var factory = new GatewayFactory(dir, Settings(dir.Socket("echo.sock"), dir.Socket("kv.sock"))).StartKestrel();
        using var client = factory.CreateGatewayClient();

        var results = await Task.WhenAll(Enumerable.Range(0, 500).Select(async i =>
        {
            using var response = await client.PutAsync($"/echo/{i}", new StringContent($"payload {i}"));
            return (i, response.StatusCode, Body: await response.Content.ReadAsStringAsync());
        }));

        Assert.All(results, r =>
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal($"payload {r.i}", r.Body);
        });
    }
}
