using System.Net;
using System.Net.Sockets;
using Gateway.Diagnostics;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Protocol;
using Gateway.Routing;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using static Gateway.Tests.Telemetry.MetricCapture;
using static Gateway.Tests.Telemetry.TelemetrySettings;

namespace Gateway.Tests.Telemetry;

/// <summary>
/// The resilience metrics (retries by reason, circuit state) and the send-queue wait, after known sequences on a
/// <see cref="FakeTimeProvider"/>. Route, backend and socket names are unique per test: the Gateway.Ipc meter is
/// process-wide and tests run in parallel.
/// </summary>
public class ResilienceMetricsTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Retries_AreCountedByRouteBackendAndReason()
    {
        using var dir = new TempSocketDirectory();
        var overloadedCalls = 0;
        await using var overloaded = await TestBackend.StartAsync(dir.Socket("ovl.sock"), (_, _) =>
        {
            Interlocked.Increment(ref overloadedCalls);
            return ValueTask.FromResult(BackendResponse.Error(IpcErrorCode.Overloaded, "busy"));
        });
        var slowEntered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseSlow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var slow = await TestBackend.StartAsync(dir.Socket("slow.sock"), async (_, _) =>
        {
            slowEntered.TrySetResult();
            await releaseSlow.Task;
            return Ok();
        });
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var metrics = new MetricCapture();
        var settings = new Dictionary<string, string?>
        {
            ["Gateway:Telemetry:Enabled"] = "true",
            ["Gateway:Backends:rabs:Instances:0"] = dir.Socket("absent.sock"),
            ["Gateway:Backends:rovl:Instances:0"] = overloaded.SocketPath,
            ["Gateway:Backends:rslow:Instances:0"] = slow.SocketPath,
            ["Gateway:Backends:rslow:AttemptTimeout"] = "00:00:01",
            ["Gateway:Routes:retry-abs:Path"] = "/abs",
            ["Gateway:Routes:retry-abs:Backend"] = "rabs",
            ["Gateway:Routes:retry-ovl:Path"] = "/ovl",
            ["Gateway:Routes:retry-ovl:Backend"] = "rovl",
            ["Gateway:Routes:retry-slow:Path"] = "/slow",
            ["Gateway:Routes:retry-slow:Backend"] = "rslow",
        };
        foreach (var backend in new[] { "rabs", "rovl", "rslow" })
        {
            settings[$"Gateway:Backends:{backend}:Retry:BaseDelay"] = "00:00:00";
            settings[$"Gateway:Backends:{backend}:Retry:MaxDelay"] = "00:00:00";
        }

        await using var factory = new GatewayFactory(dir, settings, services =>
        {
            services.AddSingleton<TimeProvider>(time);
            metrics.Register(services);
        });
        using var client = factory.CreateClient();

        // Absent: 3 attempts (2 retries), then 503. Overloaded: 3 attempts, then 503. Slow: the first attempt times
        // out after 1 s, the retry gets the (single) execution's reply.
        using (var absent = await client.GetAsync("/abs"))
        using (var busy = await client.GetAsync("/ovl"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, absent.StatusCode);
            Assert.Equal(HttpStatusCode.ServiceUnavailable, busy.StatusCode);
        }

        var pending = client.GetAsync("/slow");
        await slowEntered.Task.WaitAsync(HangGuard);
        time.Advance(TimeSpan.FromSeconds(1));
        releaseSlow.SetResult();
        using (var response = await pending.WaitAsync(HangGuard))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        var m = metrics.Collect(factory.Services);

        Assert.Equal(2, Sum(m, "gateway.retries", ("gateway.route", "retry-abs"), ("gateway.backend", "rabs"), ("gateway.retry_reason", "backend_absent")));
        Assert.Equal(2, Sum(m, "gateway.retries", ("gateway.route", "retry-abs")));
        Assert.Equal(2, Sum(m, "gateway.retries", ("gateway.route", "retry-ovl"), ("gateway.backend", "rovl"), ("gateway.retry_reason", "backend_overloaded")));
        Assert.Equal(2, Sum(m, "gateway.retries", ("gateway.route", "retry-ovl")));
        Assert.Equal(1, Sum(m, "gateway.retries", ("gateway.route", "retry-slow"), ("gateway.backend", "rslow"), ("gateway.retry_reason", "timeout")));
        Assert.Equal(1, Sum(m, "gateway.retries", ("gateway.route", "retry-slow")));

        // The attempt-level view of the same: the slow backend's first attempt timed out, its second did not.
        var slowServer = ("server.address", (object)slow.SocketPath);
        Assert.Equal(1, Sum(m, "gateway.ipc.client.timeouts", slowServer));
        Assert.Equal(1, Sum(m, "gateway.ipc.client.retries", slowServer));
        Assert.Equal(1, HistogramCount(m, "gateway.ipc.client.attempt.duration", slowServer, ("gateway.ipc.outcome", "timeout")));
        Assert.Equal(1, HistogramCount(m, "gateway.ipc.client.attempt.duration", slowServer, ("gateway.ipc.outcome", "response")));
        Assert.Equal(2, Sum(m, "gateway.ipc.client.retries", ("server.address", overloaded.SocketPath)));
    }

    [Fact]
    public async Task CircuitState_FollowsTheBreaker_OpenThenHalfOpenDuringTheTrialThenClosed()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("cb.sock");
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var metrics = new MetricCapture();
        var settings = Route(path, "circuit-r", "circuit-b");
        settings["Gateway:Backends:circuit-b:Retry:MaxAttempts"] = "1";
        settings["Gateway:Backends:circuit-b:CircuitBreaker:MinimumThroughput"] = "2";
        settings["Gateway:Backends:circuit-b:CircuitBreaker:BreakDuration"] = "00:00:05";
        await using var factory = new GatewayFactory(dir, settings, services =>
        {
            services.AddSingleton<TimeProvider>(time);
            metrics.Register(services);
        });
        using var client = factory.CreateClient();
        var tags = new (string, object)[] { ("gateway.backend", "circuit-b"), ("server.address", path) };

        Assert.Equal(0, ScopedMetrics.Gauge(factory.Services, GatewayMetrics.MeterName, "gateway.circuit.state", tags));

        // Two failures (nothing bound at the path) open the circuit.
        for (var i = 0; i < 2; i++)
        {
            using var failed = await client.GetAsync("/api/x");
            Assert.Equal(HttpStatusCode.ServiceUnavailable, failed.StatusCode);
        }

        Assert.Equal(2, ScopedMetrics.Gauge(factory.Services, GatewayMetrics.MeterName, "gateway.circuit.state", tags));

        // The instance comes up; after the break the next request is the trial, held in the handler: half-open.
        var trialEntered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseTrial = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(path, async (_, token) =>
        {
            trialEntered.TrySetResult();
            await releaseTrial.Task.WaitAsync(token); // a failed assertion must not leave the handler (and dispose) hanging
            return Ok();
        });
        time.Advance(TimeSpan.FromSeconds(5));
        var trial = client.GetAsync("/api/trial");
        await trialEntered.Task.WaitAsync(HangGuard);
        Assert.Equal(1, ScopedMetrics.Gauge(factory.Services, GatewayMetrics.MeterName, "gateway.circuit.state", tags));

        releaseTrial.SetResult();
        using (var ok = await trial.WaitAsync(HangGuard))
        {
            Assert.Equal(HttpStatusCode.OK, ok.StatusCode);
        }

        Assert.Equal(0, ScopedMetrics.Gauge(factory.Services, GatewayMetrics.MeterName, "gateway.circuit.state", tags));
    }

    [Fact]
    public async Task SendQueueWait_IsRecordedForASendThatWaitedForAFullBackendQueue_WithItsWaitOnTheGatewaysClock()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("stuck.sock");

        // A backend that stopped reading: a bound socket the test reads only when it chooses to.
        using var stuck = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        stuck.Bind(new UnixDomainSocketEndPoint(path));
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var metrics = new MetricCapture();
        var settings = Route(path, "queued-r", "queued-b");
        settings["Gateway:Backends:queued-b:Retry:MaxAttempts"] = "1";
        await using var factory = new GatewayFactory(dir, settings, services =>
        {
            services.AddSingleton<TimeProvider>(time);
            metrics.Register(services);
        });
        using var client = factory.CreateClient();
        var statistics = factory.Services.GetRequiredService<RouteTableProvider>().Instances.Single(i => i.SocketPath == path).Client!.Statistics;

        // The start-up health probe's PING went out at once (the queue was empty); then the test fills the queue.
        await Eventually.UntilAsync(() => statistics.RequestsSent == 1, HangGuard, TimeSpan.FromMilliseconds(5));
        Eventually.FillReceiveQueue(path);

        var pending = client.GetAsync("/api/queued");
        await Eventually.UntilAsync(() => statistics.QueuedSends == 1, HangGuard, TimeSpan.FromMilliseconds(5));
        time.Advance(TimeSpan.FromMilliseconds(250));

        // The backend reads again: the queued REQUEST goes out; answer it.
        var (request, sender) = await ReceiveRequestAsync(stuck);
        using (var writer = new FrameWriter())
        {
            writer.BeginResponse(request.CorrelationId, request.Attempt, 200);
            writer.Complete();
            await stuck.SendToAsync(writer.WrittenMemory, SocketFlags.None, sender);
        }

        using (var response = await pending.WaitAsync(HangGuard))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        var m = metrics.Collect(factory.Services);
        var server = ("server.address", (object)path);
        Assert.Equal(1, HistogramCount(m, "gateway.ipc.client.send_queue.wait", server));
        Assert.Equal(0.25, HistogramSum(m, "gateway.ipc.client.send_queue.wait", server), 6);
    }

    [Fact]
    public async Task ClientAbort_IsACancelledAttempt_NotATimeout()
    {
        using var dir = new TempSocketDirectory();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("abort.sock"), async (_, token) =>
        {
            token.Register(() => cancelled.TrySetResult());
            entered.TrySetResult();
            await Task.Delay(Timeout.Infinite, token);
            return Ok();
        });
        var metrics = new MetricCapture();
        var logs = new CapturingLoggerProvider();
        var settings = Route(backend.SocketPath, "abort-r", "abort-b");
        settings["Logging:LogLevel:Gateway"] = "Information";

        // Real Kestrel: a disconnect is a closed connection (TestServer does not abort).
        await using var factory = new GatewayFactory(dir, settings, services =>
        {
            services.AddSingleton<Microsoft.Extensions.Logging.ILoggerProvider>(logs);
            metrics.Register(services);
        }).StartKestrel();
        using var client = factory.CreateGatewayClient();
        using var abort = new CancellationTokenSource();

        var pending = client.GetAsync("/api/abort", abort.Token);
        await entered.Task.WaitAsync(HangGuard);
        await abort.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending);
        await logs.WaitForAsync(1020); // "Client disconnected": logged after the attempt recorded its outcome
        await cancelled.Task.WaitAsync(HangGuard);

        var m = metrics.Collect(factory.Services);
        var server = ("server.address", (object)backend.SocketPath);
        Assert.Equal(1, HistogramCount(m, "gateway.ipc.client.attempt.duration", server, ("gateway.ipc.outcome", "cancelled")));
        Assert.Equal(1, HistogramCount(m, "gateway.ipc.client.attempt.duration", server));
        Assert.Equal(0, SumOrZero(m, "gateway.ipc.client.timeouts", server));
    }

    /// <summary>Reads (skipping the filler and the PING) until a REQUEST arrives; returns its header and sender.</summary>
    private static async Task<(FrameHeader Header, SocketAddress Sender)> ReceiveRequestAsync(Socket socket)
    {
        var buffer = new byte[ProtocolConstants.MaxDatagram + 1];
        using var guard = new CancellationTokenSource(HangGuard);
        while (true)
        {
            var sender = new SocketAddress(AddressFamily.Unix, 110);
            var received = await socket.ReceiveFromAsync(buffer.AsMemory(), SocketFlags.None, sender, guard.Token);
            if (FrameHeader.TryRead(buffer.AsSpan(0, received), out var header) && header.Kind == MessageKind.Request)
            {
                var exact = new SocketAddress(AddressFamily.Unix, sender.Size);
                sender.Buffer.Span[..sender.Size].CopyTo(exact.Buffer.Span);
                return (header, exact);
            }
        }
    }
}
