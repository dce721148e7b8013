using Gateway.Health;
using Gateway.Routing;
using Microsoft.AspNetCore.Http.HttpResults;

namespace Gateway.Apis;

/// <summary>Operator endpoints: the state of every backend instance.</summary>
internal static class AdminApi
{
    public static IEndpointRouteBuilder MapAdminApi(this IEndpointRouteBuilder endpoints)
    {
        var group = endpoints.MapGroup("/admin").WithTags("Admin").WithMetadata(Security.AdminEndpointMetadata.Instance);
        group.MapGet("/backends", GetBackends)
            .WithName("GetBackends")
            .WithSummary("State of every backend instance: health, circuit, in-flight, latency percentiles and counters.");
        group.MapGet("/capture", Diagnostics.Capture.CaptureEndpoint.RunAsync)
            .WithName("CaptureDatagrams")
            .WithSummary("Live capture of the datagrams the gateway sends and receives, as NDJSON (one JSON object per line).")
            .WithDescription("Parameters (each list may repeat or hold comma-separated values): backend, route, instance (socket path), correlationId (16 hex digits, as X-Correlation-Id), kind (REQUEST, RESPONSE, ERROR, PING, PONG, CANCEL, RAW, MALFORMED); limits: count (default 1000), duration in seconds (default 60, at most 3600); payload = bytes of each datagram's payload to include, base64 (default 0). Use curl -N. See docs/api.md.")
            .Produces(StatusCodes.Status200OK, contentType: Diagnostics.Capture.CaptureEndpoint.ContentType)
            .ProducesProblem(StatusCodes.Status400BadRequest)
            .ProducesProblem(StatusCodes.Status403Forbidden)
            .ProducesProblem(StatusCodes.Status429TooManyRequests);
        return endpoints;
    }

    internal static Ok<BackendStatus[]> GetBackends(RouteTableProvider routes)
    {
        var table = routes.Current;
        var backends = table.Backends.Values
            .OrderBy(b => b.Name, StringComparer.Ordinal)
            .Select(b => new BackendStatus(
                b.Name,
                b.Mode.ToString(),
                b.LoadBalancing.ToString(),
                b.Instances.Count(i => i.Resilience.IsAvailable),
                [.. b.Instances.Select(Describe)]))
            .ToArray();
        return TypedResults.Ok(backends);
    }

    private static InstanceStatus Describe(BackendInstance instance)
    {
        var r = instance.Resilience;
        var (p50, p90, p99, samples) = r.LatencyPercentiles();
        var stats = instance.Client?.Statistics;
        return new InstanceStatus(
            instance.SocketPath,
            BackendsReadinessCheck.InstanceState(instance),
            r.Circuit.CircuitState.ToString(),
            instance.InFlight,
            instance.Client?.PendingCount ?? 0,
            new LatencyStatus(samples, p50, p90, p99),
            r.Timeouts,
            r.Retries,
            stats?.LateReplies ?? 0,
            stats?.SpoofedReplies ?? 0,
            stats?.MalformedDatagrams ?? 0,
            r.Failures,
            r.Rejected,
            r.LastProbe,
            r.LastProbeSucceeded);
    }
}

/// <summary>A backend in <c>GET /admin/backends</c>.</summary>
internal sealed record BackendStatus(string Name, string Mode, string LoadBalancing, int HealthyInstances, InstanceStatus[] Instances);

/// <summary>
/// An instance: <c>State</c> is healthy, ejected or circuit-open; <c>Circuit</c> the Polly circuit state;
/// <c>InFlight</c> the requests being forwarded to it; <c>Pending</c> the entries of its client's pending table
/// (requests and probes awaiting a reply; 0 when idle); <c>SpoofedReplies</c> / <c>MalformedDatagrams</c> the
/// datagrams its reply socket dropped for coming from another address / breaking the protocol.
/// </summary>
internal sealed record InstanceStatus(
    string SocketPath,
    string State,
    string Circuit,
    long InFlight,
    int Pending,
    LatencyStatus LatencyMs,
    long Timeouts,
    long Retries,
    long LateReplies,
    long SpoofedReplies,
    long MalformedDatagrams,
    long Failures,
    long Rejected,
    DateTimeOffset? LastProbe,
    bool? LastProbeSucceeded);

/// <summary>Percentiles of the most recent (up to 256) successful attempts, in milliseconds.</summary>
internal sealed record LatencyStatus(int Samples, double P50, double P90, double P99);
