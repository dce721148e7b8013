using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Protocol;
using Gateway.Routing;
using Gateway.Testing;
using Gateway.Tests.Forwarding;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using Polly.CircuitBreaker;

namespace Gateway.Tests.Resilience;

/// <summary>Killed, slow, failing and saturated instances, over real datagram sockets.</summary>
public class FaultInjectionTests
{
    [Fact]
    public async Task InstanceKilledDuringBurst_IdempotentSucceedElsewhere_NonIdempotentFailDefinitely_NeverTwice()
    {
        using var dir = new TempSocketDirectory();
        var executedOnA = 0;
        var executedOnB = 0;
        var a = await TestBackend.StartAsync(dir.Socket("a.sock"), (r, _) =>
        {
            Interlocked.Increment(ref executedOnA);
            return ValueTask.FromResult(BackendResponse.Text("a"));
        });
        await using var b = await TestBackend.StartAsync(dir.Socket("b.sock"), (r, _) =>
        {
            Interlocked.Increment(ref executedOnB);
            return ValueTask.FromResult(BackendResponse.Text("b"));
        });
        await using var factory = new GatewayFactory(dir, ResilienceSettings.Route(a.SocketPath, b.SocketPath));
        using var client = factory.CreateClient();

        // First half of the burst with both instances up, then instance a dies, then the second half.
        var firstHalf = await Task.WhenAll(Enumerable.Range(0, 10).Select(i => client.GetAsync($"/api/x{i}")));
        await a.DisposeAsync();
        var gets = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => client.GetAsync($"/api/y{i}")));
        var posts = await Task.WhenAll(Enumerable.Range(0, 20).Select(i => client.PostAsync($"/api/z{i}", new StringContent("x"))));

        var firstBodies = await Task.WhenAll(firstHalf.Select(r => r.Content.ReadAsStringAsync()));
        var getBodies = await Task.WhenAll(gets.Select(r => r.Content.ReadAsStringAsync()));
        Assert.All(firstHalf, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.All(gets, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.All(getBodies, body => Assert.Equal("b", body));
        var postOk = posts.Count(r => r.StatusCode == HttpStatusCode.OK);
        var postFailed = posts.Where(r => r.StatusCode != HttpStatusCode.OK).ToList();
        Assert.All(postFailed, r => Assert.Equal(HttpStatusCode.ServiceUnavailable, r.StatusCode));
        Assert.All(postFailed, r => Assert.NotNull(r.Headers.RetryAfter));

        // Every request executed at most once: b ran exactly the requests that succeeded there.
        var firstOnB = firstBodies.Count(body => body == "b");
        Assert.Equal(10 - firstOnB, Volatile.Read(ref executedOnA));
        Assert.Equal(firstOnB + 20 + postOk, Volatile.Read(ref executedOnB));
        foreach (var r in firstHalf.Concat(gets).Concat(posts))
        {
            r.Dispose();
        }
    }

    [Fact]
    public async Task InstanceKilledWithRequestsInFlight_GetsRetriedElsewhere_PostsGetADefiniteErrorAndRanAtMostOnce()
    {
        const int PerMethod = 10;
        using var dir = new TempSocketDirectory();
        var onA = new ConcurrentQueue<(ulong Id, string Method)>();
        var onB = new ConcurrentQueue<(ulong Id, string Method)>();
        var entered = 0;
        var phase = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var target = PerMethod;
        void Entered()
        {
            if (Interlocked.Increment(ref entered) == Volatile.Read(ref target))
            {
                phase.TrySetResult();
            }
        }

        // Instance a holds every request until the end of the test and ignores cancellation: killed, it never answers.
        var releaseA = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var a = await TestBackend.StartAsync(dir.Socket("a.sock"), async (r, _) =>
        {
            onA.Enqueue((r.CorrelationId, r.Method));
            Entered();
            await releaseA.Task;
            return BackendResponse.Text("a");
        });
        await using var b = await TestBackend.StartAsync(dir.Socket("b.sock"), (r, _) =>
        {
            onB.Enqueue((r.CorrelationId, r.Method));
            if (r.Attempt == 1)
            {
                Entered();
            }

            return ValueTask.FromResult(BackendResponse.Text("b"));
        });
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new GatewayFactory(dir, ResilienceSettings.Route(a.SocketPath, b.SocketPath), s => s.AddSingleton<TimeProvider>(time));
        using var client = factory.CreateClient();

        try
        {
            // Round robin over both instances: of each burst of 10 first attempts, exactly 5 land on a and stay there.
            var posts = Enumerable.Range(0, PerMethod).Select(i => client.PostAsync($"/api/p{i}", new StringContent("x"))).ToList();
            await phase.Task.WaitAsync(HangGuard);
            phase = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref target, 2 * PerMethod);
            var gets = Enumerable.Range(0, PerMethod).Select(i => client.GetAsync($"/api/g{i}")).ToList();
            await phase.Task.WaitAsync(HangGuard);
            Assert.Equal(PerMethod, onA.Count);
            Assert.Equal(PerMethod / 2, onA.Count(e => e.Method == "POST"));

            // Kill a with all of them in flight: it stops reading and its socket goes away, nothing is answered.
            await a.Server.StopAsync(new CancellationToken(canceled: true));
            Assert.False(File.Exists(a.SocketPath));

            // The attempt timeout: every GET held by a is retried on b.
            time.Advance(TimeSpan.FromSeconds(1));
            var getResponses = await Task.WhenAll(gets).WaitAsync(HangGuard);
            Assert.All(getResponses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
            Assert.All(await Task.WhenAll(getResponses.Select(r => r.Content.ReadAsStringAsync())), body => Assert.Equal("b", body));

            // A POST without Idempotency-Key is never retried: those held by a run into the whole budget: 504.
            time.Advance(TimeSpan.FromSeconds(9));
            var postResponses = await Task.WhenAll(posts).WaitAsync(HangGuard);
            Assert.Equal(PerMethod / 2, postResponses.Count(r => r.StatusCode == HttpStatusCode.OK));
            Assert.Equal(PerMethod / 2, postResponses.Count(r => r.StatusCode == HttpStatusCode.GatewayTimeout));

            // At most once: no POST ran on both instances or twice on one.
            var postsOnA = onA.Where(e => e.Method == "POST").Select(e => e.Id).ToList();
            var postsOnB = onB.Where(e => e.Method == "POST").Select(e => e.Id).ToList();
            Assert.Equal(PerMethod, postsOnA.Concat(postsOnB).Distinct().Count());
            Assert.Equal(PerMethod, postsOnA.Count + postsOnB.Count);

            // Every GET held by a ran again on b, once.
            var getsOnA = onA.Where(e => e.Method == "GET").Select(e => e.Id).ToHashSet();
            Assert.Equal(PerMethod / 2, getsOnA.Count);
            Assert.All(getsOnA, id => Assert.Single(onB, e => e.Id == id));
            foreach (var response in getResponses.Concat(postResponses))
            {
                response.Dispose();
            }
        }
        finally
        {
            releaseA.TrySetResult();
            await a.DisposeAsync();
        }
    }

    [Fact]
    public async Task BackendWithAFullReceiveQueue_DoesNotHoldUpRequestsToAnotherBackend()
    {
        using var dir = new TempSocketDirectory();

        // A backend that stopped reading: bound, never read; its receive queue is filled before the test starts.
        var stuckPath = dir.Socket("stuck.sock");
        using var stuck = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        stuck.Bind(new UnixDomainSocketEndPoint(stuckPath));
        Eventually.FillReceiveQueue(stuckPath);
        await using var healthy = await TestBackend.StartAsync(dir.Socket("ok.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("ok")));
        var settings = new Dictionary<string, string?>
        {
            ["Gateway:Backends:stuck:Instances:0"] = stuckPath,
            ["Gateway:Backends:stuck:Retry:MaxAttempts"] = "1",
            ["Gateway:Backends:ok:Instances:0"] = healthy.SocketPath,
            ["Gateway:Routes:stuck:Path"] = "/stuck/{**rest}",
            ["Gateway:Routes:stuck:Backend"] = "stuck",
            ["Gateway:Routes:ok:Path"] = "/ok/{**rest}",
            ["Gateway:Routes:ok:Backend"] = "ok",
        };

        // The fake clock never moves: the stuck backend's sends wait (no overload verdict, no timeout) for the whole test.
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new GatewayFactory(dir, settings, s => s.AddSingleton<TimeProvider>(time));
        using var client = factory.CreateClient();
        var stuckClient = factory.Services.GetRequiredService<RouteTableProvider>().Current.Backends["stuck"].Instances[0].Client!;

        var stuckRequests = Enumerable.Range(0, 30).Select(i => client.GetAsync($"/stuck/{i}")).ToList();
        await Eventually.UntilAsync(() => stuckClient.Statistics.QueuedSends >= 30, HangGuard, TimeSpan.FromMilliseconds(5)); // all of them wait in its send queue

        var okResponses = await Task.WhenAll(Enumerable.Range(0, 100).Select(i => client.GetAsync($"/ok/{i}"))).WaitAsync(HangGuard);

        Assert.All(okResponses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        Assert.All(stuckRequests, t => Assert.False(t.IsCompleted));
        Assert.Equal(0, stuckClient.Statistics.SendFailures);
        foreach (var response in okResponses)
        {
            response.Dispose();
        }
    }

    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task SlowInstance_AttemptTimesOut_TheRetrySucceedsOnTheOtherInstance()
    {
        using var dir = new TempSocketDirectory();
        var slowEntered = new TaskCompletionSource<BackendRequest>(TaskCreationOptions.RunContinuationsAsynchronously);
        var slowCancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var slow = await TestBackend.StartAsync(dir.Socket("slow.sock"), async (request, token) =>
        {
            token.Register(() => slowCancelled.TrySetResult());
            slowEntered.TrySetResult(request);
            await Task.Delay(Timeout.Infinite, token);
            return BackendResponse.Text("never");
        });
        BackendRequest? fastSeen = null;
        await using var fast = await TestBackend.StartAsync(dir.Socket("fast.sock"), (request, _) =>
        {
            fastSeen = request;
            return ValueTask.FromResult(BackendResponse.Text("fast"));
        });
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new GatewayFactory(dir, ResilienceSettings.Route(slow.SocketPath, fast.SocketPath), s => s.AddSingleton<TimeProvider>(time));
        using var client = factory.CreateClient();

        // Round robin: one of two consecutive requests starts on the slow instance.
        HttpResponseMessage? response = null;
        for (var i = 0; i < 2 && response is null; i++)
        {
            var pending = client.GetAsync("/api/item");
            if (await Task.WhenAny(slowEntered.Task, pending) == pending)
            {
                (await pending).Dispose();
                continue;
            }

            time.Advance(TimeSpan.FromSeconds(1)); // the attempt timeout
            response = await pending.WaitAsync(TimeSpan.FromSeconds(30));
        }

        Assert.NotNull(response);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("fast", await response.Content.ReadAsStringAsync());
        var first = await slowEntered.Task;
        Assert.NotNull(fastSeen);
        Assert.Equal(first.CorrelationId, fastSeen.CorrelationId);
        Assert.Equal(2, fastSeen.Attempt);
        await slowCancelled.Task.WaitAsync(TimeSpan.FromSeconds(30)); // the abandoned attempt was cancelled
        response.Dispose();
    }

    /// <summary>
    /// A gateway in front of backend <c>b</c> at <paramref name="backendPath"/> with one in-flight slot, no retries, the
    /// given queue timeout and budget, and a fake clock: <c>/api/first</c> is sent and holds the slot in the backend
    /// (<paramref name="entered"/> completes), then <c>/api/second</c> is sent and waits in the instance's queue (its
    /// queue timeout running).
    /// </summary>
    private static async Task<QueuedBehindOne> QueueBehindOneAsync(TempSocketDirectory dir, string backendPath, Task entered, string method, string queueTimeout, string? budget = null)
    {
        var settings = ResilienceSettings.Route(backendPath);
        settings["Gateway:Backends:b:MaxInFlightPerInstance"] = "1";
        settings["Gateway:Backends:b:QueueTimeout"] = queueTimeout;
        if (budget is not null)
        {
            settings["Gateway:Backends:b:Timeout"] = budget;
        }

        settings["Gateway:Backends:b:Retry:MaxAttempts"] = "1";
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var factory = new GatewayFactory(dir, settings, s => s.AddSingleton<TimeProvider>(time));
        var client = factory.CreateClient();
        try
        {
            var instance = OnlyInstance(factory);
            var waiting = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            instance.Resilience.OnQueued = () => waiting.TrySetResult();

            var first = client.SendAsync(new HttpRequestMessage(new HttpMethod(method), "/api/first"));
            await entered.WaitAsync(HangGuard);
            var second = client.SendAsync(new HttpRequestMessage(new HttpMethod(method), "/api/second"));
            await waiting.Task.WaitAsync(HangGuard);
            return new QueuedBehindOne(factory, client, time, instance, first, second);
        }
        catch
        {
            client.Dispose();
            await factory.DisposeAsync();
            throw;
        }
    }

    /// <summary>What <see cref="QueueBehindOneAsync"/> set up; disposes the client, then the gateway.</summary>
    private sealed record QueuedBehindOne(GatewayFactory Factory, HttpClient Client, FakeTimeProvider Time, BackendInstance Instance, Task<HttpResponseMessage> First, Task<HttpResponseMessage> Second) : IAsyncDisposable
    {
        public async ValueTask DisposeAsync()
        {
            Client.Dispose();
            await Factory.DisposeAsync();
        }
    }

    /// <summary>The one instance of backend <c>b</c> in the factory's current route table.</summary>
    private static BackendInstance OnlyInstance(GatewayFactory factory) =>
        factory.Services.GetRequiredService<RouteTableProvider>().Current.Backends["b"].Instances[0];

    /// <summary>
    /// A gateway with one instance at <paramref name="path"/> (nothing bound yet), no retries, a breaker that opens after
    /// two failures for 5 s of <paramref name="time"/>: two requests have failed (503 <c>backend-absent</c>) and opened it.
    /// </summary>
    private static async Task<GatewayFactory> StartWithOpenCircuitAsync(TempSocketDirectory dir, string path, FakeTimeProvider time)
    {
        var settings = ResilienceSettings.Route(path);
        settings["Gateway:Backends:b:Retry:MaxAttempts"] = "1";
        settings["Gateway:Backends:b:CircuitBreaker:MinimumThroughput"] = "2";
        settings["Gateway:Backends:b:CircuitBreaker:BreakDuration"] = "00:00:05";
        var factory = new GatewayFactory(dir, settings, s => s.AddSingleton<TimeProvider>(time));
        try
        {
            using var client = factory.CreateClient();
            for (var i = 0; i < 2; i++)
            {
                using var failed = await client.GetAsync($"/api/{i}");
                await ForwardingTests.ReadProblemAsync(failed, HttpStatusCode.ServiceUnavailable, "backend-absent");
            }

            var instance = OnlyInstance(factory);
            Assert.Equal(CircuitState.Open, instance.Resilience.Circuit.CircuitState);
            return factory;
        }
        catch
        {
            await factory.DisposeAsync();
            throw;
        }
    }

    [Fact]
    public async Task CircuitBreaker_OpensOnFailures_ThenClosesAfterASuccessfulTrial()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("b.sock");
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = await StartWithOpenCircuitAsync(dir, path, time);
        using var client = factory.CreateClient();
        var instance = OnlyInstance(factory);

        // The instance comes up, but the circuit is open: the request is refused without sending.
        await using var backend = await TestBackend.StartAsync(path, (_, _) => ValueTask.FromResult(BackendResponse.Text("up")));
        using (var r3 = await client.GetAsync("/api/3"))
        {
            await ForwardingTests.ReadProblemAsync(r3, HttpStatusCode.ServiceUnavailable, "circuit-open");
        }

        time.Advance(TimeSpan.FromSeconds(5));
        using var r4 = await client.GetAsync("/api/4");

        Assert.Equal(HttpStatusCode.OK, r4.StatusCode);
        Assert.Equal(CircuitState.Closed, instance.Resilience.Circuit.CircuitState);
    }

    [Fact]
    public async Task CircuitBreaker_WhileHalfOpen_LetsOnlyTheTrialThrough_AndRefusesTheRestUnsent()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("b.sock");
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = await StartWithOpenCircuitAsync(dir, path, time);
        using var client = factory.CreateClient();
        var instance = OnlyInstance(factory);
        var calls = 0;
        var trialEntered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseTrial = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(path, async (_, token) =>
        {
            Interlocked.Increment(ref calls);
            trialEntered.TrySetResult();
            await releaseTrial.Task.WaitAsync(token);
            return BackendResponse.Text("up");
        });
        time.Advance(TimeSpan.FromSeconds(5));
        var trial = client.GetAsync("/api/trial");
        await trialEntered.Task.WaitAsync(HangGuard);
        Assert.Equal(CircuitState.HalfOpen, instance.Resilience.Circuit.CircuitState);

        using (var refused = await client.GetAsync("/api/during-trial"))
        {
            await ForwardingTests.ReadProblemAsync(refused, HttpStatusCode.ServiceUnavailable, "circuit-open");
        }

        releaseTrial.SetResult();
        using var ok = await trial.WaitAsync(HangGuard);
        Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        Assert.Equal(1, Volatile.Read(ref calls));
        Assert.Equal(CircuitState.Closed, instance.Resilience.Circuit.CircuitState);
    }

    [Fact]
    public async Task CircuitBreaker_OpenedWhileAnAttemptWasInFlight_StillReturnsThatAttemptsReply()
    {
        using var dir = new TempSocketDirectory();
        var slowEntered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseSlow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (request, token) =>
        {
            if (request.Path == "/api/slow")
            {
                slowEntered.TrySetResult();
                await releaseSlow.Task.WaitAsync(token);
                return BackendResponse.Text("slow but fine");
            }

            return BackendResponse.Error(IpcErrorCode.Internal, "bug");
        });
        var settings = ResilienceSettings.Route(backend.SocketPath);
        settings["Gateway:Backends:b:Retry:MaxAttempts"] = "1";
        settings["Gateway:Backends:b:CircuitBreaker:MinimumThroughput"] = "2";
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new GatewayFactory(dir, settings, s => s.AddSingleton<TimeProvider>(time));
        using var client = factory.CreateClient();
        var instance = OnlyInstance(factory);

        var slow = client.GetAsync("/api/slow");
        await slowEntered.Task.WaitAsync(HangGuard);
        for (var i = 0; i < 2; i++)
        {
            using var failed = await client.GetAsync($"/api/fail{i}");
            await ForwardingTests.ReadProblemAsync(failed, HttpStatusCode.BadGateway, "backend-error");
        }

        Assert.Equal(CircuitState.Open, instance.Resilience.Circuit.CircuitState);
        releaseSlow.SetResult();
        using var reply = await slow.WaitAsync(HangGuard);

        Assert.Equal(HttpStatusCode.OK, reply.StatusCode);
        Assert.Equal("slow but fine", await reply.Content.ReadAsStringAsync());
        Assert.Equal(CircuitState.Open, instance.Resilience.Circuit.CircuitState);
    }

    [Fact]
    public async Task CircuitBreaker_CountsInternalErrorReplies_ButNotNotFound()
    {
        using var dir = new TempSocketDirectory();
        var internalCalls = 0;
        var notFoundCalls = 0;
        await using var failing = await TestBackend.StartAsync(dir.Socket("failing.sock"), (_, _) =>
        {
            Interlocked.Increment(ref internalCalls);
            return ValueTask.FromResult(BackendResponse.Error(IpcErrorCode.Internal, "bug"));
        });
        await using var missing = await TestBackend.StartAsync(dir.Socket("missing.sock"), (_, _) =>
        {
            Interlocked.Increment(ref notFoundCalls);
            return ValueTask.FromResult(BackendResponse.Error(IpcErrorCode.NotFound, "no such thing"));
        });
        var settings = new Dictionary<string, string?>
        {
            ["Gateway:Backends:failing:Instances:0"] = failing.SocketPath,
            ["Gateway:Backends:missing:Instances:0"] = missing.SocketPath,
            ["Gateway:Routes:failing:Path"] = "/failing/{**rest}",
            ["Gateway:Routes:failing:Backend"] = "failing",
            ["Gateway:Routes:missing:Path"] = "/missing/{**rest}",
            ["Gateway:Routes:missing:Backend"] = "missing",
        };
        foreach (var backend in new[] { "failing", "missing" })
        {
            settings[$"Gateway:Backends:{backend}:Retry:MaxAttempts"] = "1";
            settings[$"Gateway:Backends:{backend}:CircuitBreaker:MinimumThroughput"] = "2";
        }

        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new GatewayFactory(dir, settings, s => s.AddSingleton<TimeProvider>(time));
        using var client = factory.CreateClient();
        var table = factory.Services.GetRequiredService<RouteTableProvider>().Current;

        // INTERNAL (5xx class): the instance is failing. Two replies open its circuit; the third request is refused unsent.
        for (var i = 0; i < 2; i++)
        {
            using var reply = await client.GetAsync($"/failing/{i}");
            await ForwardingTests.ReadProblemAsync(reply, HttpStatusCode.BadGateway, "backend-error");
        }

        Assert.Equal(CircuitState.Open, table.Backends["failing"].Instances[0].Resilience.Circuit.CircuitState);
        using (var refused = await client.GetAsync("/failing/3"))
        {
            await ForwardingTests.ReadProblemAsync(refused, HttpStatusCode.ServiceUnavailable, "circuit-open");
        }

        Assert.Equal(2, Volatile.Read(ref internalCalls));

        // NOT_FOUND (4xx class): about the request, not the instance; the circuit stays closed.
        for (var i = 0; i < 4; i++)
        {
            using var reply = await client.GetAsync($"/missing/{i}");
            await ForwardingTests.ReadProblemAsync(reply, HttpStatusCode.BadGateway, "backend-not-found");
        }

        Assert.Equal(CircuitState.Closed, table.Backends["missing"].Instances[0].Resilience.Circuit.CircuitState);
        Assert.Equal(4, Volatile.Read(ref notFoundCalls));
        Assert.False(table.Backends["failing"].Instances[0].Resilience.IsEjected); // error replies do not eject
    }

    [Fact]
    public async Task InFlightCapReached_RequestWaitsTheQueueTimeout_Then503WithRetryAfter()
    {
        using var dir = new TempSocketDirectory();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (_, _) =>
        {
            entered.TrySetResult();
            await release.Task;
            return BackendResponse.Text("done");
        });
        await using var queued = await QueueBehindOneAsync(dir, backend.SocketPath, entered.Task, "GET", queueTimeout: "00:00:02");

        queued.Time.Advance(TimeSpan.FromSeconds(2));
        using var rejected = await queued.Second.WaitAsync(HangGuard);
        release.TrySetResult();
        using var done = await queued.First.WaitAsync(HangGuard);

        await ForwardingTests.ReadProblemAsync(rejected, HttpStatusCode.ServiceUnavailable, "backend-busy");
        Assert.Equal(TimeSpan.FromSeconds(1), rejected.Headers.RetryAfter?.Delta);
        Assert.Equal(HttpStatusCode.OK, done.StatusCode);
        Assert.Equal(1, queued.Instance.Resilience.Rejected);
    }

    [Theory]
    [InlineData("POST")] // never retried: no route pipeline, the budget cuts the slot wait itself
    [InlineData("GET")] // retryable: the route pipeline's timeout applies as well
    public async Task InFlightCapReached_AndTheBudgetEndsBeforeTheQueueTimeout_504NotBusy_AndNothingMoreIsSent(string method)
    {
        using var dir = new TempSocketDirectory();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var calls = 0;
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (_, token) =>
        {
            Interlocked.Increment(ref calls);
            entered.TrySetResult();
            await release.Task.WaitAsync(token);
            return BackendResponse.Text("done");
        }, timeProvider: new FakeTimeProvider()); // the backend's clock stands still: only the gateway's budget may end the first request, never the backend's real-time deadline on a slow machine
        await using var queued = await QueueBehindOneAsync(dir, backend.SocketPath, entered.Task, method, queueTimeout: "00:00:30", budget: "00:00:02");

        queued.Time.Advance(TimeSpan.FromSeconds(2));
        using var timedOut = await queued.Second.WaitAsync(HangGuard);
        using var firstDone = await queued.First.WaitAsync(HangGuard);

        await ForwardingTests.ReadProblemAsync(timedOut, HttpStatusCode.GatewayTimeout, "timeout");
        Assert.Equal(HttpStatusCode.GatewayTimeout, firstDone.StatusCode); // its own reply timeout: the same budget
        Assert.Equal(1, Volatile.Read(ref calls));
        Assert.Equal(0, queued.Instance.Resilience.Rejected);
        release.TrySetResult();
    }

    [Theory]
    [InlineData("POST")]
    [InlineData("GET")]
    public async Task QueuedForASlot_TheRequestIsSentWithTheBudgetLeftAfterItsWait_NotTheBudgetItStartedWith(string method)
    {
        using var dir = new TempSocketDirectory();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var backendClock = new FakeTimeProvider(DateTimeOffset.UtcNow); // stands still: a deadline minus it is the budget sent
        TimeSpan? secondBudget = null;
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (request, token) =>
        {
            if (request.Path == "/api/first")
            {
                entered.TrySetResult();
                await release.Task.WaitAsync(token);
            }
            else
            {
                secondBudget = request.Deadline - backendClock.GetUtcNow();
            }

            return BackendResponse.Text("done");
        }, timeProvider: backendClock);
        await using var queued = await QueueBehindOneAsync(dir, backend.SocketPath, entered.Task, method, queueTimeout: "00:00:30", budget: "00:00:02");

        queued.Time.Advance(TimeSpan.FromMilliseconds(1500)); // 1.5 s of the 2 s budget spent waiting for the slot
        release.TrySetResult();
        using var firstDone = await queued.First.WaitAsync(HangGuard);
        using var secondDone = await queued.Second.WaitAsync(HangGuard);

        Assert.Equal(HttpStatusCode.OK, firstDone.StatusCode);
        Assert.Equal(HttpStatusCode.OK, secondDone.StatusCode);
        Assert.NotNull(secondBudget);
        Assert.InRange(secondBudget.Value, TimeSpan.FromMilliseconds(1), TimeSpan.FromMilliseconds(500)); // not the 2 s it started with
    }
}
