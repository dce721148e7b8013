using Gateway.Testing;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;

namespace Gateway.Tests.Infrastructure;

/// <summary>
/// The gateway under WebApplicationFactory with its own temp directory for sockets. By default in-memory
/// (TestServer); <see cref="StartKestrel"/> runs it on a real Unix socket instead.
/// </summary>
public sealed class GatewayFactory : WebApplicationFactory<Program>
{
    private readonly Dictionary<string, string?> _settings;
    private readonly Action<IServiceCollection>? _services;
    private bool _kestrel;

    private readonly string? _jsonFile;

    public GatewayFactory(TempSocketDirectory directory, IDictionary<string, string?>? settings = null, Action<IServiceCollection>? services = null, string? jsonFile = null)
    {
        _jsonFile = jsonFile;
        Directory = directory;
        _services = services;
        _settings = new Dictionary<string, string?>
        {
            ["Gateway:Listen:UnixSocket"] = directory.Socket("gw.sock"),
            ["Gateway:DemoBackend:Enabled"] = "false",
            ["Logging:LogLevel:Default"] = "Warning",
        };
        foreach (var (key, value) in settings ?? new Dictionary<string, string?>())
        {
            _settings[key] = value;
        }
    }

    public TempSocketDirectory Directory { get; }

    public string SocketPath => _settings["Gateway:Listen:UnixSocket"]!;

    /// <summary>Starts the gateway on Kestrel, listening on <see cref="SocketPath"/>.</summary>
    public GatewayFactory StartKestrel()
    {
        _kestrel = true;
        UseKestrel();
        StartServer();
        return this;
    }

    /// <summary>An HttpClient to the running gateway: over the Unix socket under Kestrel, in memory otherwise.</summary>
    public HttpClient CreateGatewayClient() => _kestrel ? UnixHttp.CreateClient(SocketPath) : CreateClient();

    protected override void ConfigureWebHost(IWebHostBuilder builder)
    {
        builder.UseEnvironment("Testing");
        // Telemetry is registered from the configuration that Program.cs sees while it adds services; host settings
        // reach it then, the app configuration below only when the host is built.
        foreach (var (key, value) in _settings)
        {
            if (key.StartsWith("OTEL_", StringComparison.Ordinal) || key.StartsWith("Gateway:Telemetry:", StringComparison.Ordinal))
            {
                builder.UseSetting(key, value);
            }
        }

        builder.ConfigureAppConfiguration(config =>
        {
            config.AddInMemoryCollection(_settings);
            if (_jsonFile is not null)
            {
                config.AddJsonFile(_jsonFile, optional: false, reloadOnChange: true);
            }
        });
        if (_services is not null)
        {
            builder.ConfigureServices(_services);
        }
    }
}
