using System.Diagnostics.CodeAnalysis;
using Gateway.Ipc.Backend;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers datagram backends (<see cref="DatagramBackendServer"/>) in a generic host.</summary>
public static class DatagramBackendServiceCollectionExtensions
{
    /// <summary>Registers the unnamed datagram backend.</summary>
    /// <param name="services">The services.</param>
    /// <param name="configure">Configures the options.</param>
    /// <returns>A builder to map the handler with.</returns>
    public static DatagramBackendBuilder AddDatagramBackend(this IServiceCollection services, Action<DatagramBackendOptions> configure) =>
        services.AddDatagramBackend(Options.Options.DefaultName, configure);

    /// <summary>
    /// Registers a named datagram backend: named <see cref="DatagramBackendOptions"/> validated at start, a hosted
    /// service that runs its <see cref="DatagramBackendServer"/>, and the <see cref="DatagramBackendRegistry"/>.
    /// Call several times with different names to serve several sockets from one process.
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="name">The backend's name, unique in the process.</param>
    /// <param name="configure">Configures the options.</param>
    /// <returns>A builder to map the handler with.</returns>
    public static DatagramBackendBuilder AddDatagramBackend(this IServiceCollection services, string name, Action<DatagramBackendOptions> configure)
    {
        ArgumentNullException.ThrowIfNull(configure);
        var builder = AddCore(services, name, out var options);
        options.Configure(configure);
        return builder;
    }

    /// <summary>
    /// Registers a named datagram backend whose options are bound from a configuration section (keys are the
    /// property names of <see cref="DatagramBackendOptions"/>, e.g. <c>SocketPath</c>).
    /// </summary>
    /// <param name="services">The services.</param>
    /// <param name="name">The backend's name, unique in the process.</param>
    /// <param name="configuration">The section to bind, e.g. <c>builder.Configuration.GetSection("Backend")</c>.</param>
    /// <param name="configureDefaults">Runs before the section is bound: use it for defaults that configuration may override.</param>
    /// <returns>A builder to map the handler with.</returns>
    public static DatagramBackendBuilder AddDatagramBackend(this IServiceCollection services, string name, IConfiguration configuration, Action<DatagramBackendOptions>? configureDefaults = null)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        var builder = AddCore(services, name, out var options);
        if (configureDefaults is not null)
        {
            options.Configure(configureDefaults);
        }

        options.Bind(configuration);
        return builder;
    }

    private static DatagramBackendBuilder AddCore(IServiceCollection services, string name, out OptionsBuilder<DatagramBackendOptions> options)
    {
        ArgumentNullException.ThrowIfNull(services);
        ArgumentNullException.ThrowIfNull(name);
        foreach (var descriptor in services)
        {
            if (descriptor.ImplementationInstance is DatagramBackendRegistration existing && existing.Name == name)
            {
                throw new InvalidOperationException($"A datagram backend named '{name}' is already registered.");
            }
        }

        services.TryAddSingleton(TimeProvider.System);
        services.TryAddSingleton(static sp => new DatagramBackendRegistry(sp, sp.GetServices<DatagramBackendRegistration>()));
        services.TryAddEnumerable(ServiceDescriptor.Singleton<IValidateOptions<DatagramBackendOptions>, DatagramBackendOptionsValidator>());

        var registration = new DatagramBackendRegistration(name);
        services.AddSingleton(registration);

        // Not AddHostedService: it de-duplicates by type, and each backend needs its own hosted service.
        services.AddSingleton<IHostedService>(sp => new DatagramBackendHostedService(sp.GetRequiredService<DatagramBackendRegistry>(), name));

        options = services.AddOptions<DatagramBackendOptions>(name);
        options.ValidateOnStart();
        return new DatagramBackendBuilder(services, registration);
    }
}

/// <summary>Maps the handler of a backend registered with <c>AddDatagramBackend</c>.</summary>
public sealed class DatagramBackendBuilder
{
    private readonly DatagramBackendRegistration _registration;

    internal DatagramBackendBuilder(IServiceCollection services, DatagramBackendRegistration registration)
    {
        Services = services;
        _registration = registration;
    }

    /// <summary>The backend's name.</summary>
    public string Name => _registration.Name;

    /// <summary>The services.</summary>
    public IServiceCollection Services { get; }

    /// <summary>Serves requests with <paramref name="handler"/> (replaces an earlier mapping).</summary>
    /// <param name="handler">The handler.</param>
    /// <returns>This builder.</returns>
    public DatagramBackendBuilder Map(DatagramHandler handler)
    {
        ArgumentNullException.ThrowIfNull(handler);
        _registration.HandlerFactory = _ => handler;
        return this;
    }

    /// <summary>
    /// Serves requests with <typeparamref name="THandler"/>, registered as a singleton (unless already registered)
    /// and resolved when the backend starts (replaces an earlier mapping).
    /// </summary>
    /// <typeparam name="THandler">The handler class.</typeparam>
    /// <returns>This builder.</returns>
    public DatagramBackendBuilder Map<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicConstructors)] THandler>()
        where THandler : class, IDatagramHandler
    {
        Services.TryAddSingleton<THandler>();
        _registration.HandlerFactory = static sp => sp.GetRequiredService<THandler>().HandleAsync;
        return this;
    }
}
