using System.Diagnostics;
using System.Net;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Client;
using Gateway.Ipc.Diagnostics;
using Gateway.Ipc.Protocol;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using OpenTelemetry;
using OpenTelemetry.Trace;
using static Gateway.Tests.Telemetry.TelemetrySettings;

namespace Gateway.Tests.Telemetry;

/// <summary>Spans of caller → gateway (ASP.NET Core server span) → attempt (client span) → backend (server span).</summary>
public class TracingTests
{
    [Fact]
    public async Task Request_WithCallerTraceParent_IsOneTrace_GatewayServerSpan_AttemptClientSpan_BackendServerSpan()
    {
        using var dir = new TempSocketDirectory();
        var capture = new SpanCapture(); // disposed by the tracer provider
        BackendRequest? seen = null;
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) =>
        {
            seen = request;
            return ValueTask.FromResult(Ok());
        });
        await using var factory = new GatewayFactory(dir, Route(backend.SocketPath, "traced", "tb"), capture.Register);
        using var client = factory.CreateClient();
        using var message = new HttpRequestMessage(HttpMethod.Get, "/api/items/1");
        message.Headers.Add("traceparent", capture.CallerTraceParent);

        using var response = await client.SendAsync(message);
        var spans = await capture.WaitForAsync(s => s.Count(a => a.Source.Name == "Microsoft.AspNetCore") == 1 && s.Count(a => IsIpc(a, ActivityKind.Server)) == 1);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        var correlationId = Assert.Single(response.Headers.GetValues("X-Correlation-Id"));
        var gateway = Assert.Single(spans, a => a.Source.Name == "Microsoft.AspNetCore");
        var attempt = Assert.Single(spans, a => IsIpc(a, ActivityKind.Client));
        var handled = Assert.Single(spans, a => IsIpc(a, ActivityKind.Server));

        // One trace, the caller's; each span the child of the previous hop.
        Assert.All(spans, a => Assert.Equal(capture.TraceId, a.TraceId));
        Assert.Equal(ActivityKind.Server, gateway.Kind);
        Assert.Equal(capture.CallerSpanId, gateway.ParentSpanId);
        Assert.Equal(gateway.SpanId, attempt.ParentSpanId);
        Assert.Equal(attempt.SpanId, handled.ParentSpanId);
        Assert.True(handled.HasRemoteParent);
        Assert.NotNull(seen);
        Assert.Equal(attempt.Id, seen.TraceParent);

        Assert.Equal("traced", Tag(gateway, "gateway.route"));
        Assert.Equal("tb", Tag(gateway, "gateway.backend"));
        Assert.Equal(correlationId, Tag(gateway, IpcDiagnostics.CorrelationIdTag));

        Assert.Equal("unix", Tag(attempt, "network.transport"));
        Assert.Equal(backend.SocketPath, Tag(attempt, "server.address"));
        Assert.Equal(correlationId, Tag(attempt, IpcDiagnostics.CorrelationIdTag));
        Assert.Equal(1, attempt.GetTagItem(IpcDiagnostics.AttemptTag));
        Assert.Equal("response", Tag(attempt, IpcDiagnostics.OutcomeTag));
        Assert.Equal(200, attempt.GetTagItem("http.response.status_code"));
        Assert.Null(attempt.GetTagItem("error.type"));
        Assert.Equal(ActivityStatusCode.Unset, attempt.Status);

        Assert.Equal("unix", Tag(handled, "network.transport"));
        Assert.Equal(backend.SocketPath, Tag(handled, "server.address"));
        Assert.Equal(correlationId, Tag(handled, IpcDiagnostics.CorrelationIdTag));
        Assert.Equal("GET", Tag(handled, "http.request.method"));
        Assert.Equal("http", Tag(handled, "url.scheme"));
        Assert.Equal("/api/items/1", Tag(handled, "url.path"));
        Assert.Equal(200, handled.GetTagItem("http.response.status_code"));
        Assert.Equal("GET", Tag(attempt, "http.request.method"));

        // The names docs/observability.md gives.
        Assert.Equal("GET /api/{**rest}", gateway.DisplayName);
        Assert.Equal(IpcDiagnostics.ClientActivityName, attempt.OperationName);
        Assert.Equal($"{IpcDiagnostics.ClientActivityName} {backend.SocketPath}", attempt.DisplayName);
        Assert.Equal(IpcDiagnostics.ServerActivityName, handled.OperationName);
        Assert.Equal($"{IpcDiagnostics.ServerActivityName} GET", handled.DisplayName);
    }

    [Fact]
    public async Task RawRequest_HasItsAttemptClientSpan_ChildOfTheGatewaySpan_MarkedRaw_WithoutCorrelationId()
    {
        using var dir = new TempSocketDirectory();
        var capture = new SpanCapture(); // disposed by the tracer provider
        await using var daemon = await RawServers.StartPythonAsync(dir.Socket("py.sock"));
        var settings = Route(dir.Socket("py.sock"), "raw-traced", "rawtb", "/upper");
        settings["Gateway:Backends:rawtb:Mode"] = "Raw";
        settings["Gateway:Backends:rawtb:Timeout"] = "00:01:00";
        await using var factory = new GatewayFactory(dir, settings, capture.Register);
        using var client = factory.CreateClient();
        using var message = new HttpRequestMessage(HttpMethod.Post, "/upper") { Content = new StringContent("hello") };
        message.Headers.Add("traceparent", capture.CallerTraceParent);

        using var response = await client.SendAsync(message);
        var spans = await capture.WaitForAsync(s => s.Any(a => a.Source.Name == "Microsoft.AspNetCore") && s.Any(a => IsIpc(a, ActivityKind.Client)));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("HELLO", await response.Content.ReadAsStringAsync());
        var gateway = Assert.Single(spans, a => a.Source.Name == "Microsoft.AspNetCore");
        var attempt = Assert.Single(spans, a => IsIpc(a, ActivityKind.Client));
        Assert.Equal(capture.TraceId, attempt.TraceId);
        Assert.Equal(gateway.SpanId, attempt.ParentSpanId);
        Assert.Equal("raw", Tag(attempt, IpcDiagnostics.ModeTag));
        Assert.Equal("POST", Tag(attempt, "http.request.method"));
        Assert.Equal(dir.Socket("py.sock"), Tag(attempt, "server.address"));
        Assert.Equal(1, attempt.GetTagItem(IpcDiagnostics.AttemptTag));
        Assert.Equal("response", Tag(attempt, IpcDiagnostics.OutcomeTag));
        Assert.Null(attempt.GetTagItem(IpcDiagnostics.CorrelationIdTag));
        Assert.Equal(ActivityStatusCode.Unset, attempt.Status);
    }

    [Fact]
    public async Task BackendErrorReply_MarksAttemptAndBackendSpansWithErrorType()
    {
        using var dir = new TempSocketDirectory();
        var capture = new SpanCapture(); // disposed by the tracer provider
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) =>
            ValueTask.FromResult(BackendResponse.Error(IpcErrorCode.NotFound, "no such item")));
        await using var factory = new GatewayFactory(dir, Route(backend.SocketPath, "errs", "eb"), capture.Register);
        using var client = factory.CreateClient();
        using var message = new HttpRequestMessage(HttpMethod.Get, "/api/items/404");
        message.Headers.Add("traceparent", capture.CallerTraceParent);

        using var response = await client.SendAsync(message);
        var spans = await capture.WaitForAsync(s => s.Any(a => a.Source.Name == "Microsoft.AspNetCore") && s.Any(a => IsIpc(a, ActivityKind.Server)));

        Assert.Equal(HttpStatusCode.BadGateway, response.StatusCode);
        var attempt = Assert.Single(spans, a => IsIpc(a, ActivityKind.Client));
        var handled = Assert.Single(spans, a => IsIpc(a, ActivityKind.Server));
        Assert.Equal("error", Tag(attempt, IpcDiagnostics.OutcomeTag));
        Assert.Equal("not_found", Tag(attempt, "error.type"));
        Assert.Equal(ActivityStatusCode.Error, attempt.Status);
        Assert.Equal("not_found", Tag(handled, "error.type"));
        Assert.Equal(ActivityStatusCode.Error, handled.Status);
        Assert.Equal("no such item", handled.StatusDescription);
    }

    [Fact]
    public async Task Retry_EachAttemptHasItsOwnClientSpan_AndEachBackendSpanIsTheChildOfItsAttempt()
    {
        using var dir = new TempSocketDirectory();
        var capture = new SpanCapture(); // disposed by the tracer provider
        var seen = new List<BackendRequest>();
        // No replay cache: the retry executes again, so each attempt has a backend span.
        await using var backend = await TestBackend.StartAsync(
            dir.Socket("b.sock"),
            (request, _) =>
            {
                lock (seen)
                {
                    seen.Add(request);
                }

                return ValueTask.FromResult(request.Attempt == 1 ? BackendResponse.Error(IpcErrorCode.Overloaded, "busy") : Ok());
            },
            options => options.ReplayCacheSize = 0);
        using var tracing = Sdk.CreateTracerProviderBuilder().AddSource(IpcDiagnostics.ActivitySourceName).AddProcessor(capture).Build();
        await using var ipc = new DatagramClient(new DatagramClientOptions { BackendPath = backend.SocketPath });
        using var caller = new Activity("caller").SetParentId(capture.TraceId, capture.CallerSpanId, ActivityTraceFlags.Recorded).Start();
        using var writer = new FrameWriter();
        writer.BeginRequest(ipc.NextCorrelationId(), 1, 0, "POST", "/orders", caller.Id);
        writer.Complete();

        using (var first = await ipc.SendTracedAsync(writer, TimeSpan.FromSeconds(30)))
        {
            Assert.Equal(MessageKind.Error, first.Kind);
        }

        FrameHeader.PatchAttempt(writer.WrittenSpan, 2);
        using (var second = await ipc.SendTracedAsync(writer, TimeSpan.FromSeconds(30)))
        {
            Assert.Equal(MessageKind.Response, second.Kind);
        }

        var spans = await capture.WaitForAsync(s => s.Count(a => IsIpc(a, ActivityKind.Server)) == 2 && s.Count(a => IsIpc(a, ActivityKind.Client)) == 2);

        var attempts = spans.Where(a => IsIpc(a, ActivityKind.Client)).OrderBy(a => (int)a.GetTagItem(IpcDiagnostics.AttemptTag)!).ToList();
        Assert.Equal([1, 2], attempts.Select(a => (int)a.GetTagItem(IpcDiagnostics.AttemptTag)!));
        Assert.All(attempts, a => Assert.Equal(caller.SpanId, a.ParentSpanId));
        Assert.Single(attempts.Select(a => Tag(a, IpcDiagnostics.CorrelationIdTag)).Distinct());
        Assert.NotEqual(attempts[0].SpanId, attempts[1].SpanId);
        Assert.Equal("overloaded", Tag(attempts[0], "error.type"));
        Assert.Equal("response", Tag(attempts[1], IpcDiagnostics.OutcomeTag));

        // The traceparent was rewritten per attempt: each backend execution is the child of its own attempt.
        Assert.Equal([attempts[0].Id, attempts[1].Id], seen.OrderBy(r => r.Attempt).Select(r => r.TraceParent));
        foreach (var attempt in attempts)
        {
            var number = (int)attempt.GetTagItem(IpcDiagnostics.AttemptTag)!;
            var handled = Assert.Single(spans, a => IsIpc(a, ActivityKind.Server) && (int)a.GetTagItem(IpcDiagnostics.AttemptTag)! == number);
            Assert.Equal(attempt.SpanId, handled.ParentSpanId);
        }
    }

    [Fact]
    public void TraceParentPatch_RewritesOnlyThe55Bytes_AndLeavesAFrameWithoutTraceContextUnchanged()
    {
        using var writer = new FrameWriter();
        const string Original = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
        const string Replacement = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        writer.BeginRequest(7, 1, 0, "GET", "/x?y=1", Original, "k=v");
        writer.AddHeader("a", "b");
        writer.WriteBody("body"u8);
        var before = writer.Complete().ToArray();

        Assert.True(RequestTraceParent.TryPatch(writer.WrittenSpan, Replacement));

        var view = RequestView.Read(writer.WrittenSpan[ProtocolConstants.HeaderSize..]);
        Assert.Equal(Replacement, System.Text.Encoding.ASCII.GetString(view.TraceParent));
        Assert.Equal("k=v"u8.ToArray(), view.TraceState.ToArray());
        Assert.Equal("body"u8.ToArray(), view.Body.ToArray());
        Assert.Equal(before.Length, writer.WrittenCount);
        var offset = RequestTraceParent.FindOffset(before);
        var after = writer.WrittenSpan.ToArray();
        Assert.Equal(Original, System.Text.Encoding.ASCII.GetString(before, offset, 55));
        Assert.Equal(before[..offset], after[..offset]);
        Assert.Equal(before[(offset + 55)..], after[(offset + 55)..]);

        using var bare = new FrameWriter();
        bare.BeginRequest(8, 1, 0, "GET", "/x");
        var bareBytes = bare.Complete().ToArray();
        Assert.False(RequestTraceParent.TryPatch(bare.WrittenSpan, Replacement));
        Assert.Equal(bareBytes, bare.WrittenSpan.ToArray());
        Assert.False(RequestTraceParent.TryPatch(writer.WrittenSpan, "00-short"));
    }
}
