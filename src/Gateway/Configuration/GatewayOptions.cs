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

    /// <summary>The in-process echo backend of the zero-configuration demo.</summary>
    public DemoBackendOptions DemoBackend { get; set; } = new();

    /// <summary>Named backends.</summary>
    public Dictionary<string, BackendOptions> Backends { get; set; } = new(StringComparer.OrdinalIgnoreCase);

    /// <summary>Named routes.</summary>
    public Dictionary<string, RouteOptions> Routes { get; set; } = new(StringComparer.OrdinalIgnoreCase);
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
    /// <value>The default value is a file <c>demo-echo.sock</c> beside the HTTP socket.</value>
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
    /// Largest request body accepted for this backend (routes may lower it).
    /// <value>The default value is 16 MiB for envelope backends and one datagram (212,960 B) for raw backends.</value>
    /// </summary>
    public long? MaxBodySize { get; set; }

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

    /// <summary>Overrides (lowers) the backend's maximum body size.</summary>
    public long? MaxBodySize { get; set; }

    /// <summary>Content type of responses from a raw backend.</summary>
    public string? ContentType { get; set; }

    /// <summary>One-line summary (OpenAPI).</summary>
    public string? Summary { get; set; }

    /// <summary>Longer description (OpenAPI).</summary>
    public string? Description { get; set; }
}
