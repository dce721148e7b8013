using Gateway.Resilience;
using Polly;

namespace Microsoft.Extensions.DependencyInjection;

internal static class ResilienceServiceCollectionExtensions
{
    /// <summary>Registers the route pipelines (Polly registry keyed by route and table version) and the health prober.</summary>
    public static IServiceCollection AddGatewayResilience(this IServiceCollection services)
    {
        // Registers ResiliencePipelineRegistry<string> (the route pipelines are added on first use, per table version).
        services.AddResiliencePipelines<string>(static _ => { });
        services.AddSingleton<ForwardingPipelineProvider>();
        services.AddSingleton<BackendHealthProber>();
        services.AddHostedService(sp => sp.GetRequiredService<BackendHealthProber>());
        return services;
    }
}
