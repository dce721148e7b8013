using System.ComponentModel.DataAnnotations;

namespace Gateway.Configuration;

/// <summary>The <c>Gateway</c> configuration section.</summary>
public sealed class GatewayOptions
{
    public const string SectionName = "Gateway";

    /// <summary>Where the gateway listens.</summary>
    public ListenOptions Listen { get; set; } = new();

    /// <summary>
    /// How long a graceful shutdown (SIGTERM) waits for in-flight requests before cancelling them.
    /// <value>The default value is 10 seconds.</value>
    /// </summary>
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// Request header whose value, if present and well formed, becomes the request ID; otherwise one is generated.
    /// <value>The default value is <c>X-Request-Id</c>.</value>
    /// </summary>
    public string RequestIdHeader { get; set; } = "X-Request-Id";

    /// <summary>
    /// Directory in which the gateway binds its reply sockets as files (mode <c>Listen:SocketMode</c>) instead of
    /// Linux abstract names. Needed when backends run in another network namespace, e.g. other containers that
    /// share only the socket volume; the directory must be at the same path for the backends.
    /// <value>The default value is <see langword="null"/> (abstract names).</value>
    /// </summary>
    public string? ReplySocketDirectory { get; set; }

    /// <summary>Which callers (by the Unix peer credentials of their connection) may use the gateway.</summary>
    public CallerAuthorizationOptions Authorization { get; set; } = new();

    /// <summary>Who may use the operator endpoints under <c>/admin</c> (backend state, live datagram capture).</summary>
    public AdminOptions Admin { get; set; } = new();

    /// <summary>
    /// Whether the caller's uid, gid and pid travel to envelope backends as <c>x-gateway-caller-uid</c>,
    /// <c>x-gateway-caller-gid</c> and <c>x-gateway-caller-pid</c>. Incoming headers of these names are always removed.
    /// <value>The default value is <see langword="false"/>.</value>
    /// </summary>
    public bool ForwardCallerCredentials { get; set; }

    /// <summary>Request header limits, enforced with problem details (431).</summary>
    public RequestLimitsOptions Limits { get; set; } = new();

    /// <summary>Per-caller (uid) rate and concurrency limits; off by default.</summary>
    public CallerRateLimitOptions RateLimiting { get; set; } = new();

    /// <summary>The in-process echo backend of the zero-configuration demo.</summary>
    public DemoBackendOptions DemoBackend { get; set; } = new();

    /// <summary>Named backends.</summary>
    public Dictionary<string, BackendOptions> Backends { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Named routes.</summary>
    public Dictionary<string, RouteOptions> Routes { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>OpenTelemetry switches (read at start-up); the exporters themselves take the standard <c>OTEL_*</c> variables.</summary>
    public TelemetryOptions Telemetry { get; set; } = new();
}

/// <summary>The <c>Gateway:Telemetry</c> section (read at start-up, see <c>AddGatewayTelemetry</c>).</summary>
public sealed class TelemetryOptions
{
    /// <summary>
    /// Whether traces, metrics and logs are also written by console exporters (development).
    /// <value>The default value is <see langword="false"/>.</value>
    /// </summary>
    public bool Console { get; set; }

    /// <summary>
    /// Whether the OpenTelemetry SDK is on even without an exporter (e.g. for tests that add their own).
    /// <value>The default value is <see langword="false"/>.</value>
    /// </summary>
    public bool Enabled { get; set; }
}

/// <summary>The <c>Gateway:Listen</c> section.</summary>
public sealed class ListenOptions
{
    public const string DefaultSocketPath = "/tmp/gateway/gateway.sock";

    /// <summary>
    /// Path of the Unix stream socket serving HTTP.
    /// <value>The default value is <c>/tmp/gateway/gateway.sock</c>.</value>
    /// </summary>
    public string UnixSocket { get; set; } = DefaultSocketPath;

    /// <summary>
    /// Octal file mode of the socket file.
    /// <value>The default value is <c>0660</c> (owner and group may connect).</value>
    /// </summary>
    public string SocketMode { get; set; } = "0660";

    /// <summary>Group (name or numeric id) given to the socket file; unset keeps the process's group.</summary>
    public string? SocketGroup { get; set; }

    /// <summary>Optional loopback TCP port (for a browser and Swagger UI); unset = no TCP listener.</summary>
    [Range(1, 65535)]
    public int? TcpPort { get; set; }
}

/// <summary>The <c>Gateway:DemoBackend</c> section.</summary>
public sealed class DemoBackendOptions
{
    /// <summary>
    /// Whether to start the in-process echo backend and its <c>/echo/{**rest}</c> route.
    /// <value>The default (unset) starts it only when no backend is configured.</value>
    /// </summary>
    public bool? Enabled { get; set; }

    /// <summary>
    /// Datagram socket path of the demo backend.
    /// <value>The default value is a file <c>demo-echo.sock</c> beside the HTTP socket; in memory under TestServer
    /// (WebApplicationFactory), one in a private temporary directory of the host.</value>
    /// </summary>
    public string? SocketPath { get; set; }
}

/// <summary>How the gateway talks to a backend.</summary>
public enum BackendMode
{
    /// <summary>Wire protocol v1 (docs/protocol.md): method, target, headers and body in an envelope.</summary>
    Envelope,

    /// <summary>Unmodified datagram daemons: the body goes out as one datagram, the first datagram back is the body.</summary>
    Raw,
}

/// <summary>A backend: one or more datagram socket instances.</summary>
public sealed class BackendOptions
{
    /// <summary>Datagram socket paths of the backend's instances.</summary>
    public List<string> Instances { get; set; } = [];

    /// <summary>
    /// Protocol spoken by the backend.
    /// <value>The default value is <see cref="BackendMode.Envelope"/>.</value>
    /// </summary>
    public BackendMode Mode { get; set; } = BackendMode.Envelope;

    /// <summary>
    /// Time budget of a request to this backend (routes may override).
    /// <value>The default value is 30 seconds.</value>
    /// </summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// Largest request body accepted for this backend's routes (a route may set its own). Bodies over 16 MiB reach only a
    /// backend that accepts streamed request bodies (see <see cref="StreamBodiesAbove"/>); others get 413.
    /// <value>The default value is 16 MiB for envelope backends and one datagram (212,960 B) for raw backends.</value>
    /// </summary>
    public long? MaxBodySize { get; set; }

    /// <summary>
    /// Request bodies larger than this, or of unknown length that grow larger, are streamed to an envelope backend whose
    /// PONG announces streamed request bodies (REQUEST_HEAD, then CHUNKs within the backend's credit, docs/protocol.md
    /// §4.5.3): the gateway holds at most this much plus one chunk of such a body, whatever its size. Smaller bodies, and
    /// every body to a backend that does not stream, go in one message. A streamed body is never retried (it is consumed
    /// as it is sent).
    /// <value>The default value is 1 MiB.</value>
    /// </summary>
    public long StreamBodiesAbove { get; set; } = 1024 * 1024;

    /// <summary>The effective body limit: <see cref="MaxBodySize"/> or the mode's default.</summary>
    internal long EffectiveMaxBodySize => MaxBodySize ?? (Mode == BackendMode.Raw ? Gateway.Ipc.Protocol.ProtocolConstants.MaxDatagram : Gateway.Ipc.Protocol.ProtocolConstants.DefaultMaxBodyBytes);

    /// <summary>
    /// How long a send may wait while the backend's receive queue is full before the request fails with 503.
    /// <value>The default value is 1 second.</value>
    /// </summary>
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Raw backends: exchanges in flight per instance, each on its own client socket; more requests wait.
    /// <value>The default value is 64.</value>
    /// </summary>
    public int MaxConcurrency { get; set; } = 64;

    /// <summary>
    /// Reply timeout of one attempt; a timed-out attempt may be retried within <see cref="Timeout"/>.
    /// <value>The default (unset) is the whole <see cref="Timeout"/> (one attempt can use the whole budget).</value>
    /// </summary>
    public TimeSpan? AttemptTimeout { get; set; }

    /// <summary>
    /// When set, replies from this backend's instances are accepted only from a process running as this uid (the
    /// kernel's <c>SCM_CREDENTIALS</c>); others are dropped and counted (<c>gateway.datagram.dropped</c>, reason
    /// <c>foreign_uid</c>). Protects against another user binding an instance's socket path while the backend is down.
    /// <value>The default value is <see langword="null"/> (only the sender's address is checked).</value>
    /// </summary>
    public long? ReplyUid { get; set; }

    /// <summary>Retries of envelope requests (idempotent methods or requests with <c>Idempotency-Key</c> only).</summary>
    public BackendRetryOptions Retry { get; set; } = new();

    /// <summary>
    /// How an instance is chosen among the healthy ones.
    /// <value>The default value is <see cref="LoadBalancingPolicy.RoundRobin"/>.</value>
    /// </summary>
    public LoadBalancingPolicy LoadBalancing { get; set; } = LoadBalancingPolicy.RoundRobin;

    /// <summary>
    /// Envelope backends: requests in flight per instance; a request beyond it waits up to <see cref="QueueTimeout"/>, then gets 503.
    /// <value>The default value is 1024.</value>
    /// </summary>
    public int MaxInFlightPerInstance { get; set; } = 1024;

    /// <summary>
    /// How long a request waits for a free slot on an instance at <see cref="MaxInFlightPerInstance"/>.
    /// <value>The default value is 1 second.</value>
    /// </summary>
    public TimeSpan QueueTimeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>The circuit breaker of each instance.</summary>
    public BackendCircuitBreakerOptions CircuitBreaker { get; set; } = new();

    /// <summary>Active health probing (PING) of each instance.</summary>
    public BackendHealthCheckOptions HealthCheck { get; set; } = new();
}

/// <summary>How a backend's instance is chosen.</summary>
public enum LoadBalancingPolicy
{
    /// <summary>Each healthy instance in turn.</summary>
    RoundRobin,

    /// <summary>Two healthy instances at random; the one with fewer requests in flight.</summary>
    PowerOfTwoChoices,
}

/// <summary>The <c>Gateway:Backends:&lt;name&gt;:Retry</c> section.</summary>
public sealed class BackendRetryOptions
{
    /// <summary>
    /// Attempts in all, the first included; 1 disables retries.
    /// <value>The default value is 3.</value>
    /// </summary>
    public int MaxAttempts { get; set; } = 3;

    /// <summary>
    /// Base of the exponential backoff (with jitter) between attempts.
    /// <value>The default value is 50 milliseconds.</value>
    /// </summary>
    public TimeSpan BaseDelay { get; set; } = TimeSpan.FromMilliseconds(50);

    /// <summary>
    /// Longest delay between attempts.
    /// <value>The default value is 1 second.</value>
    /// </summary>
    public TimeSpan MaxDelay { get; set; } = TimeSpan.FromSeconds(1);
}

/// <summary>The <c>Gateway:Backends:&lt;name&gt;:CircuitBreaker</c> section (one breaker per instance).</summary>
public sealed class BackendCircuitBreakerOptions
{
    /// <summary>
    /// Ratio of failed attempts (timeouts, absent or overloaded instance) in the sampling window that opens the circuit.
    /// <value>The default value is 0.5.</value>
    /// </summary>
    public double FailureRatio { get; set; } = 0.5;

    /// <summary>
    /// Attempts needed in the window before the ratio counts.
    /// <value>The default value is 10.</value>
    /// </summary>
    public int MinimumThroughput { get; set; } = 10;

    /// <summary>
    /// Length of the sampling window.
    /// <value>The default value is 30 seconds.</value>
    /// </summary>
    public TimeSpan SamplingDuration { get; set; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// How long the circuit stays open before one trial request is let through.
    /// <value>The default value is 5 seconds.</value>
    /// </summary>
    public TimeSpan BreakDuration { get; set; } = TimeSpan.FromSeconds(5);
}

/// <summary>The <c>Gateway:Backends:&lt;name&gt;:HealthCheck</c> section.</summary>
public sealed class BackendHealthCheckOptions
{
    /// <summary>
    /// Interval between PING probes of each instance.
    /// <value>The default value is 10 seconds.</value>
    /// </summary>
    public TimeSpan Interval { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// How long a probe waits for the PONG.
    /// <value>The default value is 1 second.</value>
    /// </summary>
    public TimeSpan Timeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Consecutive failed attempts after which an instance is ejected until a probe succeeds.
    /// <value>The default value is 5.</value>
    /// </summary>
    public int EjectAfterFailures { get; set; } = 5;
}

/// <summary>A route: a path pattern and methods, forwarded to a backend.</summary>
public sealed class RouteOptions
{
    /// <summary>ASP.NET Core route template, e.g. <c>/echo/{**rest}</c>.</summary>
    public string? Path { get; set; }

    /// <summary>Allowed HTTP methods; empty means all.</summary>
    public List<string> Methods { get; set; } = [];

    /// <summary>Name of the backend.</summary>
    public string? Backend { get; set; }

    /// <summary>Overrides the backend's timeout.</summary>
    public TimeSpan? Timeout { get; set; }

    /// <summary>Overrides the backend's maximum body size for this route (higher or lower).</summary>
    public long? MaxBodySize { get; set; }

    /// <summary>Content type of responses from a raw backend.</summary>
    public string? ContentType { get; set; }

    /// <summary>
    /// Uids (numbers or user names) allowed on this route, in addition to passing the global
    /// <c>Gateway:Authorization</c> lists. Empty = no route-specific rule.
    /// </summary>
    public List<string> AllowedUids { get; set; } = [];

    /// <summary>Gids (numbers or group names) allowed on this route; see <see cref="AllowedUids"/>.</summary>
    public List<string> AllowedGids { get; set; } = [];

    /// <summary>One-line summary (OpenAPI).</summary>
    public string? Summary { get; set; }

    /// <summary>Longer description (OpenAPI).</summary>
    public string? Description { get; set; }
}

/// <summary>The <c>Gateway:Authorization</c> section: allow-lists checked against each connection's SO_PEERCRED.</summary>
public sealed class CallerAuthorizationOptions
{
    /// <summary>
    /// Uids (numbers, or user names from /etc/passwd) allowed to call; a caller passes if its uid is listed or one
    /// of its groups is in <see cref="AllowedGids"/>.
    /// <value>The default value is empty: with both lists empty every caller that can open the socket may call.</value>
    /// </summary>
    public List<string> AllowedUids { get; set; } = [];

    /// <summary>
    /// Gids (numbers, or group names from /etc/group) allowed to call: the caller's primary group or any of its
    /// supplementary groups (SO_PEERGROUPS) must be listed.
    /// <value>The default value is empty.</value>
    /// </summary>
    public List<string> AllowedGids { get; set; } = [];

    /// <summary>
    /// Whether <c>/healthz</c> and <c>/readyz</c> answer every caller, whatever the allow-lists (for probes).
    /// <value>The default value is <see langword="true"/>.</value>
    /// </summary>
    public bool ExemptHealthEndpoints { get; set; } = true;
}

/// <summary>
/// The <c>Gateway:Admin</c> section: the allow-list of the <c>/admin</c> endpoints, checked after the global
/// <c>Gateway:Authorization</c> lists (both must pass). With both lists empty, only the user the gateway runs as and
/// root may use <c>/admin</c>; a caller without peer credentials (loopback TCP, TestServer) never may.
/// </summary>
public sealed class AdminOptions
{
    /// <summary>
    /// Uids (numbers, or user names from /etc/passwd) allowed to use <c>/admin</c>, including a capture's payload bytes.
    /// <value>The default value is empty: the gateway's own uid and root.</value>
    /// </summary>
    public List<string> AllowedUids { get; set; } = [];

    /// <summary>
    /// Gids (numbers, or group names from /etc/group) allowed to use <c>/admin</c>: the caller's primary or a
    /// supplementary group.
    /// <value>The default value is empty.</value>
    /// </summary>
    public List<string> AllowedGids { get; set; } = [];
}

/// <summary>The <c>Gateway:Limits</c> section.</summary>
public sealed class RequestLimitsOptions
{
    /// <summary>Kestrel's own limits are set this many times higher, as a backstop (it answers a bare 431).</summary>
    internal const int KestrelBackstopFactor = 2;

    /// <summary>
    /// The largest <see cref="MaxRequestHeadersTotalSize"/> allowed: 256 KiB. A request's envelope (method, target of at
    /// most Kestrel's 8 KiB request line, trace context, the caller's header fields, the ones the gateway adds, among
    /// them a copy of <c>Host</c>) then stays well under the 1 MiB that docs/protocol.md §6 reserves beside a 16 MiB body.
    /// </summary>
    internal const int MaxHeadersTotalSizeLimit = 256 * 1024;

    /// <summary>
    /// Most header field lines a request may carry; more → 431 problem details.
    /// <value>The default value is 100.</value>
    /// </summary>
    public int MaxRequestHeaderCount { get; set; } = 100;

    /// <summary>
    /// Largest total size of the request's header fields (name + value + 4 bytes per field line); more → 431.
    /// <value>The default value is 32,768 bytes.</value>
    /// </summary>
    public int MaxRequestHeadersTotalSize { get; set; } = 32 * 1024;
}

/// <summary>The <c>Gateway:RateLimiting</c> section: limits per caller uid (ASP.NET Core rate limiting).</summary>
public sealed class CallerRateLimitOptions
{
    /// <summary>
    /// Sustained requests per second per caller uid (token bucket); fractions allowed (0.5 = one every 2 s).
    /// <value>The default value is <see langword="null"/> (no rate limit).</value>
    /// </summary>
    public double? PermitsPerSecond { get; set; }

    /// <summary>
    /// Requests a caller may make at once before the rate applies (the bucket's size).
    /// <value>The default value is <see cref="PermitsPerSecond"/> rounded up (at least 1).</value>
    /// </summary>
    public int? Burst { get; set; }

    /// <summary>
    /// Requests in flight per caller uid; one more gets 429 at once.
    /// <value>The default value is <see langword="null"/> (no concurrency limit).</value>
    /// </summary>
    public int? ConcurrentRequestsPerCaller { get; set; }

    /// <summary>The effective burst.</summary>
    internal int EffectiveBurst => Burst ?? (int)Math.Clamp(Math.Ceiling(PermitsPerSecond ?? 1), 1, int.MaxValue);

    /// <summary>Whether any limit is configured.</summary>
    internal bool Enabled => PermitsPerSecond is not null || ConcurrentRequestsPerCaller is not null;
}
