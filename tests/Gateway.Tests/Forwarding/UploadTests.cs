using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using Gateway.Ipc.Backend;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Forwarding;

/// <summary>Streamed request bodies (docs/protocol.md §4.5.3) through a real gateway on Kestrel over its Unix socket.</summary>
public class UploadTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(60);

    /// <summary>Reads the whole body (from <see cref="BackendRequest.BodyStream"/>) and answers "{streamed} {length} {sha256}".</summary>
    private static DatagramHandler Digest(TaskCompletionSource<Exception>? failure = null, TaskCompletionSource? firstRead = null) => async (request, token) =>
    {
        try
        {
            using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var buffer = new byte[100_000];
            long total = 0;
            int read;
            while ((read = await request.BodyStream.ReadAsync(buffer, token)) > 0)
            {
                sha.AppendData(buffer, 0, read);
                total += read;
                firstRead?.TrySetResult();
            }

            return BackendResponse.Text($"{request.IsBodyStreamed} {total} {Convert.ToHexString(sha.GetHashAndReset())}");
        }
        catch (Exception ex)
        {
            failure?.TrySetResult(ex);
            throw;
        }
    };

    private static Task<TestBackend> StartBackendAsync(TempSocketDirectory dir, DatagramHandler handler, bool accept = true) =>
        TestBackend.StartAsync(dir.Socket("b.sock"), handler, o =>
        {
            o.AcceptStreamedRequestBodies = accept;
            o.StreamWindowBytes = 64 * 1024;
        });

    private static Dictionary<string, string?> Settings(TestBackend backend, long streamAbove = 65_536, string? maxBody = null)
    {
        var settings = ForwardingTests.Route(backend.SocketPath, maxBody: maxBody);
        settings["Gateway:Backends:b:StreamBodiesAbove"] = streamAbove.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return settings;
    }

    private static byte[] Payload(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    private static string Expected(bool streamed, byte[] body) => $"{streamed} {body.Length} {Convert.ToHexString(SHA256.HashData(body))}";

    /// <summary>A body of unknown length: sent with chunked transfer encoding, in pieces of <paramref name="piece"/> bytes.</summary>
    private sealed class ChunkedContent(byte[] body, int piece, Func<int, Task>? beforePiece = null) : HttpContent
    {
        protected override async Task SerializeToStreamAsync(Stream stream, TransportContext? context)
        {
            for (var offset = 0; offset < body.Length; offset += piece)
            {
                if (beforePiece is not null)
                {
                    await beforePiece(offset);
                }

                await stream.WriteAsync(body.AsMemory(offset, Math.Min(piece, body.Length - offset)));
                await stream.FlushAsync();
            }
        }

        protected override bool TryComputeLength(out long length)
        {
            length = 0;
            return false;
        }
    }

    /// <summary>
    /// The seam between the gateway's choice (whole or streamed) and what the backend receives: for generated body sizes
    /// around the threshold and the chunk size, declared or chunked, the backend gets exactly the caller's bytes, streamed
    /// if and only if the body is larger than <c>StreamBodiesAbove</c>.
    /// </summary>
    [Fact]
    public async Task GeneratedBodies_ArriveExactly_StreamedIffLargerThanTheThreshold()
    {
        const int threshold = 65_536;
        using var dir = new TempSocketDirectory();
        await using var backend = await StartBackendAsync(dir, Digest());
        await using var factory = new GatewayFactory(dir, Settings(backend, threshold)).StartKestrel();
        using var client = factory.CreateGatewayClient();
        var seed = Environment.GetEnvironmentVariable("GATEWAY_UPLOAD_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        var random = new Random(seed);
        int[] edges = [0, 1, threshold - 1, threshold, threshold + 1, 2 * threshold, 65_536 + 4_096, 300_001];
        var sizes = edges.Concat(Enumerable.Range(0, 12).Select(_ => random.Next(0, 600_000))).ToArray();

        foreach (var size in sizes)
        {
            foreach (var chunked in new[] { false, true })
            {
                var body = Payload(size, random.Next());
                HttpContent content = chunked ? new ChunkedContent(body, random.Next(1, 70_000)) : new ByteArrayContent(body);
                using var response = await client.PostAsync("/api/upload", content).WaitAsync(HangGuard);
                var text = await response.Content.ReadAsStringAsync();

                Assert.True(response.StatusCode == HttpStatusCode.OK, $"seed {seed}, size {size}, chunked {chunked}: {(int)response.StatusCode} {text}");
                Assert.True(Expected(size > threshold, body) == text, $"seed {seed} (GATEWAY_UPLOAD_SEED), size {size}, chunked {chunked}: got {text}");
            }
        }
    }

    [Fact]
    public async Task BodyOver16MiB_IsStreamedWhole_WhenTheRouteAllowsIt()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await StartBackendAsync(dir, Digest());
        await using var factory = new GatewayFactory(dir, Settings(backend, maxBody: "67108864")).StartKestrel();
        using var client = factory.CreateGatewayClient();
        var body = Payload(20 * 1024 * 1024, 7);

        using var response = await client.PostAsync("/api/upload", new ByteArrayContent(body)).WaitAsync(HangGuard);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(Expected(true, body), await response.Content.ReadAsStringAsync());
        Assert.Equal(1, backend.Server.Statistics.UploadsStarted);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task BodyOver16MiB_ToABackendThatDoesNotStream_Is413_NamingTheReason(bool chunked)
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await StartBackendAsync(dir, Digest(), accept: false);
        await using var factory = new GatewayFactory(dir, Settings(backend, maxBody: "67108864")).StartKestrel();
        using var client = factory.CreateGatewayClient();
        var body = new byte[17 * 1024 * 1024];

        using var response = await client.PostAsync("/api/upload", chunked ? new ChunkedContent(body, 1 << 20) : new ByteArrayContent(body)).WaitAsync(HangGuard);
        var problem = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("body-too-large", problem, StringComparison.Ordinal);
        Assert.Contains("does not accept streamed request bodies", problem, StringComparison.Ordinal);
        Assert.Equal(0, backend.Server.Statistics.Executed);
    }

    [Fact]
    public async Task LargeBody_ToABackendThatDoesNotStream_GoesWholeUnder16MiB()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await StartBackendAsync(dir, Digest(), accept: false);
        await using var factory = new GatewayFactory(dir, Settings(backend)).StartKestrel();
        using var client = factory.CreateGatewayClient();
        var body = Payload(3_000_000, 3);

        using var response = await client.PostAsync("/api/upload", new ChunkedContent(body, 100_000)).WaitAsync(HangGuard);

        Assert.Equal(Expected(false, body), await response.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task HeaderFieldsTooLargeForOneDatagram_BodyGoesWhole_Or413SayingWhy(bool overWholeLimit)
    {
        // A streamed body's REQUEST_HEAD must fit one datagram; header fields up to the largest allowed limit do not.
        using var dir = new TempSocketDirectory();
        await using var backend = await StartBackendAsync(dir, Digest());
        var settings = Settings(backend, maxBody: "67108864");
        var limit = Gateway.Configuration.RequestLimitsOptions.MaxHeadersTotalSizeLimit;
        settings["Gateway:Limits:MaxRequestHeadersTotalSize"] = limit.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await using var factory = new GatewayFactory(dir, settings).StartKestrel();
        using var client = factory.CreateGatewayClient();
        var body = Payload(overWholeLimit ? 17 * 1024 * 1024 : 2_000_000, 5);
        using var request = new HttpRequestMessage(HttpMethod.Post, "/api/upload") { Content = new ByteArrayContent(body) };
        for (var i = 0; i < 28; i++)
        {
            request.Headers.Add($"x-pad-{i:D2}", new string('h', 8000));
        }

        using var response = await client.SendAsync(request).WaitAsync(HangGuard);
        var text = await response.Content.ReadAsStringAsync();

        if (overWholeLimit)
        {
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
            Assert.Contains("header fields take", text, StringComparison.Ordinal);
            Assert.Equal(0, backend.Server.Statistics.Executed);
        }
        else
        {
            Assert.True(response.StatusCode == HttpStatusCode.OK, text);
            Assert.Equal(Expected(false, body), text);
        }
    }

    [Fact]
    public async Task StreamedBodyOverTheRouteLimit_Is413_AndTheBackendStopsReading()
    {
        using var dir = new TempSocketDirectory();
        var handlerFailure = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        var firstRead = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await StartBackendAsync(dir, Digest(handlerFailure, firstRead));
        await using var factory = new GatewayFactory(dir, Settings(backend, maxBody: "500000")).StartKestrel();
        using var client = factory.CreateGatewayClient();

        // Unknown length: the gateway only learns it is too large while streaming it. The caller sends the rest only
        // once the backend has read the start (else the whole body may be in before the gateway looks, and the 413
        // comes before any upload: right too, but not what this test is about).
        var content = new ChunkedContent(new byte[1_000_000], 50_000, offset => offset == 100_000 ? firstRead.Task.WaitAsync(HangGuard) : Task.CompletedTask);
        using var response = await client.PostAsync("/api/upload", content).WaitAsync(HangGuard);
        var problem = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        Assert.Contains("500000 bytes that route 'api' accepts", problem, StringComparison.Ordinal);
        Assert.IsAssignableFrom<OperationCanceledException>(await handlerFailure.Task.WaitAsync(HangGuard));
    }

    [Fact]
    public async Task UploadEchoedAsAStream_FullDuplex_ComesBackWhole()
    {
        // A caller that sends and reads at once (as curl does): the echo streams the body back while it arrives, with
        // flow control on both hops, so neither the gateway nor the backend holds the whole body.
        using var dir = new TempSocketDirectory();
        await using var backend = await StartBackendAsync(dir, (request, token) => ValueTask.FromResult(BackendResponse.Stream(
            (reply, ct) => request.BodyStream.CopyToAsync(reply, 10_000, ct),
            "application/octet-stream")));
        await using var factory = new GatewayFactory(dir, Settings(backend)).StartKestrel();
        var body = Payload(2_000_000, 11);

        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(factory.SocketPath));
        var send = Task.Run(async () =>
        {
            await socket.SendAsync(Encoding.ASCII.GetBytes("POST /api/echo HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"));
            for (var offset = 0; offset < body.Length; offset += 30_000)
            {
                var n = Math.Min(30_000, body.Length - offset);
                await socket.SendAsync(Encoding.ASCII.GetBytes($"{n:x}\r\n"));
                await socket.SendAsync(body.AsMemory(offset, n));
                await socket.SendAsync("\r\n"u8.ToArray());
            }

            await socket.SendAsync("0\r\n\r\n"u8.ToArray());
        });
        using var received = new MemoryStream();
        var buffer = new byte[65_536];
        int read;
        while ((read = await socket.ReceiveAsync(buffer.AsMemory()).AsTask().WaitAsync(HangGuard)) > 0)
        {
            received.Write(buffer, 0, read);
        }

        await send.WaitAsync(HangGuard);
        var response = Http11ResponseParser.Parse(received.ToArray(), headRequest: false);
        Assert.Equal(200, response.Status);
        Assert.Equal("chunked", response.Get("transfer-encoding"));
        Assert.Equal(body, response.Body);
    }

    [Fact]
    public async Task EarlyReply_EndsTheUpload_TheCallerGetsTheReply()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await StartBackendAsync(dir, async (request, token) =>
        {
            await request.BodyStream.ReadExactlyAsync(new byte[100], token);
            return BackendResponse.Text("quota exceeded", status: 507);
        });
        await using var factory = new GatewayFactory(dir, Settings(backend)).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var response = await client.PostAsync("/api/upload", new ByteArrayContent(new byte[5_000_000])).WaitAsync(HangGuard);

        Assert.Equal((HttpStatusCode)507, response.StatusCode);
        Assert.Equal("quota exceeded", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task CallerGoesAwayMidUpload_TheBackendIsCancelled()
    {
        using var dir = new TempSocketDirectory();
        var handlerFailure = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await StartBackendAsync(dir, Digest(handlerFailure));
        await using var factory = new GatewayFactory(dir, Settings(backend)).StartKestrel();

        using (var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified))
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(factory.SocketPath));
            await socket.SendAsync(Encoding.ASCII.GetBytes("POST /api/upload HTTP/1.1\r\nHost: gw\r\nContent-Length: 10000000\r\n\r\n"));
            await socket.SendAsync(new byte[300_000]);
            await Eventually.UntilAsync(() => backend.Server.Statistics.UploadChunks > 0, HangGuard, TimeSpan.FromMilliseconds(10));
        }

        Assert.IsAssignableFrom<OperationCanceledException>(await handlerFailure.Task.WaitAsync(HangGuard));
    }
}
