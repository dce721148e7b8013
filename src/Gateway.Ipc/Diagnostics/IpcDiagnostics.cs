using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Reflection;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Diagnostics;

/// <summary>
/// The traces and metrics of Gateway.Ipc: one <see cref="ActivitySource"/> and one <see cref="Meter"/>, both named
/// <see cref="ActivitySourceName"/>, plus the helpers that start and finish the client attempt span and the backend
/// server span and carry the W3C trace context in the REQUEST's <c>traceparent</c>/<c>tracestate</c> fields.
/// </summary>
/// <remarks>
/// <para>
/// Only <c>System.Diagnostics</c> is used (no OpenTelemetry dependency): an application subscribes with
/// <c>AddSource(IpcDiagnostics.ActivitySourceName)</c> and <c>AddMeter(IpcDiagnostics.MeterName)</c>. When nothing
/// listens, starting a span returns <see langword="null"/> and costs a check.
/// </para>
/// <para>
/// Attributes follow the OpenTelemetry semantic conventions where one exists (<c>network.transport</c> =
/// <c>unix</c>, <c>server.address</c>/<c>network.peer.address</c> = the backend's socket path,
/// <c>error.type</c>, <c>http.request.method</c>, <c>http.response.status_code</c>); the project's own are under
/// <c>gateway.ipc.</c> (<see cref="CorrelationIdTag"/>, <see cref="AttemptTag"/>, <see cref="OutcomeTag"/>).
/// </para>
/// </remarks>
public static class IpcDiagnostics
{
    /// <summary>The name of the <see cref="ActivitySource"/> of Gateway.Ipc.</summary>
    public const string ActivitySourceName = "Gateway.Ipc";

    /// <summary>The name of the <see cref="Meter"/> of Gateway.Ipc.</summary>
    public const string MeterName = "Gateway.Ipc";

    /// <summary>The operation name of the client span of one datagram attempt (kind <see cref="ActivityKind.Client"/>).</summary>
    public const string ClientActivityName = "gateway.ipc.request";

    /// <summary>The operation name of the backend's span around the handler (kind <see cref="ActivityKind.Server"/>).</summary>
    public const string ServerActivityName = "gateway.ipc.handle";

    /// <summary>Attribute: the request's correlation ID, 16 lower-case hex digits (as in the gateway's logs and <c>x-correlation-id</c>).</summary>
    public const string CorrelationIdTag = "gateway.ipc.correlation_id";

    /// <summary>Attribute: the attempt number (1 = first try).</summary>
    public const string AttemptTag = "gateway.ipc.attempt";

    /// <summary>Attribute: how the attempt ended: <c>response</c>, <c>error</c> (an ERROR reply), <c>timeout</c>, <c>cancelled</c>, or a failure such as <c>backend_absent</c>.</summary>
    public const string OutcomeTag = "gateway.ipc.outcome";

    /// <summary>Attribute: the reply was replayed from the backend's replay cache (REPLAY flag).</summary>
    public const string ReplayTag = "gateway.ipc.replay";

    /// <summary>Attribute: the backend's socket path (server side: the socket it serves).</summary>
    public const string ServerAddressTag = "server.address";

    /// <summary>Attribute: the peer's address (client: the backend's socket path; backend: the sender's reply address).</summary>
    public const string PeerAddressTag = "network.peer.address";

    /// <summary>Attribute: the transport, always <c>unix</c>.</summary>
    public const string TransportTag = "network.transport";

    /// <summary>Attribute: the error class (semantic conventions).</summary>
    public const string ErrorTypeTag = "error.type";

    /// <summary>
    /// Bucket boundaries, in seconds, advised for every duration histogram of the gateway and of Gateway.Ipc
    /// (<see cref="InstrumentAdvice{T}"/>): from 100 µs (a datagram round trip on one machine is ~30–60 µs, a whole
    /// forwarded request ~150 µs) to 60 s (twice the default 30 s budget). Without advice the OpenTelemetry SDK uses its
    /// millisecond-scale defaults (0, 5, 10, 25, … 10,000), and every duration in seconds falls in the first bucket.
    /// </summary>
    public static IReadOnlyList<double> DurationBucketBoundaries { get; } =
        [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60];

    /// <summary>The advice carrying <see cref="DurationBucketBoundaries"/>, for a histogram in seconds.</summary>
    public static InstrumentAdvice<double> DurationAdvice { get; } = new() { HistogramBucketBoundaries = DurationBucketBoundaries };

    private static readonly string? Version = typeof(IpcDiagnostics).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;

    private static readonly Histogram<double> AttemptDuration;
    private static readonly Counter<long> Timeouts;
    private static readonly Counter<long> Retries;
    private static readonly Histogram<double> SendQueueWait;

    static IpcDiagnostics()
    {
        ActivitySource = new ActivitySource(ActivitySourceName, Version);
        Meter = new Meter(MeterName, Version);
        AttemptDuration = Meter.CreateHistogram(
            "gateway.ipc.client.attempt.duration", "s", "Duration of one datagram attempt, from sending the REQUEST to its reply or failure.", tags: null, DurationAdvice);
        Timeouts = Meter.CreateCounter<long>("gateway.ipc.client.timeouts", "{attempt}", "Datagram attempts that got no reply within their timeout.");
        Retries = Meter.CreateCounter<long>("gateway.ipc.client.retries", "{attempt}", "Datagram attempts with an attempt number above 1 (retries).");
        SendQueueWait = Meter.CreateHistogram(
            "gateway.ipc.client.send_queue.wait", "s", "Time a send waited because the backend's receive queue was full.", tags: null, DurationAdvice);
    }

    /// <summary>The <see cref="System.Diagnostics.ActivitySource"/> of Gateway.Ipc.</summary>
    public static ActivitySource ActivitySource { get; }

    /// <summary>The <see cref="System.Diagnostics.Metrics.Meter"/> of Gateway.Ipc.</summary>
    public static Meter Meter { get; }

    /// <summary>
    /// Starts the client span of one datagram attempt as a child of <see cref="Activity.Current"/>; <see langword="null"/> when nothing listens.
    /// </summary>
    /// <param name="backendPath">The backend's socket path.</param>
    /// <param name="correlationId">The request's correlation ID.</param>
    /// <param name="attempt">The attempt number (1 = first try).</param>
    /// <param name="method">The HTTP method of the request (<c>http.request.method</c>), if known.</param>
    /// <returns>The started activity (it becomes <see cref="Activity.Current"/>), or <see langword="null"/>.</returns>
    public static Activity? StartClientAttempt(string backendPath, ulong correlationId, int attempt, string? method = null)
    {
        ArgumentNullException.ThrowIfNull(backendPath);
        if (!ActivitySource.HasListeners())
        {
            return null;
        }

        var activity = ActivitySource.StartActivity(ClientActivityName, ActivityKind.Client);
        if (activity is { IsAllDataRequested: true })
        {
            activity.DisplayName = "gateway.ipc.request " + backendPath;
            activity.SetTag(TransportTag, "unix");
            activity.SetTag(ServerAddressTag, backendPath);
            activity.SetTag(PeerAddressTag, backendPath);
            if (correlationId != 0)
            {
                activity.SetTag(CorrelationIdTag, FormatCorrelationId(correlationId));
            }

            activity.SetTag(AttemptTag, attempt);
            if (method is not null)
            {
                activity.SetTag(HttpRequestMethodTag, method);
            }
        }

        return activity;
    }

    /// <summary>
    /// Writes the W3C context of <paramref name="activity"/> into the <c>traceparent</c> field of an encoded REQUEST, so
    /// that the backend's server span becomes its child (see <see cref="RequestTraceParent"/>).
    /// </summary>
    /// <param name="frame">The encoded REQUEST (e.g. <see cref="FrameWriter.WrittenSpan"/>).</param>
    /// <param name="activity">The attempt's span; nothing happens when <see langword="null"/>.</param>
    /// <returns><see langword="true"/> if the frame now carries <paramref name="activity"/>'s context.</returns>
    public static bool InjectTraceContext(Span<byte> frame, Activity? activity) =>
        activity is { IdFormat: ActivityIdFormat.W3C, Id: { } id } && RequestTraceParent.TryPatch(frame, id);

    /// <summary>
    /// Sends one attempt of an encoded REQUEST with <see cref="DatagramClient.SendAsync"/> inside its own client span:
    /// starts the span (<see cref="StartClientAttempt"/>, attempt and correlation ID read from the frame), writes the
    /// span's context into the frame's traceparent, records the outcome on the span and in the metrics, stops it.
    /// </summary>
    /// <param name="client">The client.</param>
    /// <param name="request">The writer holding the completed REQUEST; its traceparent bytes are rewritten in place.</param>
    /// <param name="timeout">The reply timeout of this attempt.</param>
    /// <param name="timeProvider">The clock for the duration metric (default <see cref="TimeProvider.System"/>).</param>
    /// <param name="cancellationToken">The caller's token.</param>
    /// <returns>The reply; dispose it.</returns>
    /// <exception cref="DatagramException">The attempt failed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired.</exception>
    public static Task<DatagramReply> SendTracedAsync(this DatagramClient client, FrameWriter request, TimeSpan timeout, TimeProvider? timeProvider = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(request);
        return client.SendTracedAsync(System.Runtime.InteropServices.MemoryMarshal.AsMemory(request.WrittenMemory), timeout, timeProvider, cancellationToken);
    }

    /// <summary>
    /// Sends one attempt of an encoded REQUEST (<paramref name="frame"/>, patched in place with the attempt span's
    /// trace context) inside a client span, and records its outcome and metrics.
    /// </summary>
    /// <param name="client">The client.</param>
    /// <param name="frame">The encoded request; its traceparent (if any) is overwritten with the attempt span's.</param>
    /// <param name="timeout">The attempt's reply timeout.</param>
    /// <param name="timeProvider">Clock for the duration metric.</param>
    /// <param name="cancellationToken">The caller's cancellation.</param>
    /// <returns>The reply.</returns>
    public static async Task<DatagramReply> SendTracedAsync(this DatagramClient client, Memory<byte> frame, TimeSpan timeout, TimeProvider? timeProvider = null, CancellationToken cancellationToken = default)
    {
        ArgumentNullException.ThrowIfNull(client);
        var attempt = BeginClientAttempt(client, frame.Span, timeProvider);
        try
        {
            var reply = await client.SendAsync(frame, timeout, cancellationToken).ConfigureAwait(false);
            attempt.Complete(reply);
            return reply;
        }
        catch (Exception ex)
        {
            attempt.Complete(ex);
            throw;
        }
    }

    /// <summary>
    /// Starts tracing one attempt of an encoded REQUEST, for a caller that sends it itself with
    /// <see cref="DatagramClient.SendAsync"/> (what <see cref="SendTracedAsync(DatagramClient, Memory{byte}, TimeSpan, TimeProvider?, CancellationToken)"/>
    /// does, without an async method of its own around the send): starts the client span (attempt and correlation ID read
    /// from the frame), writes the span's context into the frame's traceparent, counts a retry. End it with one
    /// <see cref="ClientAttempt.Complete(DatagramReply)"/> or <see cref="ClientAttempt.Complete(Exception)"/>.
    /// </summary>
    /// <param name="client">The client that will send the frame.</param>
    /// <param name="frame">The encoded REQUEST; its traceparent (if any) is overwritten with the attempt span's. A frame
    /// shorter than a header is not traced (the client reports it as invalid).</param>
    /// <param name="timeProvider">The clock for the duration metric (default <see cref="TimeProvider.System"/>).</param>
    /// <returns>The attempt, to complete once.</returns>
    public static ClientAttempt BeginClientAttempt(DatagramClient client, Span<byte> frame, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        if (frame.Length < ProtocolConstants.HeaderSize)
        {
            return default;
        }

        var correlationId = System.Buffers.Binary.BinaryPrimitives.ReadUInt64BigEndian(frame[8..]);
        var attempt = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(frame[6..]);
        var method = ActivitySource.HasListeners() ? RequestMethod(frame) : null;
        var traced = StartAttempt(client.BackendPath, correlationId, attempt, timeProvider, method);
        InjectTraceContext(frame, traced.Activity);
        return traced;
    }

    /// <summary>
    /// Starts tracing one attempt of a raw exchange (<see cref="Raw.RawDatagramClient.ExchangeAsync"/>): the same client
    /// span and attempt metrics as an envelope attempt, tagged <c>gateway.ipc.mode=raw</c>, without a correlation ID and
    /// without trace context in the datagram (a raw daemon's datagram has no room for it). End it with one
    /// <see cref="ClientAttempt.Complete(Raw.RawReply)"/> or <see cref="ClientAttempt.Complete(Exception)"/>.
    /// </summary>
    /// <param name="serverPath">The raw daemon's socket path.</param>
    /// <param name="attempt">The attempt number (1 for the first).</param>
    /// <param name="timeProvider">The clock for the duration metric (default <see cref="TimeProvider.System"/>).</param>
    /// <param name="method">The HTTP method of the request that the exchange carries (<c>http.request.method</c>), if known.</param>
    /// <returns>The attempt, to complete once.</returns>
    public static ClientAttempt BeginRawAttempt(string serverPath, int attempt, TimeProvider? timeProvider = null, string? method = null)
    {
        ArgumentNullException.ThrowIfNull(serverPath);
        var traced = StartAttempt(serverPath, 0, attempt, timeProvider, method);
        traced.Activity?.SetTag(ModeTag, "raw");
        return traced;
    }

    /// <summary>What every traced attempt starts with: the clock reading, the client span, a retry counted after the first.</summary>
    private static ClientAttempt StartAttempt(string path, ulong correlationId, int attempt, TimeProvider? timeProvider, string? method)
    {
        var clock = timeProvider ?? TimeProvider.System;
        var start = clock.GetTimestamp();
        var activity = StartClientAttempt(path, correlationId, attempt, method);
        if (attempt > 1)
        {
            Retries.Add(1, new KeyValuePair<string, object?>(ServerAddressTag, path));
        }

        return new ClientAttempt(activity, path, clock, start);
    }

    /// <summary>
    /// The method of an encoded REQUEST (the <c>str8</c> after the header), as one of the common method strings where it is
    /// one (no allocation); <see langword="null"/> for another kind or a frame too short to hold it.
    /// </summary>
    private static string? RequestMethod(ReadOnlySpan<byte> frame)
    {
        if (frame.Length <= ProtocolConstants.HeaderSize || frame[3] != (byte)MessageKind.Request)
        {
            return null;
        }

        var length = frame[ProtocolConstants.HeaderSize];
        if (length == 0 || frame.Length < ProtocolConstants.HeaderSize + 1 + length)
        {
            return null;
        }

        var bytes = frame.Slice(ProtocolConstants.HeaderSize + 1, length);
        foreach (var known in KnownMethods)
        {
            if (bytes.Length == known.Length && System.Text.Ascii.Equals(bytes, known))
            {
                return known;
            }
        }

        return System.Text.Encoding.ASCII.GetString(bytes);
    }

    private static readonly string[] KnownMethods = ["GET", "POST", "PUT", "DELETE", "HEAD", "PATCH", "OPTIONS"];

    /// <summary>Attribute: the HTTP method (semantic conventions).</summary>
    public const string HttpRequestMethodTag = "http.request.method";

    /// <summary>Attribute: the HTTP scheme the gateway received the request on (semantic conventions), from its <c>x-forwarded-proto</c>.</summary>
    public const string UrlSchemeTag = "url.scheme";

    /// <summary>The attribute that marks a raw attempt's span (<c>gateway.ipc.mode</c> = <c>raw</c>).</summary>
    public const string ModeTag = "gateway.ipc.mode";

    /// <summary>
    /// One traced attempt (<see cref="BeginClientAttempt"/>): its client span and the attempt metrics. Complete it once;
    /// completing records the outcome on the span and in the metrics and stops the span.
    /// </summary>
    public readonly struct ClientAttempt
    {
        private readonly Activity? _activity;
        private readonly string? _backendPath;
        private readonly TimeProvider? _clock;
        private readonly long _start;

        internal ClientAttempt(Activity? activity, string backendPath, TimeProvider clock, long start)
        {
            _activity = activity;
            _backendPath = backendPath;
            _clock = clock;
            _start = start;
        }

        /// <summary>The attempt's client span, if anything listens.</summary>
        internal Activity? Activity => _activity;

        /// <summary>The attempt got its reply (a RESPONSE or an ERROR).</summary>
        /// <param name="reply">The reply.</param>
        public void Complete(DatagramReply reply)
        {
            ArgumentNullException.ThrowIfNull(reply);
            if (_backendPath is null)
            {
                return;
            }

            RecordReply(_activity, reply, _backendPath, _clock!.GetElapsedTime(_start));
            _activity?.Dispose();
        }

        /// <summary>The raw attempt got its reply datagram.</summary>
        /// <param name="reply">The reply.</param>
        public void Complete(Raw.RawReply reply)
        {
            ArgumentNullException.ThrowIfNull(reply);
            if (_backendPath is null)
            {
                return;
            }

            RecordOutcome(_activity, "response", null, _backendPath, _clock!.GetElapsedTime(_start));
            _activity?.Dispose();
        }

        /// <summary>
        /// The attempt failed: a <see cref="DatagramException"/> is recorded with its failure, an
        /// <see cref="OperationCanceledException"/> as cancelled; any other exception only stops the span.
        /// </summary>
        /// <param name="exception">What the send threw.</param>
        public void Complete(Exception exception)
        {
            ArgumentNullException.ThrowIfNull(exception);
            if (_backendPath is null)
            {
                return;
            }

            switch (exception)
            {
                case DatagramException ex:
                    RecordFailure(_activity, ex, _backendPath, _clock!.GetElapsedTime(_start));
                    break;
                case OperationCanceledException:
                    RecordOutcome(_activity, "cancelled", "cancelled", _backendPath, _clock!.GetElapsedTime(_start));
                    break;
            }

            _activity?.Dispose();
        }
    }

    /// <summary>Whether anything listens to the send-queue wait histogram (measure the wait only then).</summary>
    internal static bool SendQueueWaitEnabled => SendQueueWait.Enabled;

    /// <summary>Records how long a send waited for room in the backend's receive queue (for the send path to call).</summary>
    /// <param name="backendPath">The backend's socket path.</param>
    /// <param name="wait">The time the send waited.</param>
    public static void RecordSendQueueWait(string backendPath, TimeSpan wait) =>
        SendQueueWait.Record(wait.TotalSeconds, new KeyValuePair<string, object?>(ServerAddressTag, backendPath));

    /// <summary>
    /// Starts the backend's server span for a request, as a child of the remote context in its traceparent/tracestate
    /// (a new trace when it has none); <see langword="null"/> when nothing listens.
    /// </summary>
    /// <param name="request">The request.</param>
    /// <param name="socketPath">The socket the backend serves.</param>
    /// <returns>The started activity, or <see langword="null"/>.</returns>
    public static Activity? StartServerActivity(BackendRequest request, string socketPath)
    {
        ArgumentNullException.ThrowIfNull(request);
        if (!ActivitySource.HasListeners())
        {
            return null;
        }

        ActivityContext.TryParse(request.TraceParent, request.TraceState, isRemote: true, out var parent);
        var activity = ActivitySource.StartActivity(ServerActivityName, ActivityKind.Server, parent);
        if (activity is { IsAllDataRequested: true })
        {
            activity.DisplayName = "gateway.ipc.handle " + request.Method;
            activity.SetTag(TransportTag, "unix");
            activity.SetTag(ServerAddressTag, socketPath);
            activity.SetTag(PeerAddressTag, request.SenderAddress);
            activity.SetTag(CorrelationIdTag, FormatCorrelationId(request.CorrelationId));
            activity.SetTag(AttemptTag, (int)request.Attempt);
            activity.SetTag(HttpRequestMethodTag, request.Method);
            activity.SetTag("url.path", request.Path);
            if (request.GetHeader("x-forwarded-proto") is { Length: > 0 } scheme)
            {
                activity.SetTag(UrlSchemeTag, scheme);
            }
        }

        return activity;
    }

    /// <summary>Records the handler's response on the backend's server span (status, or <c>error.type</c> and error status for an ERROR).</summary>
    /// <param name="activity">The server span; nothing happens when <see langword="null"/>.</param>
    /// <param name="response">The response about to be sent.</param>
    public static void SetServerResponse(Activity? activity, BackendResponse response)
    {
        ArgumentNullException.ThrowIfNull(response);
        if (activity is null)
        {
            return;
        }

        if (response.ErrorCode is { } code)
        {
            var type = ErrorType(code);
            activity.SetTag(OutcomeTag, "error");
            activity.SetTag(ErrorTypeTag, type);
            activity.SetStatus(ActivityStatusCode.Error, response.ErrorMessage);
        }
        else
        {
            activity.SetTag(OutcomeTag, "response");
            activity.SetTag("http.response.status_code", response.Status);
        }
    }

    /// <summary>
    /// Records on the backend's server span that the client cancelled the request (a CANCEL datagram arrived while the
    /// handler ran, and the handler stopped): outcome <c>cancelled</c>; no reply is sent, and the span's status stays unset
    /// (the backend did nothing wrong).
    /// </summary>
    /// <param name="activity">The server span; nothing happens when <see langword="null"/>.</param>
    public static void SetServerCancelled(Activity? activity) => activity?.SetTag(OutcomeTag, "cancelled");

    /// <summary>Records an exception on a span as an <c>exception</c> event and sets the error status.</summary>
    /// <param name="activity">The span; nothing happens when <see langword="null"/>.</param>
    /// <param name="exception">The exception.</param>
    public static void RecordException(Activity? activity, Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        if (activity is null)
        {
            return;
        }

        activity.AddException(exception);
        activity.SetTag(ErrorTypeTag, exception.GetType().FullName);
        activity.SetStatus(ActivityStatusCode.Error, exception.Message);
    }

    /// <summary>The <c>error.type</c> value of an ERROR code: <c>malformed</c>, <c>not_found</c>, <c>overloaded</c>, <c>too_large</c>, <c>deadline_exceeded</c>, <c>internal</c>.</summary>
    /// <param name="code">The code.</param>
    /// <returns>The value.</returns>
    public static string ErrorType(IpcErrorCode code) => code switch
    {
        IpcErrorCode.Malformed => "malformed",
        IpcErrorCode.NotFound => "not_found",
        IpcErrorCode.Overloaded => "overloaded",
        IpcErrorCode.TooLarge => "too_large",
        IpcErrorCode.DeadlineExceeded => "deadline_exceeded",
        _ => "internal",
    };

    /// <summary>The <c>error.type</c> value of a client failure: <c>timeout</c>, <c>backend_absent</c>, <c>backend_overloaded</c>, <c>too_large</c>, <c>malformed_reply</c>, <c>closed</c>.</summary>
    /// <param name="failure">The failure.</param>
    /// <returns>The value.</returns>
    public static string ErrorType(DatagramFailure failure) => failure switch
    {
        DatagramFailure.Timeout => "timeout",
        DatagramFailure.BackendAbsent => "backend_absent",
        DatagramFailure.BackendOverloaded => "backend_overloaded",
        DatagramFailure.TooLarge => "too_large",
        DatagramFailure.MalformedReply => "malformed_reply",
        DatagramFailure.Closed => "closed",
        _ => "other",
    };

    internal static string FormatCorrelationId(ulong correlationId) => correlationId.ToString("x16", CultureInfo.InvariantCulture);

    private static void RecordReply(Activity? activity, DatagramReply reply, string backendPath, TimeSpan elapsed)
    {
        if (reply.Kind == MessageKind.Error)
        {
            var type = ErrorType(reply.Error.Code);
            if (activity is not null)
            {
                activity.SetTag(ErrorTypeTag, type);
                activity.SetStatus(ActivityStatusCode.Error, type);
            }

            RecordOutcome(activity, "error", type, backendPath, elapsed);
        }
        else
        {
            activity?.SetTag("http.response.status_code", (int)reply.Response.Status);
            RecordOutcome(activity, "response", null, backendPath, elapsed);
        }

        if ((reply.Flags & MessageFlags.Replay) != 0)
        {
            activity?.SetTag(ReplayTag, true);
        }
    }

    private static void RecordFailure(Activity? activity, DatagramException exception, string backendPath, TimeSpan elapsed)
    {
        var type = ErrorType(exception.Failure);
        if (exception.Failure == DatagramFailure.Timeout)
        {
            Timeouts.Add(1, new KeyValuePair<string, object?>(ServerAddressTag, backendPath));
        }

        if (activity is not null)
        {
            activity.AddException(exception);
            activity.SetTag(ErrorTypeTag, type);
            activity.SetStatus(ActivityStatusCode.Error, exception.Message);
        }

        RecordOutcome(activity, type, type, backendPath, elapsed);
    }

    private static void RecordOutcome(Activity? activity, string outcome, string? errorType, string backendPath, TimeSpan elapsed)
    {
        activity?.SetTag(OutcomeTag, outcome);
        if (errorType is not null && activity is not null && activity.GetTagItem(ErrorTypeTag) is null)
        {
            activity.SetTag(ErrorTypeTag, errorType);
        }

        if (AttemptDuration.Enabled)
        {
            var tags = new TagList
            {
                { ServerAddressTag, backendPath },
                { OutcomeTag, outcome },
            };
            if (errorType is not null)
            {
                tags.Add(ErrorTypeTag, errorType);
            }

            AttemptDuration.Record(elapsed.TotalSeconds, tags);
        }
    }
}
