using System.Text.Json;
using Gateway.Routing;
using Gateway.Security;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Gateway.Health;

internal static class HealthEndpoints
{
    private const string LiveTag = "live";
    private const string ReadyTag = "ready";
    private const string JsonContentType = "application/json";

    public static IServiceCollection AddGatewayHealthChecks(this IServiceCollection services)
    {
        services.AddHealthChecks()
            .AddCheck("process", () => HealthCheckResult.Healthy("The gateway process is running."), [LiveTag])
            .AddCheck<BackendsReadinessCheck>("backends", tags: [ReadyTag]);
        return services;
    }

    public static IEndpointRouteBuilder MapGatewayHealthChecks(this IEndpointRouteBuilder endpoints)
    {
        // ResultStatusCodes are the health-check middleware's defaults, stated so the document and the behaviour agree.
        var live = new HealthCheckOptions { Predicate = r => r.Tags.Contains(LiveTag), ResponseWriter = WriteJsonAsync };
        endpoints.MapHealthChecks("/healthz", live)
            .WithName("Liveness").WithTags("Health")
            .WithSummary("Liveness: 200 while the gateway process runs and serves HTTP (it checks no backend).")
            .WithMetadata(new ProducesResponseTypeMetadata(StatusCodes.Status200OK, typeof(void), [JsonContentType]) { Description = "The process is alive." })
            .WithMetadata(HealthEndpointMetadata.Instance).DisableRateLimiting();
        var ready = new HealthCheckOptions { Predicate = r => r.Tags.Contains(ReadyTag), ResponseWriter = WriteJsonAsync };
        endpoints.MapHealthChecks("/readyz", ready)
            .WithName("Readiness").WithTags("Health")
            .WithSummary("Readiness: 200 when every routed backend has an instance that is neither ejected nor open, else 503.")
            .WithMetadata(new ProducesResponseTypeMetadata(StatusCodes.Status200OK, typeof(void), [JsonContentType]) { Description = "Every routed backend has a healthy instance; per-instance detail in `checks.backends.data`." })
            .WithMetadata(new ProducesResponseTypeMetadata(ready.ResultStatusCodes[HealthStatus.Unhealthy], typeof(void), [JsonContentType]) { Description = "At least one routed backend has no healthy instance (named in `checks.backends.description`)." })
            .WithMetadata(HealthEndpointMetadata.Instance).DisableRateLimiting();
        return endpoints;
    }

    private static Task WriteJsonAsync(HttpContext context, HealthReport report)
    {
        context.Response.ContentType = "application/json; charset=utf-8";
        var body = new Dictionary<string, object?>
        {
            ["status"] = report.Status.ToString(),
            ["checks"] = report.Entries.ToDictionary(
                e => e.Key,
                e => (object?)new Dictionary<string, object?>
                {
                    ["status"] = e.Value.Status.ToString(),
                    ["description"] = e.Value.Description,
                    ["data"] = e.Value.Data,
                }),
        };
        return JsonSerializer.SerializeAsync(context.Response.Body, body, HealthJsonContext.Default.DictionaryStringObject, context.RequestAborted);
    }
}

/// <summary>
/// Ready when every route's backend has at least one healthy instance: not ejected (by a failed PING probe of
/// <see cref="Resilience.BackendHealthProber"/> or by consecutive failures) and its circuit not open. Reads the
/// probes' results (it does not ping). Detail per backend and instance in the data.
/// </summary>
internal sealed class BackendsReadinessCheck(RouteTableProvider provider) : IHealthCheck
{
    public Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var table = provider.Current;
        var data = new Dictionary<string, object>();
        var unready = new List<string>();
        foreach (var backend in table.Backends.Values)
        {
            var healthy = backend.Instances.Count(i => i.Resilience.IsAvailable);
            data[backend.Name] = new Dictionary<string, object>
            {
                ["mode"] = backend.Mode.ToString(),
                ["healthyInstances"] = healthy,
                ["instances"] = backend.Instances.ToDictionary(i => i.SocketPath, i => (object)InstanceState(i)),
            };
            if (healthy == 0 && table.Routes.Any(r => r.Backend == backend))
            {
                unready.Add(backend.Name);
            }
        }

        return Task.FromResult(unready.Count == 0
            ? HealthCheckResult.Healthy("Every route has at least one healthy backend instance.", data)
            : HealthCheckResult.Unhealthy($"No healthy instance for backend(s): {string.Join(", ", unready)}.", data: data));
    }

    internal static string InstanceState(BackendInstance instance) =>
        instance.Resilience.IsEjected ? "ejected"
        : instance.Resilience.IsAvailable ? "healthy"
        : "circuit-open";
}
