using System.Diagnostics;
using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.IO.Pipelines;
using Gateway.Configuration;
using Gateway.Diagnostics;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Raw;
using Gateway.Resilience;
using Gateway.Routing;
using Gateway.Security;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.Options;
using Polly;
using Polly.CircuitBreaker;
using Polly.Timeout;

namespace Gateway.Forwarding;

/// <summary>
/// The request delegate of every gateway route: HTTP request → envelope datagram → backend → reply → HTTP response.
/// </summary>
internal sealed class ForwardingHandler
{
    /// <summary>The request header that makes a non-idempotent request retryable.</summary>
    public const string IdempotencyKeyHeader = "Idempotency-Key";

    private readonly TimeProvider _timeProvider;
    private readonly ILogger<ForwardingHandler> _logger;
    private readonly RouteTableProvider _routes;
    private readonly ForwardingPipelineProvider _pipelines;
    private readonly GatewayMetrics _metrics;
    private readonly string _requestIdHeader;
    private readonly Diagnostics.Capture.CaptureHub _capture;

    public ForwardingHandler(TimeProvider timeProvider, ILogger<ForwardingHandler> logger, RouteTableProvider routes, ForwardingPipelineProvider pipelines, GatewayMetrics metrics, IOptions<GatewayOptions> options, Diagnostics.Capture.CaptureHub capture)
    {
        _capture = capture;
        _timeProvider = timeProvider;
        _logger = logger;
        _routes = routes;
        _pipelines = pipelines;
        _metrics = metrics;
        _requestIdHeader = options.Value.RequestIdHeader;
    }

    /// <summary>Not async itself: a held request keeps one state machine less (bench/README.md).</summary>
    public Task HandleAsync(HttpContext context)
    {
        var route = context.GetEndpoint()?.Metadata.GetMetadata<GatewayRoute>()
            ?? throw new InvalidOperationException("The gateway endpoint has no route metadata.");
        var request = context.Request;
        var backend = route.Backend;

        if (request.ContentLength > route.MaxBodySize)
        {
            return GatewayProblems.WriteAsync(context, GatewayFailure.BodyTooLarge, BodyTooLargeDetail(route, request.ContentLength.Value));
        }

        // The route's limit applies, not Kestrel's global one.
        if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } sizeFeature)
        {
            sizeFeature.MaxRequestBodySize = null;
        }

        return backend.Mode == BackendMode.Raw ? ForwardRawAsync(context, route) : ForwardEnvelopeAsync(context, route);
    }

    /// <summary>
    /// Envelope backends: one frame, sent by the route's resilience pipeline (overall timeout, retries) to the
    /// instance each attempt chooses (see <see cref="ForwardingAttempt"/>); a request that is never retried makes its
    /// one attempt without the pipeline (<see cref="ForwardingAttempt.RunOnceAsync"/>).
    /// </summary>
    private async Task ForwardEnvelopeAsync(HttpContext context, GatewayRoute route)
    {
        var started = _timeProvider.GetTimestamp();
        var request = context.Request;
        var backend = route.Backend;
        var table = _routes.Current;

        // The first instance's client numbers the request; retries keep the number (docs/protocol.md section 5).
        var first = InstanceSelector.Select(backend, []);
        var numbering = first.Client ?? throw new InvalidOperationException($"Backend '{backend.Name}' has no envelope client.");
        using var writer = new FrameWriter(InitialFrameSize(request, route.MaxBodySize));
        var correlationId = numbering.NextCorrelationId();
        var correlationText = correlationId.ToString("x16", CultureInfo.InvariantCulture);
        context.Response.Headers[CorrelationItems.CorrelationIdHeader] = correlationText;
        _capture.NoteRoute(correlationId, route.Name, backend.Name);

        using var scope = RequestLogScope.AddForwarding(_logger, context, correlationText, route.Name, backend.Name);

        var budget = route.Timeout;
        EncodeRequestHead(context, writer, correlationId, budget, table.ForwardCallerCredentials);
        var headLength = writer.WrittenCount;

        UploadBody? upload = null;
        if (context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody ?? true)
        {
            var (read, streamed) = await ReadOrStreamBodyAsync(context, route, writer, headLength, numbering).ConfigureAwait(false);
            if (!read)
            {
                return;
            }

            upload = streamed;
        }

        using var head = upload is null ? null : new FrameWriter(headLength);
        try
        {
            await ForwardFrameAsync(context, route, first, writer, head, upload, correlationId, table.ForwardCallerCredentials, started).ConfigureAwait(false);
        }
        finally
        {
            if (upload is not null)
            {
                upload.Detach();
                _metrics.RecordUpload(route.Name, backend.Name, upload.Completed ? "completed" : upload.Failed || context.Response.StatusCode >= 400 ? "failed" : "ended_early", upload.BytesRead);
            }
        }
    }

    /// <summary>
    /// Sends the request (its whole frame, or its head and streamed body), then writes the reply or the failure. A
    /// streamed body makes one attempt, never retried.
    /// </summary>
    private async Task ForwardFrameAsync(HttpContext context, GatewayRoute route, BackendInstance first, FrameWriter writer, FrameWriter? head, UploadBody? upload, ulong correlationId, bool forwardCaller, long started)
    {
        var request = context.Request;
        var backend = route.Backend;
        var budget = route.Timeout;
        Memory<byte> frame;
        if (upload is null)
        {
            frame = System.Runtime.InteropServices.MemoryMarshal.AsMemory(writer.Complete());
        }
        else
        {
            // No budget in the head: the upload lasts as long as the caller sends; the gateway CANCELs on its timeouts.
            EncodeRequestHead(context, head!, correlationId, Timeout.InfiniteTimeSpan, forwardCaller, streamedBody: true);
            frame = System.Runtime.InteropServices.MemoryMarshal.AsMemory(head!.Complete());
        }

        var idempotent = IsIdempotent(request.Method);
        var retryable = upload is null && (idempotent || request.Headers.ContainsKey(IdempotencyKeyHeader));
        if (!retryable)
        {
            // docs/protocol.md §5, NO_RETRY: no other attempt will follow, so the backend need not keep the reply for a replay.
            FrameHeader.PatchFeatures(frame.Span, (StreamFeatures)frame.Span[5] | StreamFeatures.NoRetry);
        }

        var attempt = new ForwardingAttempt(route, first, frame, correlationId, idempotent, retryable, _timeProvider, _logger, context.RequestAborted);
        ResilienceContext? resilienceContext = null;
        DatagramReply reply;
        try
        {
            var outcome = upload is null
                ? await StartAttempts(route, attempt, ForwardingAttempt.RunAsync, RunOnce, context.RequestAborted, out resilienceContext).ConfigureAwait(false)
                : await attempt.RunUploadAsync(frame, upload).ConfigureAwait(false);
            outcome.ThrowIfException();
            reply = outcome.Result!;
        }
        catch (BodyTooLargeException ex)
        {
            await GatewayProblems.WriteAsync(context, GatewayFailure.BodyTooLarge, ex.Message).ConfigureAwait(false);
            return;
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status400BadRequest && !context.Response.HasStarted)
        {
            await GatewayProblems.WriteAsync(context, GatewayFailure.MalformedRequestBody, $"The request body could not be read: {ex.Message}").ConfigureAwait(false);
            return;
        }
        catch (Exception ex) when (upload is not null && context.RequestAborted.IsCancellationRequested && ex is not DatagramException)
        {
            Log.ClientDisconnected(_logger, route.Name, attempt.Last?.SocketPath ?? first.SocketPath);
            context.Response.StatusCode = 499;
            return;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            attempt.Last?.Client?.SendCancel(correlationId);
            Log.ClientDisconnected(_logger, route.Name, attempt.Last?.SocketPath ?? first.SocketPath);
            context.Response.StatusCode = 499;
            return;
        }
        catch (TimeoutRejectedException)
        {
            attempt.Last?.Client?.SendCancel(correlationId);
            var path = attempt.Last?.SocketPath ?? first.SocketPath;
            Log.ForwardFailed(_logger, route.Name, path, DatagramFailure.Timeout, "the time budget is spent");
            await GatewayProblems.WriteAsync(context, GatewayFailure.Timeout, string.Create(CultureInfo.InvariantCulture, $"Backend '{backend.Name}' ({path}) did not reply within {budget.TotalSeconds:0.###} s ({attempt.Attempts} attempt(s)).")).ConfigureAwait(false);
            return;
        }
        catch (BrokenCircuitException ex)
        {
            var path = attempt.Last?.SocketPath ?? first.SocketPath;
            Log.ForwardFailed(_logger, route.Name, path, DatagramFailure.BackendAbsent, ex.Message);
            await GatewayProblems.WriteAsync(context, GatewayFailure.CircuitOpen, $"Backend '{backend.Name}' ({path}) is failing; its circuit breaker is open.").ConfigureAwait(false);
            return;
        }
        catch (InstanceBusyException ex)
        {
            await GatewayProblems.WriteAsync(context, GatewayFailure.BackendBusy, $"Backend '{backend.Name}' ({ex.Instance.SocketPath}) has {ex.Instance.Resilience.Settings.MaxInFlight} requests in flight; no slot freed up within {ex.Instance.Resilience.Settings.QueueTimeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)} s.").ConfigureAwait(false);
            return;
        }
        catch (DatagramException ex)
        {
            var instance = attempt.Last ?? first;
            if (ex.Failure == DatagramFailure.Timeout)
            {
                instance.Client?.SendCancel(correlationId);
                if (!retryable)
                {
                    ResilienceLog.NotRetried(_logger, route.Name, $"{request.Method} is not idempotent and has no {IdempotencyKeyHeader} header");
                }
            }

            var (failure, detail) = Describe(ex, route, instance, budget);
            Log.ForwardFailed(_logger, route.Name, instance.SocketPath, ex.Failure, ex.Message);
            await GatewayProblems.WriteAsync(context, failure, detail).ConfigureAwait(false);
            return;
        }
        finally
        {
            if (resilienceContext is not null)
            {
                ResilienceContextPool.Shared.Return(resilienceContext);
            }
        }

        using (reply)
        {
            try
            {
                await WriteReplyAsync(context, reply, route, attempt.Last?.SocketPath ?? first.SocketPath, started).ConfigureAwait(false);
            }
            catch (Exception ex) when (!context.RequestAborted.IsCancellationRequested)
            {
                await MappingFailedAsync(context, route, ex).ConfigureAwait(false);
            }
        }
    }

    /// <summary>
    /// The safety net behind the reply rules (docs/protocol.md section 4.2): whatever goes wrong while a reply becomes
    /// the HTTP response is a 502 <c>malformed-reply</c> while the response has not started, never Kestrel's empty 500;
    /// once it has started (status and headers sent), the connection is aborted, so that a caller never takes a
    /// truncated body for a complete response.
    /// </summary>
    private async Task MappingFailedAsync(HttpContext context, GatewayRoute route, Exception exception)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            Log.ResponseFailedAfterStart(_logger, exception, route.Name, route.Backend.Name);
            context.Abort();
            return;
        }

        Log.ReplyMappingFailed(_logger, exception, route.Name, route.Backend.Name);
        var correlationId = RequestLogScope.CorrelationIdOf(context);
        response.Clear();
        response.Headers[_requestIdHeader] = context.TraceIdentifier;
        if (correlationId is not null)
        {
            response.Headers[CorrelationItems.CorrelationIdHeader] = correlationId;
        }

        await GatewayProblems.WriteAsync(context, GatewayFailure.MalformedReply, $"The reply of backend '{route.Backend.Name}' could not be turned into an HTTP response: {exception.Message}").ConfigureAwait(false);
    }

    private static readonly Func<ForwardingAttempt, ValueTask<Outcome<DatagramReply>>> RunOnce = static attempt => attempt.RunOnceAsync();
    private static readonly Func<ForwardingAttempt, ValueTask<Outcome<RawReply>>> RunRawOnce = static attempt => attempt.RunRawOnceAsync();

    /// <summary>
    /// Starts a request's attempts: through the route's pipeline (overall timeout, retries) when it may be retried, else
    /// its one attempt alone, whose reply timeout and slot wait the budget bounds already (<see cref="ForwardingAttempt.RunOnceAsync"/>).
    /// Not async (no state machine of its own held per request). <paramref name="pooled"/> is the Polly context to return
    /// to the pool once the outcome is in (null without the pipeline).
    /// </summary>
    private ValueTask<Outcome<TReply>> StartAttempts<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.All)] TReply>(
        GatewayRoute route,
        ForwardingAttempt attempt,
        Func<ResilienceContext, ForwardingAttempt, ValueTask<Outcome<TReply>>> viaPipeline,
        Func<ForwardingAttempt, ValueTask<Outcome<TReply>>> once,
        CancellationToken aborted,
        out ResilienceContext? pooled)
    {
        if (!attempt.Retryable)
        {
            pooled = null;
            return once(attempt);
        }

        pooled = ResilienceContextPool.Shared.Get(aborted);
        pooled.Properties.Set(ForwardingPipelineProvider.Attempt, attempt);
        return _pipelines.GetPipeline<TReply>(route).ExecuteOutcomeAsync(viaPipeline, pooled, attempt);
    }

    /// <summary>Methods that may be retried without an <c>Idempotency-Key</c> (RFC 9110 section 9.2.2; TRACE is not forwarded).</summary>
    internal static bool IsIdempotent(string method) =>
        HttpMethods.IsGet(method) || HttpMethods.IsHead(method) || HttpMethods.IsOptions(method) || HttpMethods.IsPut(method) || HttpMethods.IsDelete(method);

    /// <summary>
    /// Raw backends: the body goes out as one datagram, the first datagram back is the 200 response's body. The same
    /// route pipeline as envelope backends (overall timeout, retries) sends it, but only idempotent methods are
    /// retried: a raw daemon has no correlation and no replay cache, so an <c>Idempotency-Key</c> cannot make a
    /// retried POST/PATCH safe; those get one attempt and a definite error.
    /// </summary>
    private async Task ForwardRawAsync(HttpContext context, GatewayRoute route)
    {
        var backend = route.Backend;
        using var body = new FrameWriter(InitialFrameSize(context.Request, route.MaxBodySize, withHead: false));
        if ((context.Features.Get<IHttpRequestBodyDetectionFeature>()?.CanHaveBody ?? true)
            && !await ReadRequestBodyAsync(context, route, body, route.MaxBodySize).ConfigureAwait(false))
        {
            return;
        }

        var first = InstanceSelector.Select(backend, []);
        var idempotent = IsIdempotent(context.Request.Method);
        var attempt = new ForwardingAttempt(route, first, body.WrittenMemory, 0, idempotent, retryable: idempotent, _timeProvider, _logger, context.RequestAborted) { Method = context.Request.Method };
        ResilienceContext? resilienceContext = null;
        RawReply reply;
        try
        {
            var outcome = await StartAttempts(route, attempt, ForwardingAttempt.RunRawAsync, RunRawOnce, context.RequestAborted, out resilienceContext).ConfigureAwait(false);
            outcome.ThrowIfException();
            reply = outcome.Result!;
        }
        catch (OperationCanceledException) when (context.RequestAborted.IsCancellationRequested)
        {
            Log.ClientDisconnected(_logger, route.Name, attempt.Last?.SocketPath ?? first.SocketPath);
            context.Response.StatusCode = 499;
            return;
        }
        catch (Exception ex) when (ex is TimeoutRejectedException or BrokenCircuitException or InstanceBusyException or DatagramException)
        {
            if (!idempotent && ex is DatagramException { Failure: DatagramFailure.Timeout })
            {
                ResilienceLog.NotRetried(_logger, route.Name, $"{context.Request.Method} is not idempotent and a raw backend cannot replay it");
            }

            await WriteFailureAsync(context, route, attempt.Last ?? first, attempt.Attempts, ex).ConfigureAwait(false);
            return;
        }
        finally
        {
            if (resilienceContext is not null)
            {
                ResilienceContextPool.Shared.Return(resilienceContext);
            }
        }

        using (reply)
        {
            try
            {
                var response = context.Response;
                response.StatusCode = StatusCodes.Status200OK;
                response.ContentType = route.ContentType ?? "application/octet-stream";
                response.ContentLength = reply.Payload.Length;
                if (!HttpMethods.IsHead(context.Request.Method))
                {
                    await response.Body.WriteAsync(reply.Payload, context.RequestAborted).ConfigureAwait(false);
                }
            }
            catch (Exception ex) when (!context.RequestAborted.IsCancellationRequested)
            {
                await MappingFailedAsync(context, route, ex).ConfigureAwait(false);
            }
        }
    }

    /// <summary>The problem details of a request whose attempts all failed (timeout, open circuit, busy, datagram failure).</summary>
    private Task WriteFailureAsync(HttpContext context, GatewayRoute route, BackendInstance instance, int attempts, Exception exception)
    {
        var backend = route.Backend.Name;
        var path = instance.SocketPath;
        switch (exception)
        {
            case TimeoutRejectedException:
                Log.ForwardFailed(_logger, route.Name, path, DatagramFailure.Timeout, "the time budget is spent");
                return GatewayProblems.WriteAsync(context, GatewayFailure.Timeout, string.Create(CultureInfo.InvariantCulture, $"Backend '{backend}' ({path}) did not reply within {route.Timeout.TotalSeconds:0.###} s ({attempts} attempt(s))."));
            case BrokenCircuitException:
                Log.ForwardFailed(_logger, route.Name, path, DatagramFailure.BackendAbsent, exception.Message);
                return GatewayProblems.WriteAsync(context, GatewayFailure.CircuitOpen, $"Backend '{backend}' ({path}) is failing; its circuit breaker is open.");
            case InstanceBusyException busy:
                return GatewayProblems.WriteAsync(context, GatewayFailure.BackendBusy, $"Backend '{backend}' ({busy.Instance.SocketPath}) has {busy.Instance.Resilience.Settings.MaxInFlight} requests in flight; no slot freed up within {busy.Instance.Resilience.Settings.QueueTimeout.TotalSeconds.ToString("0.###", CultureInfo.InvariantCulture)} s.");
            default:
                var ex = (DatagramException)exception;
                var (failure, detail) = Describe(ex, route, instance, route.Timeout);
                Log.ForwardFailed(_logger, route.Name, path, ex.Failure, ex.Message);
                return GatewayProblems.WriteAsync(context, failure, detail);
        }
    }

    /// <summary>
    /// The frame buffer to rent for a request: its head (method, target, headers) plus its declared body, so that a
    /// request is encoded without growing the buffer and a held request keeps no more than it needs: the pool rounds up
    /// to a power of two, so a fixed 512-byte head estimate put a small GET in a 1 KiB buffer where 512 bytes do
    /// (10,000 held requests: 5 MB). The head is estimated from the request's own target and headers (as ASCII, which
    /// they almost always are: the buffer grows otherwise) plus room for what the gateway adds (traceparent, tracestate,
    /// x-request-id, x-forwarded-*, caller headers). A body without Content-Length grows the buffer as it is read.
    /// A raw request's buffer holds the body alone (<paramref name="withHead"/> false).
    /// </summary>
    internal static int InitialFrameSize(HttpRequest request, long maxBodySize, bool withHead = true)
    {
        // Lengths and counts, traceparent, x-request-id (Kestrel's), x-forwarded-proto, the caller's three headers.
        const int added = 256;
        var head = 0;
        if (withHead)
        {
            head = added + ProtocolConstants.HeaderSize + request.Method.Length + (2 * (request.PathBase.Value?.Length ?? 0))
                + (request.Path.Value?.Length ?? 0) + (request.QueryString.Value?.Length ?? 0) + (request.Host.Value?.Length ?? 0)
                + (Activity.Current?.TraceStateString?.Length ?? 0);
            foreach (var header in request.Headers)
            {
                foreach (var value in header.Value)
                {
                    head += 3 + header.Key.Length + (value?.Length ?? 0);
                }
            }
        }

        // Larger bodies start at 1 MiB and grow: a Content-Length alone never makes the gateway rent more.
        var declared = request.ContentLength is { } length && length > 0 ? Math.Min(length, maxBodySize) : 0;
        return (int)Math.Min(head + declared, 1 << 20);
    }

    internal static void EncodeRequestHead(HttpContext context, FrameWriter writer, ulong correlationId, TimeSpan budget, bool forwardCaller, bool streamedBody = false)
    {
        var request = context.Request;
        // The raw target, which the path rule (RequestTargetMiddleware) checked decodes to exactly the routed path.
        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget is { Length: > 0 } raw ? RequestTargetRule.OriginForm(raw) : null;
        if (string.IsNullOrEmpty(target) || target[0] != '/')
        {
            target = request.PathBase + request.Path + request.QueryString;
        }

        Span<char> traceParent = stackalloc char[TraceParentLength];
        string? traceState = null;
        if (Activity.Current is { IdFormat: ActivityIdFormat.W3C } activity)
        {
            FormatTraceParent(activity, traceParent);
            traceState = activity.TraceStateString;
        }
        else
        {
            traceParent = default;
        }

        var budgetMs = budget == Timeout.InfiniteTimeSpan ? 0u : (uint)Math.Clamp((long)Math.Ceiling(budget.TotalMilliseconds), 1, uint.MaxValue);
        if (streamedBody)
        {
            writer.BeginRequestHead(correlationId, 1, budgetMs, request.Method, target, traceParent, traceState);
        }
        else
        {
            writer.BeginRequest(correlationId, 1, budgetMs, request.Method, target, traceParent, traceState);
        }

        // A backend may answer with a streamed reply (docs/protocol.md §4.5); one that does not stream ignores the byte.
        writer.SetFeatures(StreamFeatures.StreamReply);

        foreach (var header in request.Headers)
        {
            // The request ID travels as the gateway's own x-request-id (the incoming one only if it was adopted).
            if (!HeaderRules.ForwardRequestHeader(header.Key) || header.Key.Equals("x-request-id", StringComparison.OrdinalIgnoreCase))
            {
                continue;
            }

            foreach (var value in header.Value)
            {
                writer.AddHeader(header.Key, value);
            }
        }

        writer.AddHeader("x-request-id", context.TraceIdentifier);
        writer.AddHeader("x-forwarded-proto", request.Scheme);
        if (request.Host.HasValue)
        {
            writer.AddHeader("x-forwarded-host", request.Host.Value);
        }

        if (request.PathBase.HasValue)
        {
            writer.AddHeader("x-forwarded-prefix", request.PathBase.Value);
        }

        if (forwardCaller && context.Features.Get<IPeerCredentialsFeature>() is { } caller)
        {
            Span<char> number = stackalloc char[11];
            writer.AddHeader(HeaderRules.CallerUidHeader, Format(caller.Uid, number));
            writer.AddHeader(HeaderRules.CallerGidHeader, Format(caller.Gid, number));
            writer.AddHeader(HeaderRules.CallerPidHeader, Format((uint)caller.Pid, number));
        }
    }

    private const int TraceParentLength = 55;

    /// <summary>
    /// The W3C traceparent of a W3C activity (<c>00-{trace-id}-{parent-id}-{flags}</c>, what <see cref="Activity.Id"/>
    /// reads), written into <paramref name="destination"/> instead of building the Id string each request.
    /// </summary>
    internal static void FormatTraceParent(Activity activity, Span<char> destination)
    {
        "00-".CopyTo(destination);
        // The IDs keep their hex strings: ToHexString allocates nothing.
        activity.TraceId.ToHexString().CopyTo(destination[3..35]);
        destination[35] = '-';
        activity.SpanId.ToHexString().CopyTo(destination[36..52]);
        destination[52] = '-';
        ((byte)activity.ActivityTraceFlags).TryFormat(destination[53..], out _, "x2", CultureInfo.InvariantCulture);
    }

    private static ReadOnlySpan<char> Format(uint value, Span<char> buffer) =>
        value.TryFormat(buffer, out var written, default, CultureInfo.InvariantCulture) ? buffer[..written] : throw new InvalidOperationException("A uint has at most 10 digits.");

    /// <summary>
    /// Reads the request body into the frame, or starts streaming it (docs/protocol.md §4.5.3): a body larger than the
    /// backend's <c>StreamBodiesAbove</c> (declared, or read so far) goes to a backend that accepts streamed bodies as an
    /// <see cref="UploadBody"/> (the part read so far, then the rest as the backend takes it); every other body is read
    /// whole, up to 16 MiB. Returns false after answering with a problem: 413 <c>body-too-large</c> over the route's limit
    /// (or over 16 MiB for a backend that takes whole messages only), 400 <c>malformed-request-body</c> when Kestrel
    /// cannot decode the body (bad chunked framing, a body shorter than its Content-Length), which Kestrel would
    /// otherwise answer with a bodyless 400.
    /// </summary>
    private static async ValueTask<(bool Read, UploadBody? Upload)> ReadOrStreamBodyAsync(HttpContext context, GatewayRoute route, FrameWriter writer, int headLength, DatagramClient client)
    {
        var request = context.Request;
        var wholeLimit = Math.Min(route.MaxBodySize, ProtocolConstants.DefaultMaxBodyBytes);
        var threshold = route.StreamBodiesAbove;
        if (request.ContentLength is { } declared && declared <= threshold)
        {
            return (await ReadRequestBodyAsync(context, route, writer, wholeLimit).ConfigureAwait(false), null);
        }

        long total;
        bool complete;
        try
        {
            (total, complete) = await ReadPrefixAsync(request.BodyReader, writer, threshold, context.RequestAborted).ConfigureAwait(false);
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status400BadRequest && !context.Response.HasStarted)
        {
            await GatewayProblems.WriteAsync(context, GatewayFailure.MalformedRequestBody, $"The request body could not be read: {ex.Message}").ConfigureAwait(false);
            return (false, null);
        }

        if (total > route.MaxBodySize)
        {
            await GatewayProblems.WriteAsync(context, GatewayFailure.BodyTooLarge, BodyTooLargeDetail(route, null)).ConfigureAwait(false);
            return (false, null);
        }

        if (total <= threshold)
        {
            return (true, null);
        }

        // Larger than the threshold: streamed, even when it ended within the last read (the rule stays exact).

        // A streamed body's REQUEST_HEAD is one datagram (§4.5.3): a request whose header fields do not fit one goes whole.
        var headFits = headLength <= ProtocolConstants.MaxDatagram;
        if (headFits && await AcceptsStreamedBodiesAsync(client, route, context.RequestAborted).ConfigureAwait(false))
        {
            return (true, new UploadBody(writer.WrittenMemory[headLength..], request.BodyReader, route.MaxBodySize, route.Name));
        }

        // The backend takes whole messages only: the rest goes into the frame, up to 16 MiB.
        if (complete)
        {
            return (total <= wholeLimit || await RefuseAsync().ConfigureAwait(false), null);
        }

        if (request.ContentLength > wholeLimit)
        {
            await GatewayProblems.WriteAsync(context, GatewayFailure.BodyTooLarge, WholeOnlyDetail(route, request.ContentLength, headFits ? null : headLength)).ConfigureAwait(false);
            return (false, null);
        }

        return (await ReadRequestBodyAsync(context, route, writer, wholeLimit - total, headFits ? null : headLength).ConfigureAwait(false), null);

        async Task<bool> RefuseAsync()
        {
            await GatewayProblems.WriteAsync(context, GatewayFailure.BodyTooLarge, WholeOnlyDetail(route, total, headFits ? null : headLength)).ConfigureAwait(false);
            return false;
        }
    }

    /// <summary>
    /// Whether the backend (this instance's client) announced streamed request bodies in its most recent PONG; asks with a
    /// PING (at most a second, or the route's timeout) when no PONG has come yet.
    /// </summary>
    private static async ValueTask<bool> AcceptsStreamedBodiesAsync(DatagramClient client, GatewayRoute route, CancellationToken aborted)
    {
        if (client.BackendFeatures is null)
        {
            var wait = route.Timeout == Timeout.InfiniteTimeSpan || route.Timeout > TimeSpan.FromSeconds(1) ? TimeSpan.FromSeconds(1) : route.Timeout;
            await client.PingAsync(wait, aborted).ConfigureAwait(false);
        }

        return client.BackendFeatures is { } features && (features & StreamFeatures.StreamRequest) != 0;
    }

    /// <summary>Reads the body into the frame until it ends or more than <paramref name="threshold"/> bytes were read.</summary>
    private static async ValueTask<(long Total, bool Complete)> ReadPrefixAsync(PipeReader reader, FrameWriter writer, long threshold, CancellationToken cancellationToken)
    {
        long total = 0;
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            total += buffer.Length;
            foreach (var segment in buffer)
            {
                writer.WriteBody(segment.Span);
            }

            reader.AdvanceTo(buffer.End);
            if (result.IsCompleted)
            {
                return (total, true);
            }

            if (total > threshold)
            {
                return (total, false);
            }
        }
    }

    private static string WholeOnlyDetail(GatewayRoute route, long? length, int? headLength)
    {
        var size = length is { } n ? string.Create(CultureInfo.InvariantCulture, $"has {n} bytes") : "exceeds 16 MiB";
        var why = headLength is { } h
            ? string.Create(CultureInfo.InvariantCulture, $"a streamed body needs its request head in one datagram, but this request's header fields take {h} bytes (at most {ProtocolConstants.MaxDatagram}): send fewer or smaller header fields.")
            : "does not accept streamed request bodies (its PONG does not announce STREAM_REQUEST).";
        return string.Create(CultureInfo.InvariantCulture, $"The body {size}; backend '{route.Backend.Name}' takes a body of at most {ProtocolConstants.DefaultMaxBodyBytes} bytes in one message and {why}");
    }

    /// <summary>
    /// Reads the request body into the frame; false after answering with a problem: 413 <c>body-too-large</c> over
    /// <paramref name="limit"/>, 400 <c>malformed-request-body</c> when Kestrel cannot decode the body (bad chunked
    /// framing, a body shorter than its Content-Length), which Kestrel would otherwise answer with a bodyless 400.
    /// </summary>
    private static async ValueTask<bool> ReadRequestBodyAsync(HttpContext context, GatewayRoute route, FrameWriter writer, long limit, int? oversizedHead = null)
    {
        long length;
        try
        {
            length = await ReadBodyAsync(context.Request.BodyReader, writer, limit, context.RequestAborted).ConfigureAwait(false);
        }
        catch (BadHttpRequestException ex) when (ex.StatusCode == StatusCodes.Status400BadRequest && !context.Response.HasStarted)
        {
            await GatewayProblems.WriteAsync(context, GatewayFailure.MalformedRequestBody, $"The request body could not be read: {ex.Message}").ConfigureAwait(false);
            return false;
        }

        if (length < 0)
        {
            var detail = route.Backend.Mode == BackendMode.Envelope && route.MaxBodySize > ProtocolConstants.DefaultMaxBodyBytes
                ? WholeOnlyDetail(route, null, oversizedHead)
                : BodyTooLargeDetail(route, null);
            await GatewayProblems.WriteAsync(context, GatewayFailure.BodyTooLarge, detail).ConfigureAwait(false);
            return false;
        }

        return true;
    }

    /// <summary>Copies the body into the frame; returns its length, or -1 when it exceeds <paramref name="limit"/>.</summary>
    private static async ValueTask<long> ReadBodyAsync(PipeReader reader, FrameWriter writer, long limit, CancellationToken cancellationToken)
    {
        long total = 0;
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            total += buffer.Length;
            if (total > limit)
            {
                reader.AdvanceTo(buffer.End);
                return -1;
            }

            foreach (var segment in buffer)
            {
                writer.WriteBody(segment.Span);
            }

            reader.AdvanceTo(buffer.End);
            if (result.IsCompleted)
            {
                return total;
            }
        }
    }

    private async Task WriteReplyAsync(HttpContext context, DatagramReply reply, GatewayRoute route, string socketPath, long started)
    {
        if (reply.Kind == MessageKind.Error)
        {
            var (code, message) = ReadError(reply);
            var failure = code switch
            {
                IpcErrorCode.Overloaded => GatewayFailure.BackendOverloaded,
                IpcErrorCode.TooLarge => GatewayFailure.BackendTooLarge,
                IpcErrorCode.DeadlineExceeded => GatewayFailure.BackendDeadlineExceeded,
                IpcErrorCode.NotFound => GatewayFailure.BackendNotFound,
                _ => GatewayFailure.BackendError,
            };
            Log.BackendErrorReply(_logger, route.Name, route.Backend.Name, code, message);
            var detail = string.Create(CultureInfo.InvariantCulture, $"Backend '{route.Backend.Name}' answered {ErrorName(code)}: {message}");
            await GatewayProblems.WriteAsync(context, failure, detail).ConfigureAwait(false);
            return;
        }

        if (ReplyRules.FindHeaderViolation(reply.Response) is { } violation)
        {
            Log.MalformedReplyHead(_logger, route.Name, route.Backend.Name, socketPath, violation);
            await GatewayProblems.WriteAsync(context, GatewayFailure.MalformedReply, $"Backend '{route.Backend.Name}' ({socketPath}) sent a reply that breaks the wire protocol: {violation}.").ConfigureAwait(false);
            return;
        }

        if (reply.IsStreamed)
        {
            await WriteStreamAsync(context, reply, route, started).ConfigureAwait(false);
            return;
        }

        var bodyOffset = ApplyResponseHead(context.Response, reply);
        var body = reply.Payload[bodyOffset..];
        var status = context.Response.StatusCode;
        if (ReplyRules.StatusHasNoContent(status))
        {
            // No content and no Content-Length (RFC 9110 sections 8.6, 15.3.5, 15.3.6, 15.4.5); a body is dropped, counted.
            if (!body.IsEmpty)
            {
                Log.ReplyBodyDropped(_logger, route.Name, route.Backend.Name, status, body.Length);
                _metrics.RecordBodyDropped(route.Name, route.Backend.Name, status);
            }

            return;
        }

        // A reply to HEAD carries the body a GET would get: its length is the Content-Length, the body is not sent.
        context.Response.ContentLength = body.Length;
        if (body.Length > 0 && !HttpMethods.IsHead(context.Request.Method))
        {
            await context.Response.Body.WriteAsync(body, context.RequestAborted).ConfigureAwait(false);
        }
    }

    /// <summary>
    /// A streamed reply (docs/protocol.md §4.5.2): the head goes out at once, then each chunk is written and flushed as
    /// it arrives (chunked transfer encoding; <c>text/event-stream</c> unbuffered). The reader's pace is the backend's:
    /// credit is granted as chunks are written. A backend ERROR or a broken stream aborts the HTTP response (never a clean
    /// end); the caller going away disposes the reply, which CANCELs the backend's stream. Never retried: the request's
    /// attempts ended with the head.
    /// </summary>
    private async Task WriteStreamAsync(HttpContext context, DatagramReply reply, GatewayRoute route, long started)
    {
        var response = context.Response;
        var stream = reply.Stream!;
        _ = ApplyResponseHead(response, reply);
        if (ReplyRules.StatusHasNoContent(response.StatusCode) || HttpMethods.IsHead(context.Request.Method))
        {
            // No body may follow: the stream is cancelled by the reply's disposal.
            return;
        }

        context.Features.Get<IHttpResponseBodyFeature>()?.DisableBuffering();
        var aborted = context.RequestAborted;
        var outcome = "completed";
        try
        {
            await response.StartAsync(aborted).ConfigureAwait(false);
            while (true)
            {
                var chunk = await stream.ReadChunkAsync(aborted).ConfigureAwait(false);
                if (chunk.IsEmpty)
                {
                    break;
                }

                if (stream.ChunksRead == 1)
                {
                    _metrics.RecordStreamFirstChunk(route.Name, route.Backend.Name, _timeProvider.GetElapsedTime(started));
                }

                await response.Body.WriteAsync(chunk, aborted).ConfigureAwait(false);

                // Chunks that are already here go out with this one, in one flush; a trickle (server-sent events) is
                // still flushed chunk by chunk, since nothing is waiting behind it.
                var ended = false;
                while (stream.TryReadChunk(out var next))
                {
                    if (next.IsEmpty)
                    {
                        ended = true;
                        break;
                    }

                    await response.Body.WriteAsync(next, aborted).ConfigureAwait(false);
                }

                await response.Body.FlushAsync(aborted).ConfigureAwait(false);
                if (ended)
                {
                    break;
                }
            }

            await response.CompleteAsync().ConfigureAwait(false);
        }
        catch (DatagramException ex)
        {
            outcome = "aborted";
            Log.StreamAborted(_logger, route.Name, route.Backend.Name, stream.ChunksRead, stream.BytesRead, ex.Message);
            context.Abort();
        }
        catch (Exception ex) when (ex is OperationCanceledException or IOException && aborted.IsCancellationRequested)
        {
            outcome = "cancelled";
            Log.StreamCallerGone(_logger, route.Name, route.Backend.Name, stream.ChunksRead);
            stream.Dispose();
        }
        finally
        {
            _metrics.RecordStream(route.Name, route.Backend.Name, outcome, stream.ChunksRead, stream.BytesRead);
        }
    }

    private static (IpcErrorCode Code, string Message) ReadError(DatagramReply reply)
    {
        var error = reply.Error;
        return (error.Code, error.GetMessage());
    }

    /// <summary>Sets status and headers from the RESPONSE; returns the offset of the body in the payload.</summary>
    private static int ApplyResponseHead(HttpResponse response, DatagramReply reply)
    {
        var view = reply.Response;
        response.StatusCode = view.Status;
        var headers = response.Headers;
        foreach (var field in view.Headers)
        {
            if (HeaderRules.CopyResponseHeader(field.Name))
            {
                headers.Append(ResponseHeaderNames.GetName(field.Name), ResponseHeaderNames.GetValue(field.Value));
            }
        }

        return reply.Payload.Length - view.Body.Length;
    }

    private static (GatewayFailure Failure, string Detail) Describe(DatagramException ex, GatewayRoute route, BackendInstance instance, TimeSpan budget)
    {
        var backend = route.Backend.Name;
        return ex.Failure switch
        {
            DatagramFailure.Timeout => (GatewayFailure.Timeout, string.Create(CultureInfo.InvariantCulture, $"Backend '{backend}' ({instance.SocketPath}) did not reply within {budget.TotalSeconds:0.###} s.")),
            DatagramFailure.BackendAbsent => (GatewayFailure.BackendAbsent, $"Backend '{backend}' is not running: nothing is bound at {instance.SocketPath}."),
            DatagramFailure.BackendOverloaded when ex.Message.StartsWith(ForwardingAttempt.OverloadedReplyPrefix, StringComparison.Ordinal)
                => (GatewayFailure.BackendOverloaded, $"Backend '{backend}' ({instance.SocketPath}) {ex.Message}"),
            DatagramFailure.BackendOverloaded => (GatewayFailure.BackendOverloaded, $"Backend '{backend}' ({instance.SocketPath}) is not reading its socket fast enough (receive queue full)."),
            DatagramFailure.TooLarge => (GatewayFailure.BodyTooLarge, $"The request is too large to send to backend '{backend}'."),
            DatagramFailure.MalformedReply => (GatewayFailure.MalformedReply, $"Backend '{backend}' ({instance.SocketPath}) sent a reply that breaks the wire protocol: {ex.Message}"),
            _ => (GatewayFailure.BackendAbsent, $"Backend '{backend}' ({instance.SocketPath}) is unavailable: {ex.Message}"),
        };
    }

    private static string BodyTooLargeDetail(GatewayRoute route, long? length) => length is { } n
        ? string.Create(CultureInfo.InvariantCulture, $"The body has {n} bytes; route '{route.Name}' accepts at most {route.MaxBodySize} bytes.")
        : string.Create(CultureInfo.InvariantCulture, $"The body exceeds the {route.MaxBodySize} bytes that route '{route.Name}' accepts.");

    private static string ErrorName(IpcErrorCode code) => code switch
    {
        IpcErrorCode.Malformed => "MALFORMED",
        IpcErrorCode.NotFound => "NOT_FOUND",
        IpcErrorCode.Overloaded => "OVERLOADED",
        IpcErrorCode.TooLarge => "TOO_LARGE",
        IpcErrorCode.DeadlineExceeded => "DEADLINE_EXCEEDED",
        IpcErrorCode.Internal => "INTERNAL",
        _ => $"error {(ushort)code}",
    };
}
