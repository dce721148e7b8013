using Gateway.Configuration;
using Gateway.Hosting;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers <see cref="GatewayOptions"/>: bound from the <c>Gateway</c> section, validated at start.</summary>
internal static class GatewayOptionsServiceCollectionExtensions
{
    /// <summary>
    /// <see cref="GatewayOptions"/> from the <c>Gateway</c> section of the <see cref="IConfiguration"/> service: its
    /// well-formed values bound (<see cref="OptionsShape.Bind"/>), the demo backend added when it applies, then
    /// <see cref="GatewayOptionsValidator"/> (shape and values) at start (ValidateOnStart). A reload builds the options
    /// again through the same <see cref="IOptionsFactory{TOptions}"/>. No change-token source: the route table provider is
    /// the one reader of reloads (IOptionsMonitor would only rebuild the options in the reload's callback and throw there
    /// on an invalid change).
    /// </summary>
    public static IServiceCollection AddGatewayOptions(this IServiceCollection services)
    {
        // The registrations are final once the host is built, including a TestServer that WebApplicationFactory adds.
        services.TryAddSingleton(_ => new InMemorySocketDirectory(!InMemorySocketDirectory.ServesOnKestrel(services)));
        services.AddOptions<GatewayOptions>()
            .Configure<IConfiguration>((options, configuration) => OptionsShape.Bind(configuration.GetSection(GatewayOptions.SectionName), options))
            .PostConfigure<InMemorySocketDirectory>(static (options, directory) => DemoDefaults.Apply(options, directory.GetPath))
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<GatewayOptions>, GatewayOptionsValidator>();
        return services;
    }
}
