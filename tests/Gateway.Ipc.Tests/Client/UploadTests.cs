using System.Security.Cryptography;
using System.Text;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Tests.Backend;
using Gateway.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Ipc.Tests.Client;

/// <summary>Streamed request bodies (docs/protocol.md §4.5.3) between the real client and the real backend helper, and against fakes of each side.</summary>
public class UploadTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Infinite = Timeout.InfiniteTimeSpan;

    private static byte[] Head(DatagramClient client, string target = "/upload", bool acceptStream = false, ulong? id = null)
    {
        using var writer = new FrameWriter();
        writer.BeginRequestHead(id ?? client.NextCorrelationId(), 1, 0, "POST", target);
        if (acceptStream)
        {
            writer.SetFeatures(StreamFeatures.StreamReply);
        }

        writer.AddHeader("content-type", "application/octet-stream");
        return writer.Complete().ToArray();
    }

    private static async Task<DatagramBackendServer> StartAsync(string path, DatagramHandler handler, int window = 256 * 1024, bool accept = true)
    {
        var server = new DatagramBackendServer(new DatagramBackendOptions { SocketPath = path, AcceptStreamedRequestBodies = accept, StreamWindowBytes = window }, handler);
        await server.StartAsync();
        return server;
    }

    /// <summary>Reads the whole body and answers its length and SHA-256, and the largest single read it was given.</summary>
    private static DatagramHandler Digest() => async (request, token) =>
    {
        using var sha = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var buffer = new byte[100_000];
        long total = 0;
        int read;
        while ((read = await request.BodyStream.ReadAsync(buffer, token)) > 0)
        {
            sha.AppendData(buffer, 0, read);
            total += read;
        }

        return BackendResponse.Text($"{request.IsBodyStreamed} {total} {Convert.ToHexString(sha.GetHashAndReset())}");
    };

    private static byte[] Payload(int length) => Enumerable.Range(0, length).Select(i => (byte)(i * 31 + (i >> 8))).ToArray();

    [Fact]
    public async Task BackendFeatures_AreLearnedFromThePong_AndAnnounceUploadsOnlyWhenTheBackendAcceptsThem()
    {
        using var dir = new TempSocketDirectory();
        await using var accepting = await StartAsync(dir.Socket("a"), Digest());
        await using var plain = await StartAsync(dir.Socket("p"), Digest(), accept: false);
        await using var toAccepting = new DatagramClient(new DatagramClientOptions { BackendPath = accepting.SocketPath });
        await using var toPlain = new DatagramClient(new DatagramClientOptions { BackendPath = plain.SocketPath });

        Assert.Null(toAccepting.BackendFeatures);
        Assert.True(await toAccepting.PingAsync(HangGuard));
        Assert.True(await toPlain.PingAsync(HangGuard));

        Assert.Equal(StreamFeatures.StreamReply | StreamFeatures.StreamRequest, toAccepting.BackendFeatures);
        Assert.Equal(StreamFeatures.StreamReply, toPlain.BackendFeatures);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(1)]
    [InlineData(65_536)]
    [InlineData(3_000_001)]
    public async Task Upload_ArrivesWholeAndInOrder_WithinASmallWindow(int length)
    {
        using var dir = new TempSocketDirectory();
        // A 10,000-byte window: a CHUNK beyond it would break the upload (ERROR MALFORMED), so a digest proves the credit was kept.
        await using var server = await StartAsync(dir.Socket("b"), Digest(), window: 10_000);
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = server.SocketPath });
        var body = Payload(length);

        using var reply = await client.SendStreamedAsync(Head(client), new MemoryStream(body), HangGuard).WaitAsync(HangGuard);

        Assert.Equal(MessageKind.Response, reply.Kind);
        Assert.Equal($"True {length} {Convert.ToHexString(SHA256.HashData(body))}", Encoding.UTF8.GetString(reply.Response.Body));
        Assert.Equal(length, client.Statistics.UploadBytesSent);
        Assert.True(client.Statistics.UploadChunksSent >= (length + 9_999) / 10_000);
        Assert.Equal(client.Statistics.UploadChunksSent, server.Statistics.UploadChunks);
        Assert.Equal(0, server.Statistics.UploadViolations);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task WholeRequest_BodyStreamReadsTheBody()
    {
        using var dir = new TempSocketDirectory();
        await using var server = await StartAsync(dir.Socket("b"), Digest());
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = server.SocketPath });
        var body = Payload(5_000);
        using var writer = new FrameWriter();
        writer.BeginRequest(client.NextCorrelationId(), 1, 0, "POST", "/whole");
        writer.WriteBody(body);

        using var reply = await client.SendAsync(writer.Complete(), HangGuard).WaitAsync(HangGuard);

        Assert.Equal($"False 5000 {Convert.ToHexString(SHA256.HashData(body))}", Encoding.UTF8.GetString(reply.Response.Body));
    }

    [Fact]
    public async Task UploadEchoedAsAStream_BothDirectionsFlowAtOnce()
    {
        // The handler streams the upload back while it arrives: neither side buffers the whole body.
        using var dir = new TempSocketDirectory();
        await using var server = await StartAsync(dir.Socket("b"), (request, token) => ValueTask.FromResult(BackendResponse.Stream(
            (reply, ct) => request.BodyStream.CopyToAsync(reply, 7_000, ct))), window: 20_000);
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = server.SocketPath, StreamWindowBytes = 20_000 });
        var body = Payload(1_000_000);

        using var reply = await client.SendStreamedAsync(Head(client, acceptStream: true), new MemoryStream(body), HangGuard).WaitAsync(HangGuard);

        Assert.True(reply.IsStreamed);
        using var received = new MemoryStream();
        while (await reply.Stream!.ReadChunkAsync().AsTask().WaitAsync(HangGuard) is { IsEmpty: false } chunk)
        {
            received.Write(chunk.Span);
        }

        Assert.Equal(body, received.ToArray());
    }

    [Fact]
    public async Task EarlyReply_EndsTheUpload_TheRestOfTheBodyIsNeverRead()
    {
        using var dir = new TempSocketDirectory();
        await using var server = await StartAsync(dir.Socket("b"), async (request, token) =>
        {
            var first = new byte[10];
            await request.BodyStream.ReadExactlyAsync(first, token);
            return BackendResponse.Text("enough", status: 413);
        }, window: 16_384);
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = server.SocketPath });
        var endless = new EndlessStream();

        using var reply = await client.SendStreamedAsync(Head(client), endless, HangGuard).WaitAsync(HangGuard);

        Assert.Equal(413, reply.Response.Status);
        // Never more than the credit the backend granted: the first window, plus at most one more grant it may have made.
        Assert.InRange(client.Statistics.UploadBytesSent, 10, 2 * 16_384);
        await Eventually.UntilAsync(() => server.Statistics.Executed == 1 && endless.Reads >= 1, HangGuard, TimeSpan.FromMilliseconds(10));
    }

    [Fact]
    public async Task BackendThatDoesNotAcceptUploads_AnswersRequestHeadWithMalformed()
    {
        using var dir = new TempSocketDirectory();
        await using var server = await StartAsync(dir.Socket("b"), Digest(), accept: false);
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = server.SocketPath });

        using var reply = await client.SendStreamedAsync(Head(client), new MemoryStream(Payload(100)), HangGuard).WaitAsync(HangGuard);

        Assert.Equal(MessageKind.Error, reply.Kind);
        Assert.Equal(IpcErrorCode.Malformed, reply.Error.Code);
        Assert.Contains("STREAM_REQUEST", reply.Error.GetMessage(), StringComparison.Ordinal);
        Assert.Equal(0, server.Statistics.Executed);
    }

    [Fact]
    public async Task BodySourceFails_TheCallerGetsItsException_AndTheBackendIsCancelled()
    {
        using var dir = new TempSocketDirectory();
        var handlerSaw = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await StartAsync(dir.Socket("b"), async (request, token) =>
        {
            try
            {
                await request.BodyStream.CopyToAsync(Stream.Null, token);
                return BackendResponse.Text("complete?");
            }
            catch (Exception ex)
            {
                handlerSaw.TrySetResult(ex);
                throw;
            }
        });
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = server.SocketPath });
        var failing = new FailingStream(afterBytes: 70_000, new IOException("the caller's body broke"));

        var ex = await Assert.ThrowsAsync<IOException>(() => client.SendStreamedAsync(Head(client), failing, HangGuard).WaitAsync(HangGuard));

        Assert.Equal("the caller's body broke", ex.Message);
        Assert.IsAssignableFrom<OperationCanceledException>(await handlerSaw.Task.WaitAsync(HangGuard));
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task CallerCancels_WhileTheBodyWaits_TheRequestIsCancelledAtTheBackend()
    {
        using var dir = new TempSocketDirectory();
        var handlerSaw = new TaskCompletionSource<Exception>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var server = await StartAsync(dir.Socket("b"), async (request, token) =>
        {
            try
            {
                // No token: the upload's own abort must end the read.
                await request.BodyStream.CopyToAsync(Stream.Null, CancellationToken.None);
                return BackendResponse.Text("complete?");
            }
            catch (Exception ex)
            {
                handlerSaw.TrySetResult(ex);
                throw;
            }
        });
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = server.SocketPath });
        var stalled = new StallingStream(firstBytes: 1_000);
        using var caller = new CancellationTokenSource();

        var send = client.SendStreamedAsync(Head(client), stalled, HangGuard, caller.Token);
        await stalled.Stalled.WaitAsync(HangGuard);
        await Eventually.UntilAsync(() => server.Statistics.UploadChunks == 1, HangGuard, TimeSpan.FromMilliseconds(10));
        caller.Cancel();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => send.WaitAsync(HangGuard));
        Assert.IsAssignableFrom<OperationCanceledException>(await handlerSaw.Task.WaitAsync(HangGuard));
    }

    [Fact]
    public async Task NoCredit_TimesOutAfterTheTimeout_AndCancels()
    {
        using var dir = new TempSocketDirectory();
        var time = new FakeTimeProvider();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = backend.Path }, time);

        var send = client.SendStreamedAsync(Head(client), new MemoryStream(Payload(10)), TimeSpan.FromSeconds(5));
        var head = await backend.ReceiveAsync();
        Assert.Equal(MessageKind.RequestHead, head.Header.Kind);
        time.Advance(TimeSpan.FromSeconds(4));
        Assert.False(send.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(1));

        var ex = await Assert.ThrowsAsync<DatagramException>(() => send.WaitAsync(HangGuard));
        Assert.Equal(DatagramFailure.Timeout, ex.Failure);
        Assert.Equal(0, client.Statistics.UploadChunksSent);
    }

    [Fact]
    public async Task Client_KeepsToTheCredit_SplitsToFit_AndEndsWithTheChunkCount()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = backend.Path });
        var body = Payload(250);

        var send = client.SendStreamedAsync(Head(client), new MemoryStream(body), HangGuard);
        var head = await backend.ReceiveAsync();
        var cid = head.Header.CorrelationId;
        Assert.True(RequestView.Read(head.Payload).Body.IsEmpty);

        using var writer = new FrameWriter();
        var received = new List<byte>();
        uint expected = 0;
        foreach (var grant in new uint[] { 100, 100, 100 })
        {
            writer.WriteStreamControl(MessageKind.Credit, cid, 1, grant);
            await backend.SendRawAsync(writer.WrittenMemory.ToArray(), head.Sender);
            var granted = (int)grant;
            while (granted > 0 && received.Count < body.Length)
            {
                var chunk = await backend.ReceiveAsync();
                Assert.Equal(MessageKind.Chunk, chunk.Header.Kind);
                var data = StreamFrames.ReadChunk(chunk.Payload, out var sequence).ToArray();
                Assert.Equal(expected++, sequence);
                Assert.InRange(data.Length, 1, granted);
                granted -= data.Length;
                received.AddRange(data);
            }
        }

        var end = await backend.ReceiveAsync();
        Assert.Equal(MessageKind.End, end.Header.Kind);
        Assert.Equal(expected, StreamFrames.ReadEnd(end.Payload));
        Assert.Equal(body, received.ToArray());
        Assert.False(send.IsCompleted);

        await backend.ReplyAsync(head, 201, "stored"u8.ToArray());
        using var reply = await send.WaitAsync(HangGuard);
        Assert.Equal(201, reply.Response.Status);
    }

    [Theory]
    [InlineData("beyond-credit")]
    [InlineData("sequence")]
    [InlineData("end-count")]
    public async Task ClientBreaksTheUpload_BackendAnswersMalformed(string breach)
    {
        using var dir = new TempSocketDirectory();
        await using var server = await StartAsync(dir.Socket("b"), Digest(), window: 1_000);
        using var client = new TestClient(server.SocketPath);
        using var writer = new FrameWriter();
        writer.BeginRequestHead(77, 1, 0, "POST", "/upload");
        client.SendRaw(writer.Complete().Span);
        var credit = await client.ReceiveAsync();
        Assert.Equal(MessageKind.Credit, credit.Header.Kind);
        Assert.Equal(1_000u, StreamFrames.ReadCredit(credit.Payload));

        switch (breach)
        {
            case "beyond-credit":
                writer.WriteChunk(77, 1, 0, new byte[1_001]);
                client.SendRaw(writer.WrittenSpan);
                break;
            case "sequence":
                writer.WriteChunk(77, 1, 1, new byte[10]);
                client.SendRaw(writer.WrittenSpan);
                break;
            default:
                writer.WriteChunk(77, 1, 0, new byte[10]);
                client.SendRaw(writer.WrittenSpan);
                writer.WriteStreamControl(MessageKind.End, 77, 1, 2);
                client.SendRaw(writer.WrittenSpan);
                break;
        }

        var reply = await client.ReceiveAsync();
        Assert.Equal(MessageKind.Error, reply.Header.Kind);
        Assert.Equal(IpcErrorCode.Malformed, reply.ErrorCode);
        Assert.Contains("streamed request body", reply.ErrorMessage, StringComparison.Ordinal);

        // The handler's ERROR can go out before the receive loop counts the violation: the PONG proves the loop is past it.
        await client.BarrierAsync();
        Assert.Equal(1, server.Statistics.UploadViolations);
    }

    [Fact]
    public async Task RequestHeadWithBodyBytes_IsMalformed_AndNotExecuted()
    {
        using var dir = new TempSocketDirectory();
        await using var server = await StartAsync(dir.Socket("b"), Digest());
        using var client = new TestClient(server.SocketPath);
        using var writer = new FrameWriter();
        writer.BeginRequestHead(78, 1, 0, "POST", "/upload");
        writer.WriteBody("x"u8);
        client.SendRaw(writer.Complete().Span);

        var reply = await client.ReceiveAsync();

        Assert.Equal(IpcErrorCode.Malformed, reply.ErrorCode);
        Assert.Contains("no body bytes", reply.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(0, server.Statistics.Executed);
    }

    private sealed class EndlessStream : Stream
    {
        private int _reads;

        public int Reads => Volatile.Read(ref _reads);

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            Interlocked.Increment(ref _reads);
            buffer.AsSpan(offset, count).Fill(0x5a);
            return count;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    private sealed class FailingStream(int afterBytes, Exception failure) : Stream
    {
        private int _left = afterBytes;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count)
        {
            if (_left == 0)
            {
                throw failure;
            }

            var n = Math.Min(count, _left);
            _left -= n;
            return n;
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    /// <summary>Gives <c>firstBytes</c>, then waits until its read is cancelled.</summary>
    private sealed class StallingStream(int firstBytes) : Stream
    {
        private readonly TaskCompletionSource _stalled = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private bool _gave;

        public Task Stalled => _stalled.Task;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (!_gave)
            {
                _gave = true;
                return Math.Min(buffer.Length, firstBytes);
            }

            _stalled.TrySetResult();
            await Task.Delay(Timeout.Infinite, cancellationToken);
            return 0;
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
