using System.Net;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Diagnostics;
using Gateway.Ipc.Protocol;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;
using static Gateway.Tests.Telemetry.MetricCapture;
using static Gateway.Tests.Telemetry.TelemetrySettings;

namespace Gateway.Tests.Telemetry;

public class MetricsAndLogsTests
{
    [Fact]
    public async Task KnownSequence_RecordsDurationsByOutcome_AttemptsTimeoutsLateRepliesInFlightAndCircuit()
    {
        using var dir = new TempSocketDirectory();
        var slowEntered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var releaseSlow = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (request, _) =>
        {
            switch (request.Path)
            {
                case "/api/missing":
                    return BackendResponse.Error(IpcErrorCode.NotFound, "missing");
                case "/api/slow":
                    // Ignores cancellation: its reply arrives after the gateway gave up, as a late reply.
                    slowEntered.TrySetResult();
                    await releaseSlow.Task;
                    return Ok();
                default:
                    return Ok();
            }
        });
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var metrics = new MetricCapture();
        var logs = new CapturingLoggerProvider();
        var settings = Route(backend.SocketPath, "metered", "mb");
        settings["Gateway:Routes:metered:Timeout"] = "00:00:03";
        settings["Logging:LogLevel:Gateway.Ipc"] = "Debug";
        await using var factory = new GatewayFactory(dir, settings, services =>
        {
            services.AddSingleton<TimeProvider>(time);
            services.AddSingleton<Microsoft.Extensions.Logging.ILoggerProvider>(logs);
            metrics.Register(services);
        });
        using var client = factory.CreateClient();

        // 2 successes, 1 ERROR reply, 1 timeout whose reply then arrives late.
        using (var ok1 = await client.GetAsync("/api/a"))
        using (var ok2 = await client.GetAsync("/api/b"))
        using (var missing = await client.GetAsync("/api/missing"))
        {
            Assert.Equal(HttpStatusCode.OK, ok1.StatusCode);
            Assert.Equal(HttpStatusCode.OK, ok2.StatusCode);
            Assert.Equal(HttpStatusCode.BadGateway, missing.StatusCode);
        }

        var slow = client.GetAsync("/api/slow");
        await slowEntered.Task.WaitAsync(TimeSpan.FromSeconds(30));
        time.Advance(TimeSpan.FromSeconds(3));
        using (var timedOut = await slow)
        {
            Assert.Equal(HttpStatusCode.GatewayTimeout, timedOut.StatusCode);
        }

        releaseSlow.SetResult();
        await logs.WaitForAsync(2106); // the client dropped the late reply

        var m = metrics.Collect(factory.Services);

        var route = ("gateway.route", (object)"metered");
        Assert.Equal(2, HistogramCount(m, "gateway.request.duration", route, ("gateway.backend", "mb"), ("gateway.outcome", "success"), ("http.response.status_code", 200)));
        Assert.Equal(1, HistogramCount(m, "gateway.request.duration", route, ("gateway.outcome", "error"), ("http.response.status_code", 502)));
        Assert.Equal(1, HistogramCount(m, "gateway.request.duration", route, ("gateway.outcome", "timeout"), ("http.response.status_code", 504)));
        Assert.Equal(4, HistogramCount(m, "gateway.request.duration", route));

        var server = ("server.address", (object)backend.SocketPath);
        Assert.Equal(2, HistogramCount(m, "gateway.ipc.client.attempt.duration", server, ("gateway.ipc.outcome", "response")));
        Assert.Equal(1, HistogramCount(m, "gateway.ipc.client.attempt.duration", server, ("gateway.ipc.outcome", "error"), ("error.type", "not_found")));
        // The attempt that ended because the request's budget ran out is a timeout (not "cancelled"), and not retried.
        Assert.Equal(1, HistogramCount(m, "gateway.ipc.client.attempt.duration", server, ("gateway.ipc.outcome", "timeout"), ("error.type", "timeout")));
        Assert.Equal(0, HistogramCountOrZero(m, "gateway.ipc.client.attempt.duration", server, ("gateway.ipc.outcome", "cancelled")));
        Assert.Equal(4, HistogramCount(m, "gateway.ipc.client.attempt.duration", server));
        Assert.Equal(1, Sum(m, "gateway.ipc.client.timeouts", server));
        Assert.Equal(1, Sum(m, "gateway.backend.timeouts", server));
        Assert.Equal(0, SumOrZero(m, "gateway.retries", route));
        Assert.Equal(1, Sum(m, "gateway.backend.datagrams.dropped", server, ("gateway.drop_reason", "late")));
        Assert.Equal(0, Sum(m, "gateway.backend.datagrams.dropped", server, ("gateway.drop_reason", "spoofed")));
        Assert.Equal(0, Sum(m, "gateway.backend.datagrams.dropped", server, ("gateway.drop_reason", "malformed")));
        Assert.Equal(0, Sum(m, "gateway.backend.requests.active", server));
        Assert.Equal(0, Gauge(m, "gateway.circuit.state", ("gateway.backend", "mb"), server)); // closed
    }

    [Fact]
    public async Task Startup_AdvisesRaisingTheKernelsDatagramQueue_ExactlyWhenItIsShort()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(new BackendResponse()));
        var logs = new CapturingLoggerProvider();
        var settings = Route(backend.SocketPath, "advised", "ab");
        settings["Logging:LogLevel:Gateway"] = "Information";
        await using var factory = new GatewayFactory(dir, settings, services =>
            services.AddSingleton<Microsoft.Extensions.Logging.ILoggerProvider>(logs));
        using var client = factory.CreateClient();

        // The startup summary logs the backends (1011), then the advice, in one call during host start.
        Assert.Contains(logs.Entries, e => e.EventId == 1011);
        var advice = logs.Entries.Where(e => e.EventId == 1017).ToList();
        var setting = UnixDatagramQueue.ReadMaxLength();
        if (UnixDatagramQueue.IsBelowRecommended(setting))
        {
            var entry = Assert.Single(advice);
            Assert.Equal(Microsoft.Extensions.Logging.LogLevel.Information, entry.Level);
            Assert.Contains($"at most {setting + 1} datagrams (net.unix.max_dgram_qlen = {setting})", entry.Message, StringComparison.Ordinal);
            Assert.Contains("64 or more", entry.Message, StringComparison.Ordinal);
        }
        else
        {
            Assert.Empty(advice);
        }
    }

    [Fact]
    public async Task LogLine_WrittenWhileForwarding_CarriesTheTraceIdSpanIdAndCorrelationId()
    {
        using var dir = new TempSocketDirectory();
        var spans = new SpanCapture();
        var logs = new LogCapture(spans.TraceId);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) =>
            ValueTask.FromResult(BackendResponse.Error(IpcErrorCode.Internal, "boom")));
        await using var factory = new GatewayFactory(dir, Route(backend.SocketPath, "logged", "lb"), services =>
        {
            spans.Register(services);
            logs.Register(services);
        });
        using var client = factory.CreateClient();
        using var message = new HttpRequestMessage(HttpMethod.Get, "/api/x");
        message.Headers.Add("traceparent", spans.CallerTraceParent);

        using var response = await client.SendAsync(message);
        var record = await logs.WaitForAsync(1022); // "Backend answered with error"
        var gatewaySpan = Assert.Single(await spans.WaitForAsync(s => s.Any(a => a.Source.Name == "Microsoft.AspNetCore")), a => a.Source.Name == "Microsoft.AspNetCore");

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        Assert.Equal(spans.TraceId, record.TraceId);
        Assert.Equal(gatewaySpan.SpanId, record.SpanId);
        Assert.Equal(Assert.Single(response.Headers.GetValues("X-Correlation-Id")), record.Scopes["CorrelationId"]);
        Assert.Equal("logged", record.Scopes["Route"]);
    }
}
