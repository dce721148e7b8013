using System.Text.Json;
using Gateway.Routing;
using Microsoft.AspNetCore.Diagnostics.HealthChecks;
using Microsoft.Extensions.Diagnostics.HealthChecks;

namespace Gateway.Health;

internal static class HealthEndpoints
{
    private const string LiveTag = "live";
    private const string ReadyTag = "ready";

    public static IServiceCollection AddGatewayHealthChecks(this IServiceCollection services)
    {
        services.AddHealthChecks()
            .AddCheck("process", () => HealthCheckResult.Healthy("The gateway process is running."), [LiveTag])
            .AddCheck<BackendsReadinessCheck>("backends", tags: [ReadyTag]);
        return services;
    }

    public static IEndpointRouteBuilder MapGatewayHealthChecks(this IEndpointRouteBuilder endpoints)
    {
        endpoints.MapHealthChecks("/healthz", new HealthCheckOptions { Predicate = r => r.Tags.Contains(LiveTag), ResponseWriter = WriteJsonAsync })
            .WithName("Liveness").WithTags("Health");
        endpoints.MapHealthChecks("/readyz", new HealthCheckOptions { Predicate = r => r.Tags.Contains(ReadyTag), ResponseWriter = WriteJsonAsync })
            .WithName("Readiness").WithTags("Health");
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
/// Ready when every route's backend has at least one instance that answers a PING. Detail per backend and
/// instance in the data.
/// </summary>
internal sealed class BackendsReadinessCheck(RouteTableProvider provider) : IHealthCheck
{
    private static readonly TimeSpan PingTimeout = TimeSpan.FromSeconds(1);

    public async Task<HealthCheckResult> CheckHealthAsync(HealthCheckContext context, CancellationToken cancellationToken = default)
    {
        var table = provider.Current;
        var data = new Dictionary<string, object>();
        var unready = new List<string>();
        foreach (var backend in table.Backends.Values)
        {
            var results = await Task.WhenAll(backend.Instances.Select(i => ProbeAsync(i, cancellationToken))).ConfigureAwait(false);
            var healthy = results.Count(r => r.Healthy);
            data[backend.Name] = new Dictionary<string, object>
            {
                ["mode"] = backend.Mode.ToString(),
                ["healthyInstances"] = healthy,
                ["instances"] = results.ToDictionary(r => r.Path, r => (object)(r.Healthy ? "healthy" : "unreachable")),
            };
            if (healthy == 0 && table.Routes.Any(r => r.Backend == backend))
            {
                unready.Add(backend.Name);
            }
        }

        return unready.Count == 0
            ? HealthCheckResult.Healthy("Every route has at least one healthy backend instance.", data)
            : HealthCheckResult.Unhealthy($"No healthy instance for backend(s): {string.Join(", ", unready)}.", data: data);
    }

    private static async Task<(string Path, bool Healthy)> ProbeAsync(BackendInstance instance, CancellationToken cancellationToken)
    {
        if (instance.Client is null)
        {
            // Raw daemons do not speak the protocol: the best evidence is that their socket file exists.
            return (instance.SocketPath, File.Exists(instance.SocketPath) || Path.Exists(instance.SocketPath));
        }

        return (instance.SocketPath, await instance.Client.PingAsync(PingTimeout, cancellationToken).ConfigureAwait(false));
    }
}
