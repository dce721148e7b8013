using System.Net;
using System.Net.Sockets;
using System.Text;
using Gateway.Ipc.Client;
using Gateway.Ipc.Diagnostics;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Tests.Backend;
using Gateway.Ipc.Tests.Transport;
using Gateway.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Ipc.Tests.Client;

public class DatagramClientTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Infinite = Timeout.InfiniteTimeSpan;

    private static byte[] Request(ulong correlationId, byte[] body, ushort attempt = 1) =>
        Request(correlationId, body, attempt, "/echo");

    private static byte[] Request(ulong correlationId, byte[] body, ushort attempt, string target)
    {
        using var writer = new FrameWriter();
        writer.BeginRequest(correlationId, attempt, 0, "POST", target);
        writer.WriteBody(body);
        return writer.Complete().ToArray();
    }

    private static DatagramClient Client(string backendPath, TimeProvider? time = null, TimeSpan? sendTimeout = null, int? maxMessageBytes = null, string? replyPath = null) =>
        new(new DatagramClientOptions
        {
            BackendPath = backendPath,
            ReplyPath = replyPath,
            SendTimeout = sendTimeout ?? TimeSpan.FromSeconds(30),
            MaxMessageBytes = maxMessageBytes ?? ProtocolConstants.DefaultMaxMessageBytes,
        }, time);

    private static SocketAddress AddressOf(DatagramClient client) =>
        new UnixDomainSocketEndPoint(client.LocalAddress.StartsWith('@') ? "\0" + client.LocalAddress[1..] : client.LocalAddress).Serialize();

    /// <summary>
    /// A PING round trip: the backend answers it after everything it sent before, and the client's single loop
    /// handles datagrams in order, so once the PONG is in, every earlier datagram has been processed.
    /// </summary>
    private static async Task BarrierAsync(DatagramClient client) =>
        Assert.True(await client.PingAsync(Infinite).WaitAsync(HangGuard));

    [Fact]
    public async Task SendAsync_EchoBackend_ReturnsResponseWithHeaderFields()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path);
        var id = client.NextCorrelationId();

        var send = client.SendAsync(Request(id, "hello"u8.ToArray(), attempt: 2), Infinite);
        var request = await backend.ReceiveAsync();
        await backend.ReplyAsync(request, 201, request.Body, flags: MessageFlags.Replay);
        using var reply = await send.WaitAsync(HangGuard);

        Assert.Equal(MessageKind.Response, reply.Kind);
        Assert.Equal(id, reply.CorrelationId);
        Assert.Equal(2, reply.Attempt);
        Assert.Equal(MessageFlags.Replay, reply.Flags);
        Assert.Equal(201, reply.Response.Status);
        Assert.Equal("hello", Encoding.UTF8.GetString(reply.Response.Body));
        Assert.Equal("application/octet-stream", reply.Response.Headers.GetValue("content-type"));
        Assert.Equal(0, client.PendingCount);
        Assert.Equal(1, client.Statistics.RequestsSent);
        Assert.Equal(1, client.Statistics.RepliesReceived);
    }

    [Fact]
    public async Task SendAsync_1000ConcurrentRequestsAnsweredInShuffledOrder_EachGetsItsOwnReply()
    {
        const int Count = 1000;
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path);
        var ids = new ulong[Count];
        var sends = new Task<DatagramReply>[Count];
        for (var i = 0; i < Count; i++)
        {
            ids[i] = client.NextCorrelationId();
            sends[i] = client.SendAsync(Request(ids[i], Encoding.ASCII.GetBytes($"request-{i}")), Infinite);
        }

        var received = new List<ReceivedMessage>(Count);
        for (var i = 0; i < Count; i++)
        {
            received.Add(await backend.ReceiveAsync());
        }

        Assert.Equal(Count, client.PendingCount);
        var order = received.ToArray();
        new Random(42).Shuffle(order);
        foreach (var request in order)
        {
            await backend.ReplyAsync(request, 200, Encoding.ASCII.GetBytes("reply-to-" + Encoding.ASCII.GetString(request.Body)));
        }

        for (var i = 0; i < Count; i++)
        {
            using var reply = await sends[i].WaitAsync(HangGuard);
            Assert.Equal(ids[i], reply.CorrelationId);
            Assert.Equal($"reply-to-request-{i}", Encoding.ASCII.GetString(reply.Response.Body));
        }

        Assert.Equal(0, client.PendingCount);
        Assert.Equal(Count, client.Statistics.RepliesReceived);
        Assert.Equal(0, client.Statistics.LateReplies);
    }

    [Fact]
    public async Task SendAsync_NoReplyWithinTimeout_TimeoutFailureAndEntryRemoved()
    {
        using var dir = new TempSocketDirectory();
        var time = new FakeTimeProvider();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path, time);

        var send = client.SendAsync(Request(client.NextCorrelationId(), []), TimeSpan.FromSeconds(5));
        await backend.ReceiveAsync();
        time.Advance(TimeSpan.FromSeconds(4));
        var pendingBeforeTimeout = !send.IsCompleted;
        time.Advance(TimeSpan.FromSeconds(1));
        var ex = await Assert.ThrowsAsync<DatagramException>(() => send.WaitAsync(HangGuard));

        Assert.True(pendingBeforeTimeout);
        Assert.Equal(DatagramFailure.Timeout, ex.Failure);
        Assert.Equal(backend.Path, ex.BackendPath);
        Assert.Equal(0, client.PendingCount);
        Assert.Equal(1, client.Statistics.Timeouts);
    }

    [Fact]
    public async Task SendAsync_ReplyAfterTimeout_CountedLateAndDropped()
    {
        using var dir = new TempSocketDirectory();
        var time = new FakeTimeProvider();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path, time);
        var send = client.SendAsync(Request(client.NextCorrelationId(), []), TimeSpan.FromSeconds(5));
        var request = await backend.ReceiveAsync();
        time.Advance(TimeSpan.FromSeconds(5));
        await Assert.ThrowsAsync<DatagramException>(() => send.WaitAsync(HangGuard));

        await backend.ReplyAsync(request, 200, "too late"u8.ToArray());
        await BarrierAsync(client);

        Assert.Equal(1, client.Statistics.LateReplies);
        Assert.Equal(1, client.Statistics.RepliesReceived); // the PONG only
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendAsync_DuplicateReply_FirstWinsSecondCountedLate()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path);
        var send = client.SendAsync(Request(client.NextCorrelationId(), []), Infinite);
        var request = await backend.ReceiveAsync();

        await backend.ReplyAsync(request, 200, "first"u8.ToArray());
        await backend.ReplyAsync(request, 200, "second"u8.ToArray());
        using var reply = await send.WaitAsync(HangGuard);
        await BarrierAsync(client);

        Assert.Equal("first", Encoding.UTF8.GetString(reply.Response.Body));
        Assert.Equal(1, client.Statistics.LateReplies);
        Assert.Equal(0, client.PendingCount);
    }

    /// <summary>docs/protocol.md §3 and §7: a reply's reserved byte and budget_ms are ignored, not grounds to drop it.</summary>
    [Fact]
    public async Task Reply_WithNonZeroReservedAndBudget_IsAccepted()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path);
        var send = client.SendAsync(Request(client.NextCorrelationId(), []), Infinite);
        var request = await backend.ReceiveAsync();

        using var writer = new FrameWriter();
        writer.BeginResponse(request.Header.CorrelationId, request.Header.Attempt, 200);
        writer.WriteBody("ok"u8);
        var reply = writer.Complete().ToArray();
        reply[5] = 0x5a; // reserved
        FrameHeader.PatchBudget(reply, 4321);
        await backend.SendRawAsync(reply, request.Sender);
        using var response = await send.WaitAsync(HangGuard);

        Assert.Equal(200, response.Response.Status);
        Assert.Equal("ok", Encoding.UTF8.GetString(response.Response.Body));
        Assert.Equal(0, client.Statistics.MalformedDatagrams);
    }

    [Fact]
    public async Task SpoofedFlood_LogsOneWarningPerInterval_TheRestAtDebug_AndTheNextWarningCountsThem()
    {
        using var dir = new TempSocketDirectory();
        var time = new FakeTimeProvider();
        var logs = new LogCapture();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = backend.Path }, time, logs);
        using var impostor = DatagramSenderTests.BoundSocket(dir.Socket("impostor"));

        for (var i = 0; i < 30; i++)
        {
            await impostor.SendToAsync("spoofed"u8.ToArray(), SocketFlags.None, AddressOf(client));
        }

        await BarrierAsync(client);
        time.Advance(DropLogThrottle.Interval);
        await impostor.SendToAsync("spoofed"u8.ToArray(), SocketFlags.None, AddressOf(client));
        await BarrierAsync(client);

        var spoofed = logs.Events.Where(e => e.EventId == 2103).ToList();
        Assert.Equal(31, client.Statistics.SpoofedReplies);
        Assert.Equal(31, spoofed.Count);
        Assert.Equal(2, spoofed.Count(e => e.Level == LogLevel.Warning));
        Assert.Equal(29, spoofed.Count(e => e.Level == LogLevel.Debug));
        var summary = Assert.Single(logs.Events, e => e.EventId == 2117);
        Assert.Equal(LogLevel.Warning, summary.Level);
        Assert.StartsWith("29 more datagrams", summary.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SendAsync_ReplyFromAnotherSocket_DroppedAsSpoofedWhileRealReplyCompletes()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path);
        using var impostor = DatagramSenderTests.BoundSocket(dir.Socket("impostor"));
        var id = client.NextCorrelationId();
        var send = client.SendAsync(Request(id, []), Infinite);
        var request = await backend.ReceiveAsync();

        using (var writer = new FrameWriter())
        {
            writer.BeginResponse(id, 1, 200);
            writer.WriteBody("spoofed"u8);
            await impostor.SendToAsync(writer.Complete(), SocketFlags.None, AddressOf(client));
        }

        // The spoofed datagram is queued before the real reply, so the client handles it first.
        await backend.ReplyAsync(request, 200, "real"u8.ToArray());
        using var reply = await send.WaitAsync(HangGuard);

        Assert.Equal("real", Encoding.UTF8.GetString(reply.Response.Body));
        Assert.Equal(1, client.Statistics.SpoofedReplies);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendAsync_CallerCancels_OperationCanceledNotTimeout()
    {
        using var dir = new TempSocketDirectory();
        var time = new FakeTimeProvider();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path, time);
        using var cts = new CancellationTokenSource();
        var send = client.SendAsync(Request(client.NextCorrelationId(), []), TimeSpan.FromSeconds(5), cts.Token);
        await backend.ReceiveAsync();

        await cts.CancelAsync();
        var ex = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => send.WaitAsync(HangGuard));
        time.Advance(TimeSpan.FromSeconds(10));

        Assert.Equal(cts.Token, ex.CancellationToken);
        Assert.Equal(0, client.Statistics.Timeouts);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendAsync_AlreadyCanceledToken_CanceledWithoutSending()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path);

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => client.SendAsync(Request(client.NextCorrelationId(), []), Infinite, new CancellationToken(true)));

        Assert.Equal(0, client.Statistics.RequestsSent);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendAsync_NoBackendSocketFile_BackendAbsent()
    {
        using var dir = new TempSocketDirectory();
        await using var client = Client(dir.Socket("missing"));

        var ex = await Assert.ThrowsAsync<DatagramException>(() => client.SendAsync(Request(client.NextCorrelationId(), []), Infinite).WaitAsync(HangGuard));

        Assert.Equal(DatagramFailure.BackendAbsent, ex.Failure);
        Assert.Equal(1, client.Statistics.SendFailures);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendAsync_StaleBackendSocketFile_BackendAbsent()
    {
        using var dir = new TempSocketDirectory();
        DatagramSenderTests.CreateStaleSocketFile(dir.Socket("stale"));
        await using var client = Client(dir.Socket("stale"));

        var ex = await Assert.ThrowsAsync<DatagramException>(() => client.SendAsync(Request(client.NextCorrelationId(), []), Infinite).WaitAsync(HangGuard));

        Assert.Equal(DatagramFailure.BackendAbsent, ex.Failure);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendAsync_StalledBackend_OverloadedAfterSendTimeout_WhileOtherClientKeepsWorking()
    {
        const int Count = 32;
        using var dir = new TempSocketDirectory();
        using var stalled = DatagramSenderTests.BoundSocket(dir.Socket("stalled"));
        await using var healthy = new FakeBackend(dir.Socket("healthy"));
        healthy.StartEcho();
        var time = new FakeTimeProvider();
        var stalledClient = Client(dir.Socket("stalled"), time, sendTimeout: TimeSpan.FromSeconds(1));
        await using var healthyClient = Client(healthy.Path);

        // The first requests fill the stalled backend's queue; the rest wait in a send.
        var stalledSends = new Task<DatagramReply>[Count];
        for (var i = 0; i < Count; i++)
        {
            stalledSends[i] = stalledClient.SendAsync(Request(stalledClient.NextCorrelationId(), []), Infinite);
        }

        var queued = (int)stalledClient.Statistics.RequestsSent;
        Assert.InRange(queued, 1, Count - 1);

        for (var i = 0; i < 10; i++)
        {
            using var reply = await healthyClient.SendAsync(Request(healthyClient.NextCorrelationId(), [(byte)i]), Infinite).WaitAsync(HangGuard);
            Assert.Equal([(byte)i], reply.Response.Body.ToArray());
        }

        Assert.All(stalledSends, send => Assert.False(send.IsCompleted));
        Assert.Equal(Count, stalledClient.PendingCount);

        time.Advance(TimeSpan.FromSeconds(1));
        for (var i = queued; i < Count; i++)
        {
            var ex = await Assert.ThrowsAsync<DatagramException>(() => stalledSends[i].WaitAsync(HangGuard));
            Assert.Equal(DatagramFailure.BackendOverloaded, ex.Failure);
        }

        Assert.Equal(Count - queued, stalledClient.Statistics.SendFailures);
        Assert.Equal(queued, stalledClient.PendingCount);

        await stalledClient.DisposeAsync();
        for (var i = 0; i < queued; i++)
        {
            var ex = await Assert.ThrowsAsync<DatagramException>(() => stalledSends[i].WaitAsync(HangGuard));
            Assert.Equal(DatagramFailure.Closed, ex.Failure);
        }

        Assert.Equal(0, stalledClient.PendingCount);
        Assert.Equal(0, healthyClient.PendingCount);
    }

    /// <summary>Fills the stalled backend's queue through <paramref name="client"/>; returns the requests left pending.</summary>
    private static List<Task<DatagramReply>> FillQueue(DatagramClient client)
    {
        var sends = new List<Task<DatagramReply>>();
        long sent;
        do
        {
            sent = client.Statistics.RequestsSent;
            sends.Add(client.SendAsync(Request(client.NextCorrelationId(), []), Infinite));
        }
        while (client.Statistics.RequestsSent > sent && sends.Count < 1000);

        // The last request is waiting in a send; drop it from the list of queued ones.
        sends.RemoveAt(sends.Count - 1);
        return sends;
    }

    [Fact]
    public async Task SendAsync_ReplyTimeoutWhileSendWaitsOnFullQueue_TimeoutNotOverloaded()
    {
        using var dir = new TempSocketDirectory();
        using var stalled = DatagramSenderTests.BoundSocket(dir.Socket("stalled"));
        var time = new FakeTimeProvider();
        var client = Client(dir.Socket("stalled"), time, sendTimeout: TimeSpan.FromSeconds(1));
        var queued = FillQueue(client);

        var waiting = client.SendAsync(Request(client.NextCorrelationId(), []), TimeSpan.FromMilliseconds(500));
        var sentBefore = client.Statistics.RequestsSent;
        time.Advance(TimeSpan.FromMilliseconds(500));
        var ex = await Assert.ThrowsAsync<DatagramException>(() => waiting.WaitAsync(HangGuard));

        Assert.Equal(DatagramFailure.Timeout, ex.Failure);
        Assert.Equal(sentBefore, client.Statistics.RequestsSent);
        Assert.Equal(0, client.Statistics.SendFailures);
        await client.DisposeAsync();
        await Assert.ThrowsAsync<DatagramException>(() => Task.WhenAll(queued).WaitAsync(HangGuard));
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendAsync_InfiniteSendTimeout_WaitsOnFullQueueUntilCallerCancels()
    {
        using var dir = new TempSocketDirectory();
        using var stalled = DatagramSenderTests.BoundSocket(dir.Socket("stalled"));
        var time = new FakeTimeProvider();
        var client = Client(dir.Socket("stalled"), time, sendTimeout: Infinite);
        var queued = FillQueue(client);
        using var cts = new CancellationTokenSource();

        var waiting = client.SendAsync(Request(client.NextCorrelationId(), []), Infinite, cts.Token);
        time.Advance(TimeSpan.FromDays(1));
        var pendingAfterADay = !waiting.IsCompleted;
        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => waiting.WaitAsync(HangGuard));

        Assert.True(pendingAfterADay);
        Assert.Equal(0, client.Statistics.SendFailures);
        await client.DisposeAsync();
        await Assert.ThrowsAsync<DatagramException>(() => Task.WhenAll(queued).WaitAsync(HangGuard));
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendAsync_5MiBRequestAnd5MiBReply_RoundTripFragmented()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        backend.StartEcho();
        await using var client = Client(backend.Path);
        var body = new byte[5 * 1024 * 1024];
        new Random(7).NextBytes(body);

        using var reply = await client.SendAsync(Request(client.NextCorrelationId(), body), Infinite).WaitAsync(HangGuard);

        Assert.Equal(200, reply.Response.Status);
        Assert.True(body.AsSpan().SequenceEqual(reply.Response.Body));
        Assert.True(client.Statistics.FragmentsReceived >= 25);
        Assert.Equal(0, client.Statistics.ReassemblyDropped);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendAsync_FragmentedReplyLargerThanMaxMessageBytes_TooLarge()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path, maxMessageBytes: 300_000);
        var send = client.SendAsync(Request(client.NextCorrelationId(), []), Infinite);
        var request = await backend.ReceiveAsync();

        await backend.ReplyAsync(request, 200, new byte[1_000_000]);
        var ex = await Assert.ThrowsAsync<DatagramException>(() => send.WaitAsync(HangGuard));
        await BarrierAsync(client);

        Assert.Equal(DatagramFailure.TooLarge, ex.Failure);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendAsync_RequestLargerThanMaxMessageBytes_TooLargeWithoutSending()
    {
        using var dir = new TempSocketDirectory();
        await using var client = Client(dir.Socket("missing"), maxMessageBytes: 1000);

        var ex = await Assert.ThrowsAsync<DatagramException>(() => client.SendAsync(Request(client.NextCorrelationId(), new byte[1000]), Infinite));

        Assert.Equal(DatagramFailure.TooLarge, ex.Failure);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendAsync_ResponsePayloadBreaksRules_MalformedReply()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path);
        var id = client.NextCorrelationId();
        var send = client.SendAsync(Request(id, []), Infinite);
        var request = await backend.ReceiveAsync();

        // A RESPONSE with status 100 (1xx is not allowed) and no header count.
        var datagram = new byte[ProtocolConstants.HeaderSize + 2];
        new FrameHeader(MessageKind.Response, MessageFlags.None, 1, id, 0, 2).Write(datagram);
        datagram[^1] = 100;
        await backend.SendRawAsync(datagram, request.Sender);
        var ex = await Assert.ThrowsAsync<DatagramException>(() => send.WaitAsync(HangGuard));

        Assert.Equal(DatagramFailure.MalformedReply, ex.Failure);
        Assert.IsType<ProtocolException>(ex.InnerException);
        Assert.Equal(1, client.Statistics.MalformedDatagrams);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendAsync_ErrorReply_ReturnedWithErrorView()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path);
        var send = client.SendAsync(Request(client.NextCorrelationId(), []), Infinite);
        var request = await backend.ReceiveAsync();

        await backend.ReplyErrorAsync(request, IpcErrorCode.Overloaded, "busy");
        using var reply = await send.WaitAsync(HangGuard);

        Assert.Equal(MessageKind.Error, reply.Kind);
        Assert.Equal(IpcErrorCode.Overloaded, reply.Error.Code);
        Assert.Equal("busy", reply.Error.GetMessage());
        Assert.Throws<InvalidOperationException>(() => _ = reply.Response.Status);
    }

    [Fact]
    public async Task ReceiveLoop_GarbageAndOversizedDatagramsFromBackend_DroppedAndCountedLoopSurvives()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path);
        backend.Socket.SendBufferSize = 1024 * 1024;
        var to = AddressOf(client);

        await backend.SendRawAsync(new byte[] { 1, 2, 3 }, to);
        await backend.SendRawAsync(Encoding.ASCII.GetBytes("XX not a gateway datagram at all"), to);
        await backend.SendRawAsync(new byte[ProtocolConstants.MaxDatagram + 1], to);
        var ping = new byte[ProtocolConstants.HeaderSize];
        new FrameHeader(MessageKind.Ping, MessageFlags.None, 0, 5, 0, 0).Write(ping);
        await backend.SendRawAsync(ping, to); // a kind a client does not accept
        await BarrierAsync(client);

        Assert.Equal(3, client.Statistics.MalformedDatagrams);
        Assert.Equal(1, client.Statistics.OversizedDatagrams);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task PingAsync_BackendAnswers_True()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path);

        Assert.True(await client.PingAsync(TimeSpan.FromSeconds(30)).WaitAsync(HangGuard));
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task PingAsync_NoPongInTime_False()
    {
        using var dir = new TempSocketDirectory();
        var time = new FakeTimeProvider();
        await using var backend = new FakeBackend(dir.Socket("b"), answerPings: false);
        await using var client = Client(backend.Path, time);

        var ping = client.PingAsync(TimeSpan.FromSeconds(2));
        time.Advance(TimeSpan.FromSeconds(2));

        Assert.False(await ping.WaitAsync(HangGuard));
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task PingAsync_NoBackend_False()
    {
        using var dir = new TempSocketDirectory();
        await using var client = Client(dir.Socket("missing"));

        Assert.False(await client.PingAsync(Infinite).WaitAsync(HangGuard));
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task Dispose_PendingRequest_FailsWithClosed()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        var client = Client(backend.Path);
        var send = client.SendAsync(Request(client.NextCorrelationId(), []), Infinite);
        await backend.ReceiveAsync();

        await client.DisposeAsync();
        var ex = await Assert.ThrowsAsync<DatagramException>(() => send.WaitAsync(HangGuard));
        var after = await Assert.ThrowsAsync<DatagramException>(() => client.SendAsync(Request(client.NextCorrelationId(), []), Infinite));

        Assert.Equal(DatagramFailure.Closed, ex.Failure);
        Assert.Equal(DatagramFailure.Closed, after.Failure);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendAsync_CorrelationIdAlreadyPending_InvalidOperation()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path);
        var id = client.NextCorrelationId();
        var first = client.SendAsync(Request(id, []), Infinite);
        var request = await backend.ReceiveAsync();

        await Assert.ThrowsAsync<InvalidOperationException>(() => client.SendAsync(Request(id, [], attempt: 2), Infinite));
        await backend.ReplyAsync(request, 200, "ok"u8.ToArray());
        using var reply = await first.WaitAsync(HangGuard);

        Assert.Equal("ok", Encoding.UTF8.GetString(reply.Response.Body));
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task SendCancel_BackendReceivesCancelForTheId()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path);

        client.SendCancel(1234);
        var cancel = await backend.ReceiveAsync();

        Assert.Equal(MessageKind.Cancel, cancel.Header.Kind);
        Assert.Equal(1234UL, cancel.Header.CorrelationId);
        Assert.Empty(cancel.Payload);
    }

    [Fact]
    public async Task SendCancel_NoBackend_DoesNotThrow()
    {
        using var dir = new TempSocketDirectory();
        await using var client = Client(dir.Socket("missing"));

        client.SendCancel(1234);
        await client.DisposeAsync();
        client.SendCancel(1234);

        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task LocalAddress_Default_IsUniqueAbstractName()
    {
        using var dir = new TempSocketDirectory();
        await using var a = Client(dir.Socket("b"));
        await using var b = Client(dir.Socket("b"));

        Assert.StartsWith("@gw-", a.LocalAddress);
        Assert.NotEqual(a.LocalAddress, b.LocalAddress);
        Assert.Empty(Directory.GetFileSystemEntries(dir.Path));
    }

    [Fact]
    public async Task ReplyPath_RepliesArriveAndFileIsRemovedOnDispose()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        backend.StartEcho();
        var replyPath = dir.Socket("reply");
        var client = Client(backend.Path, replyPath: replyPath);

        using (var reply = await client.SendAsync(Request(client.NextCorrelationId(), [1]), Infinite).WaitAsync(HangGuard))
        {
            Assert.Equal(200, reply.Response.Status);
        }

        Assert.Equal(replyPath, client.LocalAddress);
        Assert.True(File.Exists(replyPath));
        await client.DisposeAsync();
        Assert.False(File.Exists(replyPath));
    }

    [Fact]
    public async Task ReplyPath_ReboundByAnotherSocket_LeftInPlaceOnDispose()
    {
        using var dir = new TempSocketDirectory();
        var replyPath = dir.Socket("reply");
        var client = Client(dir.Socket("b"), replyPath: replyPath);
        File.Delete(replyPath);
        using var other = DatagramSenderTests.BoundSocket(replyPath);

        await client.DisposeAsync();

        Assert.True(File.Exists(replyPath));
    }

    [Fact]
    public void Constructor_ReplyPathExists_Throws()
    {
        using var dir = new TempSocketDirectory();
        var replyPath = dir.Socket("reply");
        File.WriteAllText(replyPath, "");

        var ex = Assert.Throws<SocketException>(() => Client(dir.Socket("b"), replyPath: replyPath));

        Assert.Equal(SocketError.AddressAlreadyInUse, ex.SocketErrorCode);
    }

    [Fact]
    public void Constructor_NoBackendPath_Throws()
    {
        Assert.Throws<ArgumentException>(() => new DatagramClient(new DatagramClientOptions()));
    }

    [Fact]
    public async Task NextCorrelationId_NeverZeroAndIncreasing()
    {
        using var dir = new TempSocketDirectory();
        await using var client = Client(dir.Socket("b"));

        var first = client.NextCorrelationId();
        var second = client.NextCorrelationId();

        Assert.NotEqual(0UL, first);
        Assert.Equal(first == ulong.MaxValue ? 1UL : first + 1, second);
    }
}
