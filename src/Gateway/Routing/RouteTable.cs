using Gateway.Configuration;
using Gateway.Security;
using Microsoft.AspNetCore.Routing.Patterns;

namespace Gateway.Routing;

/// <summary>An immutable snapshot of the routes and backends; swapped atomically on reload.</summary>
internal sealed class RouteTable
{
    public RouteTable(long version, IReadOnlyList<GatewayRoute> routes, IReadOnlyDictionary<string, GatewayBackend> backends)
    {
        Version = version;
        Routes = routes;
        Backends = backends;
        _routesByName = routes.ToDictionary(r => r.Name, StringComparer.OrdinalIgnoreCase);
    }

    private readonly Dictionary<string, GatewayRoute> _routesByName;

    /// <summary>This table's route of that name (an endpoint matched on an older table may name one), or null.</summary>
    public GatewayRoute? FindRoute(string name) => _routesByName.GetValueOrDefault(name);

    /// <summary>The global allow-lists (<c>Gateway:Authorization</c>); null = every caller.</summary>
    public CallerRule? CallerRule { get; init; }

    /// <summary>The allow-list of <c>/admin</c> (<c>Gateway:Admin</c>, by default the gateway's own user and root).</summary>
    public required CallerRule AdminRule { get; init; }

    /// <summary><c>Gateway:Authorization:ExemptHealthEndpoints</c>.</summary>
    public bool ExemptHealthEndpoints { get; init; } = true;

    /// <summary><c>Gateway:ForwardCallerCredentials</c>.</summary>
    public bool ForwardCallerCredentials { get; init; }

    public long Version { get; }

    public IReadOnlyList<GatewayRoute> Routes { get; }

    public IReadOnlyDictionary<string, GatewayBackend> Backends { get; }
}

/// <summary>A route of the current table, carried as endpoint metadata.</summary>
internal sealed class GatewayRoute
{
    public required string Name
    {
        get;
        init
        {
            field = value;
            PipelineKey = "route:" + value;
        }
    }

    /// <summary>The key of the route's resilience pipelines in the registry (built once, not per request).</summary>
    public string PipelineKey { get; private init; } = "";

    public required string PathTemplate { get; init; }

    public required RoutePattern Pattern { get; init; }

    /// <summary>Upper-case methods; empty = any.</summary>
    public required IReadOnlyList<string> Methods { get; init; }

    public required GatewayBackend Backend { get; init; }

    public required TimeSpan Timeout { get; init; }

    public required long MaxBodySize { get; init; }

    /// <summary>Bodies larger than this are streamed to a backend that accepts streamed request bodies.</summary>
    public long StreamBodiesAbove => Backend.StreamBodiesAbove;

    public string? ContentType { get; init; }

    /// <summary>The route's own allow-lists, checked after the global ones; null = none.</summary>
    public CallerRule? CallerRule { get; init; }

    public string? Summary { get; init; }

    public string? Description { get; init; }
}

/// <summary>A backend of the current table.</summary>
internal sealed class GatewayBackend
{
    private uint _next;

    public required string Name { get; init; }

    public required BackendMode Mode { get; init; }

    public required IReadOnlyList<BackendInstance> Instances { get; init; }

    public required TimeSpan Timeout { get; init; }

    public required long MaxBodySize { get; init; }

    public long StreamBodiesAbove { get; init; } = 1024 * 1024;

    public required TimeSpan SendTimeout { get; init; }

    /// <summary>Reply timeout of one attempt; null = the whole budget.</summary>
    public TimeSpan? AttemptTimeout { get; init; }

    public BackendRetryOptions Retry { get; init; } = new();

    public LoadBalancingPolicy LoadBalancing { get; init; }

    public BackendHealthCheckOptions HealthCheck { get; init; } = new();

    /// <summary>The next round-robin position.</summary>
    internal uint NextRoundRobin() => Interlocked.Increment(ref _next);
}
