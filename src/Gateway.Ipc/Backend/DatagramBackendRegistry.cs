using System.Collections.Concurrent;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Gateway.Ipc.Backend;

/// <summary>
/// The <see cref="DatagramBackendServer"/>s registered with <c>AddDatagramBackend</c>, by name. Each server is
/// created on first use with its named <see cref="DatagramBackendOptions"/>; its hosted service starts and stops it.
/// </summary>
public sealed class DatagramBackendRegistry : IAsyncDisposable, IDisposable
{
    private readonly IServiceProvider _services;
    private readonly ConcurrentDictionary<string, Lazy<DatagramBackendServer>> _servers = new(StringComparer.Ordinal);
    private readonly Dictionary<string, DatagramBackendRegistration> _registrations;

    internal DatagramBackendRegistry(IServiceProvider services, IEnumerable<DatagramBackendRegistration> registrations)
    {
        _services = services;
        _registrations = registrations.ToDictionary(r => r.Name, StringComparer.Ordinal);
    }

    /// <summary>The names of the registered backends (<see cref="Options.DefaultName"/>, the empty string, for the unnamed one).</summary>
    public IReadOnlyCollection<string> Names => _registrations.Keys;

    /// <summary>Gets the server of the unnamed backend.</summary>
    /// <returns>The server.</returns>
    public DatagramBackendServer Get() => Get(Options.DefaultName);

    /// <summary>Gets the server of the backend named <paramref name="name"/>, creating it on first use.</summary>
    /// <param name="name">The backend's name.</param>
    /// <returns>The server.</returns>
    /// <exception cref="KeyNotFoundException">No backend has that name.</exception>
    /// <exception cref="InvalidOperationException">The backend has no handler (call <c>Map</c>).</exception>
    /// <exception cref="OptionsValidationException">The backend's options are invalid.</exception>
    public DatagramBackendServer Get(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        if (!_registrations.TryGetValue(name, out var registration))
        {
            throw new KeyNotFoundException($"No datagram backend named '{name}' is registered.");
        }

        return _servers.GetOrAdd(name, static (_, state) => new Lazy<DatagramBackendServer>(() => state.Self.Create(state.Registration)), (Self: this, Registration: registration)).Value;
    }

    /// <summary>Stops and disposes every server created.</summary>
    /// <returns>A task that completes when all have stopped.</returns>
    public async ValueTask DisposeAsync()
    {
        foreach (var server in _servers.Values)
        {
            if (server.IsValueCreated)
            {
                await server.Value.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>Stops and disposes every server created, blocking; prefer <see cref="DisposeAsync"/>.</summary>
    public void Dispose() => DisposeAsync().AsTask().GetAwaiter().GetResult();

    private DatagramBackendServer Create(DatagramBackendRegistration registration)
    {
        var options = _services.GetRequiredService<IOptionsMonitor<DatagramBackendOptions>>().Get(registration.Name);
        var factory = registration.HandlerFactory
            ?? throw new InvalidOperationException($"The datagram backend '{registration.Name}' has no handler: call Map(...) on the builder returned by AddDatagramBackend.");
        return new DatagramBackendServer(
            options,
            factory(_services),
            _services.GetService<TimeProvider>(),
            _services.GetService<ILoggerFactory>());
    }
}

/// <summary>One <c>AddDatagramBackend</c> call: its name and handler.</summary>
internal sealed class DatagramBackendRegistration(string name)
{
    public string Name { get; } = name;

    public Func<IServiceProvider, DatagramHandler>? HandlerFactory { get; set; }
}
