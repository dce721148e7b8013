using System.Diagnostics;
using System.Diagnostics.Metrics;
using Gateway.Ipc.Diagnostics;
using Gateway.Routing;

namespace Gateway.Diagnostics;

/// <summary>
/// The gateway's own metrics (meter <see cref="MeterName"/>), created through <see cref="IMeterFactory"/> so that each
/// host has its own instruments.
/// </summary>
/// <remarks>
/// <list type="table">
/// <item><term><c>gateway.request.duration</c> (histogram, s)</term><description>Every request on a gateway route, by
/// <c>gateway.route</c>, <c>gateway.backend</c>, <c>gateway.outcome</c> and <c>http.response.status_code</c>.</description></item>
/// <item><term><c>gateway.backend.requests.active</c> (observable up-down counter)</term><description>In-flight requests per backend instance (<c>server.address</c>).</description></item>
/// <item><term><c>gateway.backend.datagrams.dropped</c> (observable counter)</term><description>Datagrams a client dropped, by <c>gateway.drop_reason</c>:
/// <c>late</c> (a reply for a request no longer pending: late or duplicate), <c>spoofed</c>, <c>malformed</c>, <c>oversized</c>, <c>reassembly</c>.</description></item>
/// <item><term><c>gateway.backend.timeouts</c> (observable counter, <c>{attempt}</c>)</term><description>Attempts that timed out, per backend instance.</description></item>
/// <item><term><c>gateway.retries</c> (counter)</term><description>Retries, by route, backend and <c>gateway.retry_reason</c>
/// (<see cref="RecordRetry"/>, called from the route pipeline's OnRetry).</description></item>
/// <item><term><c>gateway.reply.body_dropped</c> (counter, <c>{reply}</c>)</term><description>Replies with status 204, 205 or 304
/// whose body the gateway dropped, by route, backend and <c>http.response.status_code</c> (<see cref="RecordBodyDropped"/>).</description></item>
/// <item><term><c>gateway.circuit.state</c> (observable gauge)</term><description>0 closed, 1 half-open, 2 open, by backend and
/// instance of the current route table (kept by the breakers' OnOpened / OnHalfOpened / OnClosed callbacks).</description></item>
/// </list>
/// Per-attempt metrics (attempt duration, timeouts, retries, send-queue waits) come from <see cref="IpcDiagnostics.MeterName"/>,
/// Polly's from the meter <c>Polly</c>, ASP.NET Core's (<c>http.server.request.duration</c>) from <c>Microsoft.AspNetCore.Hosting</c>.
/// </remarks>
internal sealed class GatewayMetrics
{
    /// <summary>The name of the gateway's meter.</summary>
    public const string MeterName = "Gateway";

    public const string RouteTag = "gateway.route";
    public const string BackendTag = "gateway.backend";
    public const string OutcomeTag = "gateway.outcome";
    public const string DropReasonTag = "gateway.drop_reason";
    public const string RetryReasonTag = "gateway.retry_reason";

    private readonly Histogram<double> _requestDuration;
    private readonly Counter<long> _retries;
    private readonly Counter<long> _bodiesDropped;
    private readonly Counter<long> _streams;
    private readonly Counter<long> _streamBytes;
    private readonly Counter<long> _streamChunks;
    private readonly Counter<long> _uploads;
    private readonly Counter<long> _uploadBytes;
    private readonly Histogram<double> _streamFirstChunk;

    public GatewayMetrics(IMeterFactory meterFactory, RouteTableProvider routes)
    {
        var meter = meterFactory.Create(MeterName, typeof(GatewayMetrics).Assembly.GetName().Version?.ToString());
        _requestDuration = meter.CreateHistogram(
            "gateway.request.duration", "s", "Duration of requests on gateway routes, from routing to the end of the response.", tags: null, IpcDiagnostics.DurationAdvice);
        _retries = meter.CreateCounter<long>("gateway.retries", "{retry}", "Retries of requests to a backend.");
        _bodiesDropped = meter.CreateCounter<long>("gateway.reply.body_dropped", "{reply}", "Backend replies whose body the gateway did not send because their status has no content (204, 205, 304).");
        _streams = meter.CreateCounter<long>("gateway.stream.count", "{stream}", "Streamed replies by outcome: completed, aborted (backend ERROR or broken stream), cancelled (the caller went away).");
        _streamBytes = meter.CreateCounter<long>("gateway.stream.bytes", "By", "Body bytes of streamed replies written to callers.");
        _streamChunks = meter.CreateCounter<long>("gateway.stream.chunks", "{chunk}", "Chunks of streamed replies written to callers.");
        _uploads = meter.CreateCounter<long>("gateway.upload.count", "{upload}", "Request bodies streamed to backends, by outcome: completed (sent to its end), ended_early (the backend replied first), failed (too large, unreadable, caller gone, backend failure).");
        _uploadBytes = meter.CreateCounter<long>("gateway.upload.bytes", "By", "Body bytes of streamed request bodies read from callers.");
        _streamFirstChunk = meter.CreateHistogram(
            "gateway.stream.time_to_first_chunk", "s", "Time from routing a request to writing the first chunk of its streamed reply.", tags: null, IpcDiagnostics.DurationAdvice);
        meter.CreateObservableUpDownCounter("gateway.backend.requests.active", () => ObserveInFlight(routes), "{request}", "Requests in flight per backend instance.");
        meter.CreateObservableCounter("gateway.backend.datagrams.dropped", () => ObserveDropped(routes), "{datagram}", "Datagrams the gateway dropped: late or duplicate, spoofed, malformed, oversized replies and abandoned fragments.");
        meter.CreateObservableCounter("gateway.backend.timeouts", () => ObserveTimeouts(routes), "{attempt}", "Attempts sent to a backend instance that got no reply within their timeout (a retried request counts once per attempt that timed out).");
        meter.CreateObservableGauge("gateway.circuit.state", () => ObserveCircuits(routes), "{state}", "Circuit breaker state per backend instance: 0 closed, 1 half-open, 2 open.");
    }

    /// <summary>Records one request on a gateway route.</summary>
    public void RecordRequest(string route, string backend, string outcome, int statusCode, TimeSpan duration)
    {
        if (!_requestDuration.Enabled)
        {
            return;
        }

        var tags = new TagList
        {
            { RouteTag, route },
            { BackendTag, backend },
            { OutcomeTag, outcome },
            { "http.response.status_code", statusCode },
        };
        _requestDuration.Record(duration.TotalSeconds, tags);
    }

    /// <summary>Counts one retry of a request on <paramref name="route"/> and why (<c>timeout</c>, <c>backend_absent</c>, …).</summary>
    public void RecordRetry(string route, string backend, string reason) =>
        _retries.Add(
            1,
            new KeyValuePair<string, object?>(RouteTag, route),
            new KeyValuePair<string, object?>(BackendTag, backend),
            new KeyValuePair<string, object?>(RetryReasonTag, reason));

    /// <summary>Counts one reply with status 204, 205 or 304 whose non-empty body was dropped (docs/protocol.md section 4.2).</summary>
    public void RecordBodyDropped(string route, string backend, int statusCode) =>
        _bodiesDropped.Add(
            1,
            new KeyValuePair<string, object?>(RouteTag, route),
            new KeyValuePair<string, object?>(BackendTag, backend),
            new KeyValuePair<string, object?>("http.response.status_code", statusCode));

    /// <summary>Records the first chunk of a streamed reply, <paramref name="elapsed"/> after the request was routed.</summary>
    public void RecordStreamFirstChunk(string route, string backend, TimeSpan elapsed) =>
        _streamFirstChunk.Record(elapsed.TotalSeconds, new KeyValuePair<string, object?>(RouteTag, route), new KeyValuePair<string, object?>(BackendTag, backend));

    /// <summary>Records a finished streamed reply: its outcome (<c>completed</c>, <c>aborted</c>, <c>cancelled</c>), chunks and bytes.</summary>
    public void RecordStream(string route, string backend, string outcome, long chunks, long bytes)
    {
        var tags = new TagList { { RouteTag, route }, { BackendTag, backend }, { OutcomeTag, outcome } };
        _streams.Add(1, tags);
        _streamChunks.Add(chunks, tags);
        _streamBytes.Add(bytes, tags);
    }

    /// <summary>Records a streamed request body once its request is over: its outcome (<c>completed</c>, <c>ended_early</c>, <c>failed</c>) and the bytes read from the caller.</summary>
    public void RecordUpload(string route, string backend, string outcome, long bytes)
    {
        var tags = new TagList { { RouteTag, route }, { BackendTag, backend }, { OutcomeTag, outcome } };
        _uploads.Add(1, tags);
        _uploadBytes.Add(bytes, tags);
    }

    /// <summary>The outcome of a request from its final status: what the caller experienced.</summary>
    public static string Outcome(int statusCode) => statusCode switch
    {
        499 => "cancelled",
        504 => "timeout",
        < 400 => "success",
        < 500 => "client_error",
        _ => "error",
    };

    private static IEnumerable<Measurement<long>> ObserveInFlight(RouteTableProvider routes)
    {
        foreach (var instance in routes.Instances)
        {
            yield return new Measurement<long>(instance.InFlight, new KeyValuePair<string, object?>(IpcDiagnostics.ServerAddressTag, instance.SocketPath));
        }
    }

    private static IEnumerable<Measurement<long>> ObserveDropped(RouteTableProvider routes)
    {
        foreach (var instance in routes.Instances)
        {
            if (instance.Client is not { } client)
            {
                continue;
            }

            var statistics = client.Statistics;
            yield return Dropped(statistics.LateReplies, "late", instance.SocketPath);
            yield return Dropped(statistics.SpoofedReplies, "spoofed", instance.SocketPath);
            yield return Dropped(statistics.ForeignUidReplies, "foreign_uid", instance.SocketPath);
            yield return Dropped(statistics.MalformedDatagrams, "malformed", instance.SocketPath);
            yield return Dropped(statistics.OversizedDatagrams, "oversized", instance.SocketPath);
            yield return Dropped(statistics.ReassemblyDropped, "reassembly", instance.SocketPath);
        }
    }

    private static IEnumerable<Measurement<long>> ObserveTimeouts(RouteTableProvider routes)
    {
        foreach (var instance in routes.Instances)
        {
            if (instance.Client is { } client)
            {
                yield return new Measurement<long>(client.Statistics.Timeouts, new KeyValuePair<string, object?>(IpcDiagnostics.ServerAddressTag, instance.SocketPath));
            }
        }
    }

    private static Measurement<long> Dropped(long value, string reason, string socketPath) =>
        new(value, new KeyValuePair<string, object?>(DropReasonTag, reason), new KeyValuePair<string, object?>(IpcDiagnostics.ServerAddressTag, socketPath));

    /// <summary>The circuits of the current table's instances (a retired instance's circuit is no longer reported).</summary>
    private static IEnumerable<Measurement<int>> ObserveCircuits(RouteTableProvider routes)
    {
        foreach (var backend in routes.Current.Backends.Values)
        {
            foreach (var instance in backend.Instances)
            {
                yield return new Measurement<int>(
                    instance.Resilience.CircuitGaugeValue,
                    new KeyValuePair<string, object?>(BackendTag, backend.Name),
                    new KeyValuePair<string, object?>(IpcDiagnostics.ServerAddressTag, instance.SocketPath));
            }
        }
    }
}
