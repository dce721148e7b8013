using System.Collections.Concurrent;
using System.Net.Sockets;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Diagnostics;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Transport;
using Gateway.Testing;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Ipc.Tests.Backend;

public sealed class DatagramBackendServerTests : IAsyncLifetime
{
    private const string TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    private readonly TempSocketDirectory _dir = new();
    private readonly LogCapture _logs = new();
    private readonly List<DatagramBackendServer> _servers = [];

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        foreach (var server in _servers)
        {
            await server.DisposeAsync();
        }

        _dir.Dispose();
    }

    [Fact]
    public async Task Request_IsAnsweredWithSameIdAndAttempt_AndDecodedForTheHandler()
    {
        BackendRequest? seen = null;
        var server = await StartAsync((request, _) =>
        {
            seen = request;
            return ValueTask.FromResult(BackendResponse.Text("hi " + request.Path, 201));
        });
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(0x0102030405060708, attempt: 3, budgetMs: 0, method: "POST", target: "/a/b?x=1&y=%20", headers: [("X-One", "1"), ("x-two", "zwei ü")], body: [1, 2, 3], traceParent: TraceParent);
        var reply = await client.ReceiveAsync();

        Assert.Equal(MessageKind.Response, reply.Header.Kind);
        Assert.Equal(0x0102030405060708UL, reply.Header.CorrelationId);
        Assert.Equal(3, reply.Header.Attempt);
        Assert.Equal(MessageFlags.None, reply.Header.Flags);
        Assert.Equal(201, reply.Status);
        Assert.Equal("hi /a/b", reply.BodyText);
        Assert.Equal(BackendResponse.TextContentType, reply.GetHeader("content-type"));
        Assert.Equal(Path.GetFullPath(server.SocketPath), reply.From);

        Assert.NotNull(seen);
        Assert.Equal("POST", seen.Method);
        Assert.Equal("/a/b?x=1&y=%20", seen.Target);
        Assert.Equal("/a/b", seen.Path);
        Assert.Equal("x=1&y=%20", seen.Query);
        Assert.Equal([new("x-one", "1"), new("x-two", "zwei ü")], seen.Headers);
        Assert.Equal("zwei ü", seen.GetHeader("X-Two"));
        Assert.Equal([1, 2, 3], seen.Body.ToArray());
        Assert.Equal(TraceParent, seen.TraceParent);
        Assert.Null(seen.TraceState);
        Assert.Null(seen.Deadline);
        Assert.Equal(3, seen.Attempt);
        Assert.Equal(client.Address, seen.SenderAddress);
    }

    [Fact]
    public async Task Request_WithBudget_HasDeadlineReceiptPlusBudget()
    {
        var time = new FakeTimeProvider(new DateTimeOffset(2026, 1, 1, 0, 0, 0, TimeSpan.Zero));
        BackendRequest? seen = null;
        var server = await StartAsync((request, _) => { seen = request; return ValueTask.FromResult(new BackendResponse(204)); }, time: time);
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(7, budgetMs: 2500);
        Assert.Equal(204, (await client.ReceiveAsync()).Status);

        Assert.Equal(time.GetUtcNow() + TimeSpan.FromMilliseconds(2500), seen!.Deadline);
    }

    [Fact]
    public async Task ThousandConcurrentRequests_FromOneSocket_AreAllAnsweredWithTheirIds()
    {
        const int Count = 1000;
        var started = 0;
        var allStarted = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await StartAsync(
            async (request, ct) =>
            {
                // Nobody answers before all 1,000 are executing at once.
                if (Interlocked.Increment(ref started) == Count)
                {
                    allStarted.SetResult();
                }

                await allStarted.Task;
                return BackendResponse.Text(request.CorrelationId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            },
            o => o.ReplySendTimeout = TimeSpan.FromMinutes(1));
        var answered = await SendRequestsAndCollectRepliesAsync(server, Count);
        Assert.Equal(Count, answered.Count);
        Assert.All(answered, pair => Assert.Equal(pair.Key.ToString(System.Globalization.CultureInfo.InvariantCulture), pair.Value));
        Assert.Equal(Count, server.Statistics.Executed);
        Assert.Equal(0, server.Statistics.ReplyFailures);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task RunHandlersInline_SynchronousAndAwaitingHandlers_AllAnsweredWithTheirIds(bool inline)
    {
        // Even ids complete synchronously (sent from the receive thread when inline), odd ids await first.
        const int Count = 200;
        var server = await StartAsync(
            async (request, ct) =>
            {
                if (request.CorrelationId % 2 == 1)
                {
                    await Task.Yield();
                }

                return BackendResponse.Text(request.CorrelationId.ToString(System.Globalization.CultureInfo.InvariantCulture));
            },
            o =>
            {
                o.RunHandlersInline = inline;
                o.ReplySendTimeout = TimeSpan.FromMinutes(1);
            });
        var answered = await SendRequestsAndCollectRepliesAsync(server, Count);
        Assert.All(answered, pair => Assert.Equal(pair.Key.ToString(System.Globalization.CultureInfo.InvariantCulture), pair.Value));
        Assert.Equal(Count, server.Statistics.Executed);
        Assert.Equal(0, server.Statistics.ReplyFailures);
    }

    [Fact]
    public async Task NoRetry_TheReplyIsNotKept_WhileADuplicateInFlightIsStillDropped()
    {
        // docs/protocol.md §5: a REQUEST with NO_RETRY promises no other attempt, so its reply is not cached.
        var executions = 0;
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await StartAsync(async (request, _) =>
        {
            var n = Interlocked.Increment(ref executions);
            if (request.Target == "/slow")
            {
                await release.Task;
            }

            return BackendResponse.Text($"execution {n} {request.WillNotBeRetried}");
        });
        using var client = new TestClient(server.SocketPath);
        using var writer = new FrameWriter();

        void Send(ulong id, ushort attempt, string target)
        {
            writer.BeginRequest(id, attempt, 0, "POST", target);
            writer.SetFeatures(StreamFeatures.StreamReply | StreamFeatures.NoRetry);
            client.SendRaw(writer.Complete().Span);
        }

        Send(7, 1, "/slow");
        Send(7, 2, "/slow"); // a duplicate while the first runs: dropped, as without NO_RETRY
        await client.BarrierAsync();
        release.SetResult();
        var first = await client.ReceiveAsync();
        Assert.Equal("execution 1 True", first.BodyText);
        Assert.Equal(1, server.Statistics.DuplicatesInFlight);

        Send(8, 1, "/fast");
        Assert.Equal("execution 2 True", (await client.ReceiveAsync()).BodyText);
        await client.BarrierAsync();
        Assert.Equal(0, server.ReplayCacheCount);

        // A client that breaks its promise gets a second execution, not a replay.
        Send(8, 2, "/fast");
        var again = await client.ReceiveAsync();
        Assert.Equal("execution 3 True", again.BodyText);
        Assert.Equal(MessageFlags.None, again.Header.Flags);
        Assert.Equal(0, server.Statistics.Replayed);
    }

    [Fact]
    public async Task Retry_AfterCompletion_ReplaysCachedReplyWithRetryAttemptAndReplayFlag_WithoutExecuting()
    {
        var executions = 0;
        var server = await StartAsync((request, _) =>
        {
            var n = Interlocked.Increment(ref executions);
            return ValueTask.FromResult(BackendResponse.Text($"execution {n}"));
        });
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(42, attempt: 1);
        var first = await client.ReceiveAsync();
        client.SendRequest(42, attempt: 2);
        var second = await client.ReceiveAsync();

        Assert.Equal(1, executions);
        Assert.Equal(1, first.Header.Attempt);
        Assert.Equal(MessageFlags.None, first.Header.Flags);
        Assert.Equal(2, second.Header.Attempt);
        Assert.Equal(42UL, second.Header.CorrelationId);
        Assert.Equal(MessageFlags.Replay, second.Header.Flags);
        Assert.Equal("execution 1", second.BodyText);
        Assert.Equal(1, server.Statistics.Replayed);
        Assert.Equal(1, server.ReplayCacheCount);
    }

    [Fact]
    public async Task SameId_FromDifferentSenders_ExecutesForEach()
    {
        var executions = 0;
        var server = await StartAsync((_, _) => ValueTask.FromResult(BackendResponse.Text(Interlocked.Increment(ref executions).ToString(System.Globalization.CultureInfo.InvariantCulture))));
        using var a = new TestClient(server.SocketPath);
        using var b = new TestClient(server.SocketPath);

        a.SendRequest(5);
        var fromA = await a.ReceiveAsync();
        b.SendRequest(5);
        var fromB = await b.ReceiveAsync();

        Assert.Equal(2, executions);
        Assert.Equal(MessageFlags.None, fromB.Header.Flags);
        Assert.NotEqual(fromA.BodyText, fromB.BodyText);
    }

    [Fact]
    public async Task Retry_WhileInProgress_IsDropped_AndExecutedOnceWithOneReply()
    {
        var executions = 0;
        var started = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await StartAsync(async (_, _) =>
        {
            Interlocked.Increment(ref executions);
            started.TrySetResult();
            await release.Task;
            return BackendResponse.Text("done");
        });
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(9, attempt: 1);
        await started.Task.WaitAsync(TestClient.ReceiveTimeout);
        client.SendRequest(9, attempt: 2);
        await client.BarrierAsync(); // the loop has seen attempt 2
        release.SetResult();
        var reply = await client.ReceiveAsync();
        await client.BarrierAsync(); // the next datagram is the PONG: no second reply

        Assert.Equal("done", reply.BodyText);
        Assert.Equal(1, reply.Header.Attempt);
        Assert.Equal(1, executions);
        Assert.Equal(1, server.Statistics.DuplicatesInFlight);
    }

    /// <summary>docs/protocol.md §5: the replay cache answers before any deadline check.</summary>
    [Fact]
    public async Task Retry_AfterTheFirstAttemptsDeadline_WithItsReplyCached_IsReplayedNotDeadlineExceeded()
    {
        var time = new FakeTimeProvider();
        var executions = 0;
        var server = await StartAsync((_, _) => ValueTask.FromResult(BackendResponse.Text($"execution {Interlocked.Increment(ref executions)}")), time: time);
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(43, attempt: 1, budgetMs: 100);
        var first = await client.ReceiveAsync();
        time.Advance(TimeSpan.FromSeconds(5)); // long past attempt 1's deadline
        client.SendRequest(43, attempt: 2, budgetMs: 100);
        var second = await client.ReceiveAsync();

        Assert.Equal(MessageKind.Response, second.Header.Kind);
        Assert.Equal(MessageFlags.Replay, second.Header.Flags);
        Assert.Equal(2, second.Header.Attempt);
        Assert.Equal("execution 1", second.BodyText);
        Assert.Equal(1, executions);
    }

    [Fact]
    public async Task ReplayCache_AfterTtl_ExecutesAgain()
    {
        var time = new FakeTimeProvider();
        var executions = 0;
        var server = await StartAsync(
            (_, _) => ValueTask.FromResult(BackendResponse.Text(Interlocked.Increment(ref executions).ToString(System.Globalization.CultureInfo.InvariantCulture))),
            o => o.ReplayCacheTtl = TimeSpan.FromSeconds(120),
            time);
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(11);
        await client.ReceiveAsync();
        time.Advance(TimeSpan.FromSeconds(119));
        client.SendRequest(11, attempt: 2);
        var replayed = await client.ReceiveAsync();
        Assert.Equal(MessageFlags.Replay, replayed.Header.Flags);

        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(0, server.ReplayCacheCount);
        client.SendRequest(11, attempt: 3);
        var again = await client.ReceiveAsync();

        Assert.Equal(2, executions);
        Assert.Equal(MessageFlags.None, again.Header.Flags);
        Assert.Equal("2", again.BodyText);
    }

    [Fact]
    public async Task ReplayCache_OverItsEntryBound_EvictsTheOldest()
    {
        var executions = new ConcurrentDictionary<ulong, int>();
        var server = await StartAsync(
            (request, _) => ValueTask.FromResult(BackendResponse.Text(executions.AddOrUpdate(request.CorrelationId, 1, (_, n) => n + 1).ToString(System.Globalization.CultureInfo.InvariantCulture))),
            o => o.ReplayCacheSize = 2);
        using var client = new TestClient(server.SocketPath);

        for (ulong id = 1; id <= 3; id++)
        {
            client.SendRequest(id);
            await client.ReceiveAsync();
        }

        Assert.Equal(2, server.ReplayCacheCount);
        client.SendRequest(3, attempt: 2);
        var newest = await client.ReceiveAsync();
        client.SendRequest(1, attempt: 2);
        var oldest = await client.ReceiveAsync();

        Assert.Equal(MessageFlags.Replay, newest.Header.Flags);
        Assert.Equal(1, executions[3]);
        Assert.Equal(MessageFlags.None, oldest.Header.Flags);
        Assert.Equal(2, executions[1]);
    }

    [Fact]
    public async Task ReplayCache_OverItsByteBound_EvictsTheOldest()
    {
        var executions = 0;
        var server = await StartAsync(
            (_, _) =>
            {
                Interlocked.Increment(ref executions);
                return ValueTask.FromResult(BackendResponse.Bytes(new byte[600], "application/octet-stream"));
            },
            o => o.ReplayCacheMaxBytes = 1000);
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(1);
        await client.ReceiveAsync();
        client.SendRequest(2);
        await client.ReceiveAsync();

        Assert.Equal(1, server.ReplayCacheCount);
        client.SendRequest(1, attempt: 2);
        Assert.Equal(MessageFlags.None, (await client.ReceiveAsync()).Header.Flags);
        Assert.Equal(3, executions);
    }

    [Fact]
    public async Task Request_WhoseDeadlinePassedBeforeDispatch_IsDroppedWithoutExecuting()
    {
        // Every clock read advances the fake clock by 10 ms: receipt and dispatch see different times.
        var time = new FakeTimeProvider { AutoAdvanceAmount = TimeSpan.FromMilliseconds(10) };
        var executions = 0;
        var server = await StartAsync((_, _) => { Interlocked.Increment(ref executions); return ValueTask.FromResult(new BackendResponse(204)); }, time: time, logs: _logs);
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(21, budgetMs: 1);
        await _logs.WaitForAsync(2010);
        client.SendRequest(22, budgetMs: 60_000);
        var reply = await client.ReceiveAsync();

        Assert.Equal(22UL, reply.Header.CorrelationId); // nothing was sent for 21
        Assert.Equal(1, executions);
        Assert.Equal(1, server.Statistics.DroppedExpired);
    }

    [Fact]
    public async Task Deadline_WhileHandlerRuns_CancelsItsToken_AndAnswersDeadlineExceeded()
    {
        var time = new FakeTimeProvider();
        var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await StartAsync(
            async (_, ct) =>
            {
                waiting.SetResult();
                await Task.Delay(Timeout.Infinite, ct);
                return BackendResponse.Text("never");
            },
            time: time);
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(31, budgetMs: 1000);
        await waiting.Task.WaitAsync(TestClient.ReceiveTimeout);
        time.Advance(TimeSpan.FromMilliseconds(1000));
        var reply = await client.ReceiveAsync();

        Assert.Equal(MessageKind.Error, reply.Header.Kind);
        Assert.Equal(IpcErrorCode.DeadlineExceeded, reply.ErrorCode);
    }

    [Fact]
    public async Task Cancel_CancelsTheHandlersToken_AndSendsNoReply()
    {
        var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await StartAsync(
            async (_, ct) =>
            {
                using var registration = ct.Register(() => cancelled.TrySetResult());
                waiting.SetResult();
                await Task.Delay(Timeout.Infinite, ct);
                return BackendResponse.Text("never");
            },
            logs: _logs);
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(41);
        await waiting.Task.WaitAsync(TestClient.ReceiveTimeout);
        client.SendControl(MessageKind.Cancel, 41);
        await cancelled.Task.WaitAsync(TestClient.ReceiveTimeout);
        await _logs.WaitForAsync(2012);
        await client.BarrierAsync(); // the next datagram is the PONG: no reply for 41

        Assert.Equal(1, server.Statistics.Cancels);
    }

    [Fact]
    public async Task Cancel_EndsTheHandleSpan_WithOutcomeCancelled_AndNoErrorStatus()
    {
        // A correlation ID of this test's own: the listener is process-wide and other tests make spans too.
        var correlationId = (ulong)Random.Shared.NextInt64(1, long.MaxValue);
        var tag = correlationId.ToString("x16", System.Globalization.CultureInfo.InvariantCulture);
        var stopped = new TaskCompletionSource<System.Diagnostics.Activity>(TaskCreationOptions.RunContinuationsAsynchronously);
        using var listener = new System.Diagnostics.ActivityListener
        {
            ShouldListenTo = source => source.Name == IpcDiagnostics.ActivitySourceName,
            Sample = (ref System.Diagnostics.ActivityCreationOptions<System.Diagnostics.ActivityContext> _) => System.Diagnostics.ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (activity.GetTagItem(IpcDiagnostics.CorrelationIdTag) as string == tag)
                {
                    stopped.TrySetResult(activity);
                }
            },
        };
        System.Diagnostics.ActivitySource.AddActivityListener(listener);
        var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await StartAsync(async (_, ct) =>
        {
            waiting.SetResult();
            await Task.Delay(Timeout.Infinite, ct);
            return BackendResponse.Text("never");
        });
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(correlationId);
        await waiting.Task.WaitAsync(TestClient.ReceiveTimeout);
        client.SendControl(MessageKind.Cancel, correlationId);
        var span = await stopped.Task.WaitAsync(TestClient.ReceiveTimeout);

        Assert.Equal("cancelled", span.GetTagItem(IpcDiagnostics.OutcomeTag));
        Assert.Equal(System.Diagnostics.ActivityStatusCode.Unset, span.Status);
        Assert.Null(span.GetTagItem("http.response.status_code"));
    }

    [Fact]
    public async Task Ping_AtMaxConcurrency_IsAnswered_AndAnotherRequestIsOverloaded()
    {
        var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await StartAsync(
            async (_, _) =>
            {
                waiting.TrySetResult();
                await release.Task;
                return BackendResponse.Text("slow");
            },
            o => o.MaxConcurrency = 1);
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(51);
        await waiting.Task.WaitAsync(TestClient.ReceiveTimeout);
        client.SendControl(MessageKind.Ping, 52, attempt: 7);
        var pong = await client.ReceiveAsync();
        client.SendRequest(53, attempt: 2);
        var overloaded = await client.ReceiveAsync();
        release.SetResult();
        var slow = await client.ReceiveAsync();

        Assert.Equal(MessageKind.Pong, pong.Header.Kind);
        Assert.Equal(52UL, pong.Header.CorrelationId);
        Assert.Equal(7, pong.Header.Attempt);
        Assert.Empty(pong.Payload);
        Assert.Equal(MessageKind.Error, overloaded.Header.Kind);
        Assert.Equal(53UL, overloaded.Header.CorrelationId);
        Assert.Equal(2, overloaded.Header.Attempt);
        Assert.Equal(IpcErrorCode.Overloaded, overloaded.ErrorCode);
        Assert.Equal(51UL, slow.Header.CorrelationId);
        Assert.Equal(1, server.Statistics.Overloaded);
        Assert.Equal(1, server.Statistics.Pings);
    }

    [Fact]
    public async Task Overloaded_Request_IsNotCached_SoItsRetryExecutes()
    {
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await StartAsync(
            async (request, _) =>
            {
                if (request.CorrelationId == 1)
                {
                    waiting.SetResult();
                    await release.Task;
                }

                return BackendResponse.Text("ok");
            },
            o => o.MaxConcurrency = 1);
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(1);
        await waiting.Task.WaitAsync(TestClient.ReceiveTimeout);
        client.SendRequest(2);
        Assert.Equal(IpcErrorCode.Overloaded, (await client.ReceiveAsync()).ErrorCode);
        release.SetResult();
        Assert.Equal(1UL, (await client.ReceiveAsync()).Header.CorrelationId);
        client.SendRequest(2, attempt: 2);
        var retry = await client.ReceiveAsync();

        Assert.Equal(MessageKind.Response, retry.Header.Kind);
        Assert.Equal(MessageFlags.None, retry.Header.Flags);
    }

    [Fact]
    public async Task MalformedPayload_WithValidHeader_IsAnsweredMalformed()
    {
        var executions = 0;
        var server = await StartAsync((_, _) => { Interlocked.Increment(ref executions); return ValueTask.FromResult(new BackendResponse()); });
        using var client = new TestClient(server.SocketPath);

        // Valid header, payload: method of length 0.
        var datagram = new byte[ProtocolConstants.HeaderSize + 8];
        new FrameHeader(MessageKind.Request, MessageFlags.None, 4, 61, 0, 8).Write(datagram);
        client.SendRaw(datagram);
        var reply = await client.ReceiveAsync();

        Assert.Equal(MessageKind.Error, reply.Header.Kind);
        Assert.Equal(61UL, reply.Header.CorrelationId);
        Assert.Equal(4, reply.Header.Attempt);
        Assert.Equal(IpcErrorCode.Malformed, reply.ErrorCode);
        Assert.Contains("method", reply.ErrorMessage, StringComparison.Ordinal);
        Assert.Equal(0, executions);
        Assert.Equal(1, server.Statistics.MalformedErrorsSent);
    }

    [Fact]
    public async Task GarbageFlood_LogsOneWarningPerInterval_TheRestAtDebug_AndTheNextWarningCountsThem()
    {
        var time = new FakeTimeProvider();
        var server = await StartAsync((_, _) => ValueTask.FromResult(new BackendResponse(204)), time: time, logs: _logs);
        using var client = new TestClient(server.SocketPath);

        for (var i = 0; i < 50; i++)
        {
            client.SendRaw("not a frame"u8);
        }

        await client.BarrierAsync(1);
        time.Advance(DropLogThrottle.Interval);
        client.SendRaw("still not a frame"u8);
        await client.BarrierAsync(2);

        var malformed = _logs.Events.Where(e => e.EventId == 2002).ToList();
        Assert.Equal(51, server.Statistics.DroppedMalformed);
        Assert.Equal(51, malformed.Count);
        Assert.Equal(2, malformed.Count(e => e.Level == LogLevel.Warning)); // the first, and the first after the interval
        Assert.Equal(49, malformed.Count(e => e.Level == LogLevel.Debug));
        var summary = Assert.Single(_logs.Events, e => e.EventId == 2022);
        Assert.Equal(LogLevel.Warning, summary.Level);
        Assert.StartsWith("49 more datagrams", summary.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task GarbageDatagrams_AreDroppedAndCounted_AndTheLoopKeepsServing()
    {
        var server = await StartAsync((_, _) => ValueTask.FromResult(BackendResponse.Text("alive")), logs: _logs);
        using var client = new TestClient(server.SocketPath);
        client.Socket.SendBufferSize = 1024 * 1024;
        var random = new Random(1234);

        var pong = new byte[ProtocolConstants.HeaderSize];
        new FrameHeader(MessageKind.Pong, MessageFlags.None, 0, 1, 0, 0).Write(pong);
        var badVersion = (byte[])pong.Clone();
        badVersion[2] = 2;
        var badLength = new byte[ProtocolConstants.HeaderSize + 3];
        new FrameHeader(MessageKind.Request, MessageFlags.None, 1, 1, 0, 99).Write(badLength);
        var zeroId = (byte[])pong.Clone();
        zeroId[3] = (byte)MessageKind.Ping;
        zeroId.AsSpan(8, 8).Clear();
        List<byte[]> garbage = [[], [0x47], new byte[23], "HELLO WORLD, THIS IS NOT A FRAME"u8.ToArray(), pong, badVersion, badLength, zeroId];
        for (var i = 0; i < 20; i++)
        {
            var bytes = new byte[random.Next(0, 300)];
            random.NextBytes(bytes);
            garbage.Add(bytes);
        }

        foreach (var datagram in garbage)
        {
            client.SendRaw(datagram);
        }

        // Larger than the receive buffer: dropped as oversized.
        var oversized = new byte[ProtocolConstants.MaxDatagram + 100];
        new FrameHeader(MessageKind.Request, MessageFlags.None, 1, 1, 0, (uint)(oversized.Length - ProtocolConstants.HeaderSize)).Write(oversized);
        client.SendRaw(oversized);

        client.SendRequest(71);
        var reply = await client.ReceiveAsync();

        Assert.Equal(71UL, reply.Header.CorrelationId);
        Assert.Equal("alive", reply.BodyText);
        Assert.Equal(garbage.Count, server.Statistics.DroppedMalformed);
        Assert.Equal(1, server.Statistics.DroppedOversized);
        Assert.Equal(garbage.Count + 2, server.Statistics.Received);
        Assert.Contains(_logs.Events, e => e.EventId == 2002);
        Assert.Contains(_logs.Events, e => e.EventId == 2003);
    }

    [Fact]
    public async Task HandlerThrows_IsAnsweredInternal_AndLogged()
    {
        var server = await StartAsync((_, _) => throw new InvalidOperationException("boom"), logs: _logs);
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(81);
        var reply = await client.ReceiveAsync();
        client.SendRequest(82);
        var second = await client.ReceiveAsync();

        Assert.Equal(IpcErrorCode.Internal, reply.ErrorCode);
        Assert.DoesNotContain("boom", reply.ErrorMessage, StringComparison.Ordinal); // no internals leak to callers
        Assert.Equal(IpcErrorCode.Internal, second.ErrorCode);
        Assert.Equal(2, server.Statistics.HandlerFailures);
        Assert.Contains(_logs.Events, e => e.EventId == 2011 && e.Message.Contains("81", StringComparison.Ordinal));
    }

    [Fact]
    public async Task HandlerReturnsError_IsSentAsErrorMessage()
    {
        var server = await StartAsync((_, _) => ValueTask.FromResult(BackendResponse.Error(IpcErrorCode.NotFound, "nothing here")));
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(91, attempt: 5);
        var reply = await client.ReceiveAsync();

        Assert.Equal(MessageKind.Error, reply.Header.Kind);
        Assert.Equal(5, reply.Header.Attempt);
        Assert.Equal(IpcErrorCode.NotFound, reply.ErrorCode);
        Assert.Equal("nothing here", reply.ErrorMessage);
    }

    [Fact]
    public async Task HandlerReturnsInvalidHeader_IsAnsweredInternal()
    {
        var server = await StartAsync((_, _) => ValueTask.FromResult(new BackendResponse(200, [new("bad name ü", "x")])));
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(92);

        Assert.Equal(IpcErrorCode.Internal, (await client.ReceiveAsync()).ErrorCode);
    }

    [Fact]
    public async Task LargeRequestAndReply_AreFragmented_AndReassembledByteExact()
    {
        var body = new byte[3 * 1024 * 1024 + 12345];
        new Random(7).NextBytes(body);
        byte[]? seen = null;
        var executions = 0;
        var server = await StartAsync((request, _) =>
        {
            Interlocked.Increment(ref executions);
            seen = request.Body.ToArray();
            var reversed = request.Body.ToArray();
            Array.Reverse(reversed);
            return ValueTask.FromResult(BackendResponse.Bytes(reversed, "application/octet-stream"));
        });
        using var client = new TestClient(server.SocketPath);

        await client.SendLargeRequestAsync(201, body);
        var reply = await client.ReceiveMessageAsync();
        await client.SendLargeRequestAsync(201, body, attempt: 2);
        var replayed = await client.ReceiveMessageAsync();

        Assert.Equal(body, seen);
        var expected = (byte[])body.Clone();
        Array.Reverse(expected);
        Assert.Equal(MessageKind.Response, reply.Header.Kind);
        Assert.Equal(expected, reply.Body);
        Assert.Equal(2, replayed.Header.Attempt);
        Assert.Equal(MessageFlags.Replay, replayed.Header.Flags);
        Assert.Equal(expected, replayed.Body);
        Assert.Equal(1, executions);
        Assert.True(server.Statistics.FragmentsReceived >= 2 * (body.Length / ProtocolConstants.MaxFragmentData));
    }

    [Fact]
    public async Task FragmentedRequestOverMaxMessageBytes_IsAnsweredTooLargeOnce_WithoutExecuting()
    {
        var executions = 0;
        var server = await StartAsync((_, _) => { Interlocked.Increment(ref executions); return ValueTask.FromResult(new BackendResponse()); }, o => o.MaxMessageBytes = 300_000);
        using var client = new TestClient(server.SocketPath);

        await client.SendLargeRequestAsync(202, new byte[1_000_000]);
        var reply = await client.ReceiveAsync();
        await client.BarrierAsync(); // no second ERROR for the later fragments

        Assert.Equal(IpcErrorCode.TooLarge, reply.ErrorCode);
        Assert.Equal(202UL, reply.Header.CorrelationId);
        Assert.Equal(0, executions);
        Assert.Equal(1, server.Statistics.TooLarge);
    }

    [Fact]
    public async Task OutOfOrderFragment_IsDroppedAndCounted_AndTheLoopKeepsServing()
    {
        var server = await StartAsync((_, _) => ValueTask.FromResult(BackendResponse.Text("ok")));
        using var client = new TestClient(server.SocketPath);

        // A fragment at offset 100 with no partial message before it.
        var fragment = new byte[ProtocolConstants.FragmentHeaderSize + 10];
        new FrameHeader(MessageKind.Request, MessageFlags.Fragment, 1, 203, 0, 500_000).Write(fragment);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(fragment.AsSpan(ProtocolConstants.HeaderSize), 100);
        client.SendRaw(fragment);
        client.SendRequest(204);

        Assert.Equal(204UL, (await client.ReceiveAsync()).Header.CorrelationId);
        Assert.Equal(1, server.Statistics.FragmentsDropped);
    }

    [Fact]
    public async Task ReplyOverMaxMessageBytes_IsAnsweredTooLarge()
    {
        var server = await StartAsync((_, _) => ValueTask.FromResult(BackendResponse.Bytes(new byte[ProtocolConstants.MaxDatagram], "application/octet-stream")), o => o.MaxMessageBytes = 100_000);
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(93);
        var reply = await client.ReceiveAsync();

        Assert.Equal(IpcErrorCode.TooLarge, reply.ErrorCode);
    }

    [Fact]
    public async Task RequestOverMaxMessageBytes_IsAnsweredTooLarge_WithoutExecuting()
    {
        var executions = 0;
        var server = await StartAsync((_, _) => { Interlocked.Increment(ref executions); return ValueTask.FromResult(new BackendResponse()); }, o => o.MaxMessageBytes = 1024);
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(94, method: "PUT", body: new byte[2000]);
        var reply = await client.ReceiveAsync();

        Assert.Equal(IpcErrorCode.TooLarge, reply.ErrorCode);
        Assert.Equal(0, executions);
    }

    [Fact]
    public async Task FullClientQueue_DoesNotBlockTheLoop_AndFailedRepliesAreCounted()
    {
        var server = await StartAsync((_, _) => ValueTask.FromResult(BackendResponse.Text("x")), o => o.ReplySendTimeout = TimeSpan.FromMilliseconds(50), logs: _logs);
        using var silent = new TestClient(server.SocketPath); // never reads
        using var other = new TestClient(server.SocketPath);

        for (ulong id = 1; id <= 30; id++)
        {
            silent.SendRequest(id);
        }

        await other.BarrierAsync();
        other.SendRequest(1000);
        var reply = await other.ReceiveAsync();
        await _logs.WaitForAsync(2014);

        Assert.Equal(1000UL, reply.Header.CorrelationId);
        Assert.True(server.Statistics.ReplyFailures > 0);
    }

    [Fact]
    public async Task Stop_WaitsForInFlightHandlers_ThenRemovesTheSocketFile()
    {
        var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await StartAsync(async (_, _) =>
        {
            waiting.SetResult();
            await release.Task;
            return BackendResponse.Text("finished");
        });
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(101);
        await waiting.Task.WaitAsync(TestClient.ReceiveTimeout);
        var stopping = server.StopAsync();
        Assert.False(stopping.IsCompleted);
        Assert.True(File.Exists(server.SocketPath));
        release.SetResult();
        var reply = await client.ReceiveAsync();
        await stopping.WaitAsync(TestClient.ReceiveTimeout);

        Assert.Equal("finished", reply.BodyText);
        Assert.False(File.Exists(server.SocketPath));
    }

    [Fact]
    public async Task Stop_AfterDrainTimeout_CancelsHandlers_WhichAreAnsweredOverloaded()
    {
        var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var server = await StartAsync(
            async (_, ct) =>
            {
                waiting.SetResult();
                await Task.Delay(Timeout.Infinite, ct);
                return BackendResponse.Text("never");
            },
            o => o.DrainTimeout = TimeSpan.Zero);
        using var client = new TestClient(server.SocketPath);

        client.SendRequest(111);
        await waiting.Task.WaitAsync(TestClient.ReceiveTimeout);
        await server.StopAsync().WaitAsync(TestClient.ReceiveTimeout);
        var reply = await client.ReceiveAsync();

        Assert.Equal(IpcErrorCode.Overloaded, reply.ErrorCode);
        Assert.Equal(0, server.InFlight);
        Assert.False(File.Exists(server.SocketPath));
    }

    [Fact]
    public async Task Start_OnStaleSocketFile_TakesOver()
    {
        var path = _dir.Socket("stale.sock");
        UnixSocketFile.Bind(path, SocketType.Dgram).Socket.Dispose(); // leaves the file behind, like a crash
        Assert.Equal(SocketFileState.Stale, UnixSocketFile.Probe(path, SocketType.Dgram));

        var server = await StartAsync((_, _) => ValueTask.FromResult(BackendResponse.Text("new")), o => o.SocketPath = path);
        using var client = new TestClient(path);
        client.SendRequest(1);

        Assert.Equal("new", (await client.ReceiveAsync()).BodyText);
        Assert.Equal(path, server.SocketPath);
    }

    [Fact]
    public async Task Start_OnLiveSocketFile_FailsNamingThePath_AndLeavesTheOwnerServing()
    {
        var first = await StartAsync((_, _) => ValueTask.FromResult(BackendResponse.Text("first")));
        await using var second = new DatagramBackendServer(new DatagramBackendOptions { SocketPath = first.SocketPath }, (_, _) => ValueTask.FromResult(new BackendResponse()));

        var ex = await Assert.ThrowsAsync<SocketFileException>(() => second.StartAsync());

        Assert.Contains(first.SocketPath, ex.Message, StringComparison.Ordinal);
        Assert.Contains("is in use (by this or another process)", ex.Message, StringComparison.Ordinal);
        using var client = new TestClient(first.SocketPath);
        client.SendRequest(1);
        Assert.Equal("first", (await client.ReceiveAsync()).BodyText);
    }

    [Fact]
    public async Task Dispose_DoesNotUnlinkASuccessorsSocketFile()
    {
        var first = await StartAsync((_, _) => ValueTask.FromResult(BackendResponse.Text("first")));
        File.Delete(first.SocketPath); // e.g. an operator or a successor removed it
        var successor = await StartAsync((_, _) => ValueTask.FromResult(BackendResponse.Text("successor")), o => o.SocketPath = first.SocketPath);

        await first.DisposeAsync();

        Assert.True(File.Exists(successor.SocketPath));
        using var client = new TestClient(successor.SocketPath);
        client.SendRequest(1);
        Assert.Equal("successor", (await client.ReceiveAsync()).BodyText);
    }

    [Fact]
    public void Constructor_WithInvalidOptions_NamesTheOption()
    {
        var ex = Assert.Throws<ArgumentException>(() => new DatagramBackendServer(new DatagramBackendOptions { SocketPath = "/tmp/x.sock", MaxConcurrency = 0 }, (_, _) => default));

        Assert.Contains(nameof(DatagramBackendOptions.MaxConcurrency), ex.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Sends GET requests with correlation IDs 1..<paramref name="count"/> from one client while another task collects
    /// the replies; each must be a RESPONSE, at most one per ID. Returns each ID's body.
    /// </summary>
    private static async Task<ConcurrentDictionary<ulong, string>> SendRequestsAndCollectRepliesAsync(DatagramBackendServer server, int count)
    {
        using var client = new TestClient(server.SocketPath);
        var backend = new UnixDomainSocketEndPoint(server.SocketPath);
        var answered = new ConcurrentDictionary<ulong, string>();
        var receiving = Task.Run(async () =>
        {
            while (answered.Count < count)
            {
                var reply = await client.ReceiveAsync();
                Assert.Equal(MessageKind.Response, reply.Header.Kind);
                Assert.True(answered.TryAdd(reply.Header.CorrelationId, reply.BodyText), $"Duplicate reply for {reply.Header.CorrelationId}.");
            }
        });

        using var writer = new FrameWriter();
        for (ulong id = 1; id <= (ulong)count; id++)
        {
            writer.BeginRequest(id, 1, 0, "GET", "/n");
            // The backend's queue holds ~11 datagrams: SendToAsync waits for room.
            await client.Socket.SendToAsync(writer.Complete(), SocketFlags.None, backend);
        }

        await receiving;
        return answered;
    }

    [Fact]
    public async Task Start_AdvisesRaisingTheKernelsDatagramQueue_ExactlyWhenItIsShort()
    {
        var logs = new LogCapture();
        var server = await StartAsync((_, _) => ValueTask.FromResult(new BackendResponse()), logs: logs);

        // StartAsync logs "listening" (2000), then the advice.
        Assert.Contains(logs.Events, e => e.EventId == 2000);
        var advice = logs.Events.Where(e => e.EventId == 2023).ToList();
        var setting = UnixDatagramQueue.ReadMaxLength();
        if (UnixDatagramQueue.IsBelowRecommended(setting))
        {
            var entry = Assert.Single(advice);
            Assert.Equal(LogLevel.Information, entry.Level);
            Assert.Contains(server.SocketPath, entry.Message, StringComparison.Ordinal);
            Assert.Contains($"at most {setting + 1} datagrams (net.unix.max_dgram_qlen = {setting})", entry.Message, StringComparison.Ordinal);
        }
        else
        {
            Assert.Empty(advice);
        }
    }

    private async Task<DatagramBackendServer> StartAsync(DatagramHandler handler, Action<DatagramBackendOptions>? configure = null, TimeProvider? time = null, LogCapture? logs = null)
    {
        var options = new DatagramBackendOptions { SocketPath = _dir.Socket($"b{_servers.Count}.sock") };
        configure?.Invoke(options);
        var server = new DatagramBackendServer(options, handler, time, logs);
        _servers.Add(server);
        await server.StartAsync();
        return server;
    }
}
