using Gateway.Resilience;
using Polly;
using Polly.Telemetry;

namespace Microsoft.Extensions.DependencyInjection;

internal static class ResilienceServiceCollectionExtensions
{
    /// <summary>Registers the route pipelines (Polly registry keyed by route and table version) and the health prober.</summary>
    public static IServiceCollection AddGatewayResilience(this IServiceCollection services)
    {
        // Registers ResiliencePipelineRegistry<string> (the route pipelines are added on first use, per table version).
        services.AddResiliencePipelines<string>(static _ => { });

        // Polly logs handled outcomes with their exception attached (a stack trace per failed attempt): keep its entries,
        // drop the stack traces of what the gateway handles (see HandledOutcomeLoggerFactory).
        services.AddOptions<TelemetryOptions>().PostConfigure(static options => options.LoggerFactory = new HandledOutcomeLoggerFactory(options.LoggerFactory));
        services.AddSingleton<ForwardingPipelineProvider>();
        services.AddSingleton<BackendHealthProber>();
        services.AddHostedService(sp => sp.GetRequiredService<BackendHealthProber>());
        return services;
    }
}
