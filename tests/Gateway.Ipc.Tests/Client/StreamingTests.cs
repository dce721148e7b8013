using System.Text;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;
using Gateway.Testing;

namespace Gateway.Ipc.Tests.Client;

/// <summary>Streamed replies (docs/protocol.md §4.5) between the real client and the real backend helper.</summary>
public class StreamingTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Infinite = Timeout.InfiniteTimeSpan;

    private static byte[] Request(DatagramClient client, string target, bool acceptStream = true)
    {
        using var writer = new FrameWriter();
        writer.BeginRequest(client.NextCorrelationId(), 1, 0, "GET", target);
        if (acceptStream)
        {
            writer.SetFeatures(StreamFeatures.StreamReply);
        }

        return writer.Complete().ToArray();
    }

    /// <summary>Sends <c>GET /ticks</c> with STREAM_REPLY, attempt 1, from a raw test client.</summary>
    private static void SendStreamRequest(Gateway.Ipc.Tests.Backend.TestClient client, ulong id)
    {
        using var writer = new FrameWriter();
        writer.BeginRequest(id, 1, 0, "GET", "/ticks");
        writer.SetFeatures(StreamFeatures.StreamReply);
        client.SendRaw(writer.Complete().Span);
    }

    /// <summary>Sends a CREDIT of <paramref name="bytes"/> for stream <paramref name="id"/>, attempt 1.</summary>
    private static void SendCredit(Gateway.Ipc.Tests.Backend.TestClient client, ulong id, uint bytes)
    {
        var credit = new byte[StreamFrames.ControlSize];
        StreamFrames.WriteControl(credit, MessageKind.Credit, id, 1, bytes);
        client.SendRaw(credit);
    }

    private static async Task<DatagramBackendServer> StartAsync(string path, DatagramHandler handler)
    {
        var server = new DatagramBackendServer(new DatagramBackendOptions { SocketPath = path }, handler);
        await server.StartAsync();
        return server;
    }

    private static async Task<List<byte[]>> ReadAllAsync(ReplyStream stream)
    {
        var chunks = new List<byte[]>();
        while (true)
        {
            var chunk = await stream.ReadChunkAsync().AsTask().WaitAsync(HangGuard);
            if (chunk.IsEmpty)
            {
                return chunks;
            }

            chunks.Add(chunk.ToArray());
        }
    }

    [Theory]
    [InlineData(0u, 4)]
    [InlineData(2_147_483_648u, 4)]
    [InlineData(100u, 3)]
    public async Task MalformedCredit_BreaksTheReplyStream_WithErrorMalformed(uint bytes, int payloadLength)
    {
        // docs/protocol.md §7: a CREDIT of 0, over 2,147,483,647 or not 4 bytes breaks the stream; the backend answers ERROR MALFORMED.
        using var dir = new TempSocketDirectory();
        await using var server = await StartAsync(dir.Socket("b"), (request, token) => ValueTask.FromResult(BackendResponse.Stream(
            async (stream, ct) =>
            {
                while (true)
                {
                    await stream.WriteAsync("tick"u8.ToArray(), ct);
                }
            },
            "text/plain")));
        using var client = new Gateway.Ipc.Tests.Backend.TestClient(server.SocketPath);
        SendStreamRequest(client, 91);
        var head = await client.ReceiveAsync();
        Assert.Equal(MessageKind.ResponseHead, head.Header.Kind);

        var credit = new byte[ProtocolConstants.HeaderSize + payloadLength];
        new FrameHeader(MessageKind.Credit, MessageFlags.None, 1, 91, 0, (uint)payloadLength).Write(credit);
        if (payloadLength == 4)
        {
            System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(credit.AsSpan(ProtocolConstants.HeaderSize), bytes);
        }

        client.SendRaw(credit);

        var reply = await client.ReceiveAsync();
        Assert.Equal(MessageKind.Error, reply.Header.Kind);
        Assert.Equal(IpcErrorCode.Malformed, reply.ErrorCode);
        Assert.Contains("CREDIT", reply.ErrorMessage, StringComparison.Ordinal);
        // The stream leaves the server's table after its last frame went out (DatagramBackendServer's finally), as in the tests above.
        await Eventually.UntilAsync(() => server.OpenStreamCount == 0, HangGuard, TimeSpan.FromMilliseconds(10));
    }

    [Fact]
    public async Task CreditAfterCancel_IsNeverUsed_EvenByAHandlerThatIgnoresItsToken()
    {
        // Found by the conformance kit's stream-cancel check: a CREDIT that crosses a CANCEL woke the writer, which sent on.
        using var dir = new TempSocketDirectory();
        await using var server = await StartAsync(dir.Socket("b"), (request, token) => ValueTask.FromResult(BackendResponse.Stream(
            async (stream, _) =>
            {
                while (true)
                {
                    await stream.WriteAsync("tick"u8.ToArray(), CancellationToken.None); // the writer must stop by itself
                }
            },
            "text/plain")));
        using var client = new Gateway.Ipc.Tests.Backend.TestClient(server.SocketPath);
        SendStreamRequest(client, 92);
        Assert.Equal(MessageKind.ResponseHead, (await client.ReceiveAsync()).Header.Kind);

        client.SendControl(MessageKind.Cancel, 92, 1);
        SendCredit(client, 92, 1_000_000);
        client.SendControl(MessageKind.Ping, 93, 1);

        // The backend reads in order: CANCEL, CREDIT, PING. Nothing of the cancelled stream may come before the PONG.
        var next = await client.ReceiveAsync();
        Assert.Equal(MessageKind.Pong, next.Header.Kind);
    }

    [Fact]
    public async Task ClientGone_TheReplyStreamEnds_InsteadOfSendingIntoNothing()
    {
        using var dir = new TempSocketDirectory();
        var ended = new TaskCompletionSource<Exception?>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await StartAsync(dir.Socket("b"), (request, token) => ValueTask.FromResult(BackendResponse.Stream(
            async (stream, ct) =>
            {
                try
                {
                    while (true)
                    {
                        await stream.WriteAsync("tick"u8.ToArray(), ct);
                    }
                }
                catch (Exception e)
                {
                    ended.TrySetResult(e);
                    throw;
                }
            },
            "text/plain")));
        var client = new Gateway.Ipc.Tests.Backend.TestClient(server.SocketPath);
        SendStreamRequest(client, 94);
        Assert.Equal(MessageKind.ResponseHead, (await client.ReceiveAsync()).Header.Kind);
        SendCredit(client, 94, int.MaxValue);
        client.Dispose(); // the client's socket closes: every later CHUNK is refused

        var error = await ended.Task.WaitAsync(HangGuard);
        Assert.IsAssignableFrom<IOException>(error);
    }

    [Fact]
    public async Task StreamedReply_HeadThenChunksInOrderThenEnd()
    {
        using var dir = new TempSocketDirectory();
        await using var server = await StartAsync(dir.Socket("b"), (request, token) => ValueTask.FromResult(BackendResponse.Stream(
            async (body, ct) =>
            {
                for (var i = 0; i < 5; i++)
                {
                    await body.WriteAsync(Encoding.ASCII.GetBytes($"data: {i}\n\n"), ct);
                }
            },
            "text/event-stream")));
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = server.SocketPath });

        using var reply = await client.SendAsync(Request(client, "/events"), Infinite).WaitAsync(HangGuard);

        Assert.True(reply.IsStreamed);
        Assert.Equal(MessageKind.ResponseHead, reply.Kind);
        Assert.Equal(200, reply.Response.Status);
        Assert.Equal("text/event-stream", reply.Response.Headers.GetValue("content-type"));
        var chunks = await ReadAllAsync(reply.Stream!);
        Assert.Equal(["data: 0\n\n", "data: 1\n\n", "data: 2\n\n", "data: 3\n\n", "data: 4\n\n"], chunks.Select(c => Encoding.ASCII.GetString(c)));
        Assert.Equal(0, client.OpenStreamCount);
        await Eventually.UntilAsync(() => server.OpenStreamCount == 0, HangGuard, TimeSpan.FromMilliseconds(10));
        Assert.Equal(1, server.Statistics.StreamsStarted);
    }

    [Fact]
    public async Task StreamedReply_SmallWindow_BackendSplitsWritesToTheCreditAndNeverExceedsIt()
    {
        // A chunk beyond the credit would abort the stream (StreamAborted); reading all of it proves the writer kept to it.
        using var dir = new TempSocketDirectory();
        var payload = Enumerable.Range(0, 50_000).Select(i => (byte)i).ToArray();
        await using var server = await StartAsync(dir.Socket("b"), (request, token) => ValueTask.FromResult(BackendResponse.Stream(
            async (body, ct) =>
            {
                for (var offset = 0; offset < payload.Length; offset += 7_000)
                {
                    await body.WriteAsync(payload.AsMemory(offset, Math.Min(7_000, payload.Length - offset)), ct);
                }
            })));
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = server.SocketPath, StreamWindowBytes = 4_096 });

        using var reply = await client.SendAsync(Request(client, "/big"), Infinite).WaitAsync(HangGuard);
        var chunks = await ReadAllAsync(reply.Stream!);

        Assert.Equal(payload, chunks.SelectMany(c => c).ToArray());
        Assert.All(chunks, c => Assert.True(c.Length <= 4_096));
        Assert.True(server.Statistics.Credits > 1);
    }

    [Fact]
    public async Task ChunkBeyondCredit_AbortsTheStream_AndCancelsIt()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = backend.Path, StreamWindowBytes = 100 });
        var send = client.SendAsync(Request(client, "/x"), Infinite);
        var request = await backend.ReceiveAsync();
        Assert.Equal(StreamFeatures.StreamReply, request.Header.Features);
        var cid = request.Header.CorrelationId;

        using var writer = new FrameWriter();
        writer.BeginResponseHead(cid, 1, 200);
        writer.Complete();
        await backend.SendRawAsync(writer.WrittenMemory.ToArray(), request.Sender);
        using var reply = await send.WaitAsync(HangGuard);
        var credit = await backend.ReceiveAsync();
        Assert.Equal(MessageKind.Credit, credit.Header.Kind);
        Assert.Equal(100u, StreamFrames.ReadCredit(credit.Payload));

        writer.WriteChunk(cid, 1, 0, new byte[101]);
        await backend.SendRawAsync(writer.WrittenMemory.ToArray(), request.Sender);

        var ex = await Assert.ThrowsAsync<DatagramException>(() => reply.Stream!.ReadChunkAsync().AsTask().WaitAsync(HangGuard));
        Assert.Equal(DatagramFailure.StreamAborted, ex.Failure);
        Assert.Contains("beyond the credit", ex.Message, StringComparison.Ordinal);
        var cancel = await backend.ReceiveAsync();
        Assert.Equal(MessageKind.Cancel, cancel.Header.Kind);
        Assert.Equal(cid, cancel.Header.CorrelationId);
    }

    [Fact]
    public async Task SlowReader_StallsOnlyItsOwnStream_OtherRequestsOnTheSameSocketAreAnswered_AndDisposeCancelsTheBackend()
    {
        using var dir = new TempSocketDirectory();
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await StartAsync(dir.Socket("b"), (request, token) => ValueTask.FromResult(request.Path == "/endless"
            ? BackendResponse.Stream(async (body, ct) =>
            {
                var block = new byte[1024];
                try
                {
                    while (true)
                    {
                        await body.WriteAsync(block, ct);
                    }
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    cancelled.TrySetResult();
                    throw;
                }
            })
            : BackendResponse.Text("ok " + request.Path)));
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = server.SocketPath, StreamWindowBytes = 8_192 });

        var reply = await client.SendAsync(Request(client, "/endless"), Infinite).WaitAsync(HangGuard);
        var first = await reply.Stream!.ReadChunkAsync().AsTask().WaitAsync(HangGuard);
        Assert.Equal(1024, first.Length);

        // The stream is not read any further: its backend writer is out of credit, yet every other request gets its reply.
        for (var i = 0; i < 50; i++)
        {
            using var other = await client.SendAsync(Request(client, "/r" + i, acceptStream: false), Infinite).WaitAsync(HangGuard);
            Assert.Equal("ok /r" + i, Encoding.UTF8.GetString(other.Response.Body));
        }

        reply.Dispose();
        await cancelled.Task.WaitAsync(HangGuard);
        await Eventually.UntilAsync(() => server.OpenStreamCount == 0, HangGuard, TimeSpan.FromMilliseconds(10));
        Assert.Equal(1, server.Statistics.StreamsCancelled);
        Assert.Equal(0, client.OpenStreamCount);
    }

    [Fact]
    public async Task HandlerFailingMidStream_EndsTheStreamWithError_NotWithEnd()
    {
        using var dir = new TempSocketDirectory();
        await using var server = await StartAsync(dir.Socket("b"), (request, token) => ValueTask.FromResult(BackendResponse.Stream(
            async (body, ct) =>
            {
                await body.WriteAsync("first"u8.ToArray(), ct);
                throw new IOException("disk gone");
            })));
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = server.SocketPath });

        using var reply = await client.SendAsync(Request(client, "/x"), Infinite).WaitAsync(HangGuard);
        var chunk = await reply.Stream!.ReadChunkAsync().AsTask().WaitAsync(HangGuard);
        Assert.Equal("first", Encoding.ASCII.GetString(chunk.Span));

        var ex = await Assert.ThrowsAsync<DatagramException>(() => reply.Stream.ReadChunkAsync().AsTask().WaitAsync(HangGuard));
        Assert.Equal(DatagramFailure.StreamAborted, ex.Failure);
        Assert.Contains("Internal", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RequestWithoutStreamReply_GetsTheStreamCollectedIntoOneResponse()
    {
        using var dir = new TempSocketDirectory();
        await using var server = await StartAsync(dir.Socket("b"), (request, token) => ValueTask.FromResult(BackendResponse.Stream(Parts(), "text/plain")));
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = server.SocketPath });

        using var reply = await client.SendAsync(Request(client, "/x", acceptStream: false), Infinite).WaitAsync(HangGuard);

        Assert.False(reply.IsStreamed);
        Assert.Equal(MessageKind.Response, reply.Kind);
        Assert.Equal("abc", Encoding.ASCII.GetString(reply.Response.Body));
        Assert.Equal(0, server.Statistics.StreamsStarted);

        static async IAsyncEnumerable<ReadOnlyMemory<byte>> Parts()
        {
            foreach (var part in new[] { "a", "b", "c" })
            {
                await Task.Yield();
                yield return Encoding.ASCII.GetBytes(part);
            }
        }
    }

    [Fact]
    public async Task HeadToARequestThatDidNotAcceptStreams_IsAMalformedReply()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = backend.Path });
        var send = client.SendAsync(Request(client, "/x", acceptStream: false), Infinite);
        var request = await backend.ReceiveAsync();

        using var writer = new FrameWriter();
        writer.BeginResponseHead(request.Header.CorrelationId, 1, 200);
        writer.Complete();
        await backend.SendRawAsync(writer.WrittenMemory.ToArray(), request.Sender);

        var ex = await Assert.ThrowsAsync<DatagramException>(() => send.WaitAsync(HangGuard));
        Assert.Equal(DatagramFailure.MalformedReply, ex.Failure);
    }
}
