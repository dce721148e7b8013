using Gateway.Configuration;
using Gateway.Diagnostics;
using Gateway.Ipc.Client;
using Gateway.Ipc.Diagnostics;
using Gateway.Ipc.Raw;
using Gateway.Resilience;
using Gateway.Security;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.Extensions.Options;
using Microsoft.Extensions.Primitives;

namespace Gateway.Routing;

/// <summary>
/// Owns the current <see cref="RouteTable"/>. Builds it from configuration at start-up and again whenever the
/// configuration reloads; an invalid change is logged and rejected, and the previous table stays.
/// </summary>
internal sealed class RouteTableProvider : IAsyncDisposable
{
    private readonly IOptionsFactory<GatewayOptions> _optionsFactory;
    private readonly TimeProvider _timeProvider;
    private readonly ILoggerFactory _loggerFactory;
    private readonly ILogger<RouteTableProvider> _logger;
    private readonly ILogger _resilienceLogger;
    private readonly Dictionary<InstanceKey, BackendInstance> _instances = [];
    private readonly Lock _gate = new();
    private readonly IDisposable? _reloadRegistration;
    private CancellationTokenSource _routingChangeSource = new();
    private CancellationTokenSource _changeSource;
    private RouteTable _current;
    private readonly string _replyPrefix = "gw-reply-" + Guid.NewGuid().ToString("n")[..12] + "-";
    private readonly DatagramTap _tap;
    private long _replyCounter;
    private string? _replyDirectory;
    private UnixFileMode _replyMode;
    private long _version;
    private bool _disposed;

    public RouteTableProvider(IOptions<GatewayOptions> options, IOptionsFactory<GatewayOptions> optionsFactory, IConfiguration configuration, TimeProvider timeProvider, ILoggerFactory loggerFactory, DatagramTap tap)
    {
        _tap = tap;
        _optionsFactory = optionsFactory;
        _timeProvider = timeProvider;
        _loggerFactory = loggerFactory;
        _logger = loggerFactory.CreateLogger<RouteTableProvider>();
        _resilienceLogger = loggerFactory.CreateLogger(typeof(InstanceResilience).FullName!);

        _changeSource = new CancellationTokenSource();

        // options.Value has been validated (ValidateOnStart): every error is reported before we get here.
        _current = Build(options.Value);
        _reloadRegistration = ChangeToken.OnChange(configuration.GetReloadToken, OnConfigurationChanged);
    }

    public RouteTable Current => Volatile.Read(ref _current);

    /// <summary>
    /// Fires when the table has been replaced and ASP.NET Core routing has adopted it (its matcher is rebuilt in the
    /// routing token's callbacks, which run first): a request sent after this fires is routed on the new table.
    /// </summary>
    public IChangeToken GetChangeToken() => new CancellationChangeToken(ChangeCancellationToken);

    /// <summary>
    /// Cancelled when the table is replaced. Read it <b>before</b> <see cref="Current"/>: the table is published first,
    /// then the token of the previous one is cancelled, so a reader never pairs a table with a newer token.
    /// </summary>
    public CancellationToken ChangeCancellationToken => Volatile.Read(ref _changeSource).Token;

    /// <summary>For <see cref="GatewayEndpointDataSource"/> only: fires first when the table has been replaced.</summary>
    internal IChangeToken GetRoutingChangeToken() => new CancellationChangeToken(Volatile.Read(ref _routingChangeSource).Token);

    /// <summary>Every instance currently known (for health and admin).</summary>
    public IReadOnlyCollection<BackendInstance> Instances
    {
        get
        {
            lock (_gate)
            {
                return [.. _instances.Values];
            }
        }
    }

    internal void OnConfigurationChanged()
    {
        GatewayOptions options;
        try
        {
            // The start-up path exactly: bind the well-formed values, add the demo, validate shape and values.
            options = _optionsFactory.Create(Options.DefaultName);
        }
        catch (OptionsValidationException ex)
        {
            Log.ConfigurationRejected(_logger, ConfigurationErrors.Format(ex.Failures));
            return;
        }
        catch (Exception ex) when (ex is InvalidOperationException or FormatException)
        {
            Log.ConfigurationRejected(_logger, ConfigurationErrors.Format([ex.Message]));
            return;
        }

        RouteTable table;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            try
            {
                table = Build(options);
            }
            catch (InvalidOperationException ex)
            {
                // e.g. a user or group name of an allow-list removed from /etc/passwd since validation a moment ago
                Log.ConfigurationRejected(_logger, ConfigurationErrors.Format([ex.Message]));
                return;
            }
        }

        Log.RouteTableReloaded(_logger, table.Version, table.Routes.Count, table.Backends.Count);
        LogSummary(table);
    }

    public void LogSummary(RouteTable? table = null)
    {
        table ??= Current;
        foreach (var backend in table.Backends.Values)
        {
            Log.BackendSummary(_logger, backend.Name, backend.Mode, string.Join(", ", backend.Instances.Select(i => i.SocketPath)), backend.Timeout);
        }

        foreach (var route in table.Routes)
        {
            Log.RouteSummary(_logger, route.Name, route.PathTemplate, route.Methods.Count == 0 ? "*" : string.Join(",", route.Methods), route.Backend.Name, route.Timeout, route.MaxBodySize);
        }
    }

    private RouteTable Build(GatewayOptions options)
    {
        lock (_gate)
        {
            // Resolved first: a name that no longer resolves must fail the build before anything changes.
            var globalRule = CallerRule.Create($"{GatewayOptions.SectionName}:Authorization", options.Authorization.AllowedUids, options.Authorization.AllowedGids);
            var adminRule = CallerRule.CreateAdmin($"{GatewayOptions.SectionName}:Admin", options.Admin.AllowedUids, options.Admin.AllowedGids);
            var routeRules = options.Routes.ToDictionary(r => r.Key, r => CallerRule.Create($"{GatewayOptions.SectionName}:Routes:{r.Key}", r.Value.AllowedUids, r.Value.AllowedGids), StringComparer.OrdinalIgnoreCase);

            _replyDirectory = options.ReplySocketDirectory;
            _ = GatewayOptionsValidator.TryParseMode(options.Listen.SocketMode, out _replyMode);
            if (_replyDirectory is not null)
            {
                PrepareReplyDirectory(_replyDirectory, _replyMode);
            }

            var used = new HashSet<InstanceKey>();
            var backends = new Dictionary<string, GatewayBackend>(StringComparer.OrdinalIgnoreCase);
            foreach (var (name, b) in options.Backends)
            {
                var instances = new List<BackendInstance>(b.Instances.Count);
                foreach (var path in b.Instances)
                {
                    var key = new InstanceKey(path, b.Mode, b.SendTimeout, b.Mode == BackendMode.Raw ? b.MaxConcurrency : 0, (uint?)b.ReplyUid, InstanceResilienceSettings.From(b));
                    used.Add(key);
                    if (!_instances.TryGetValue(key, out var instance))
                    {
                        instance = CreateInstance(key);
                        _instances[key] = instance;
                    }

                    instances.Add(instance);
                }

                backends[name] = new GatewayBackend
                {
                    Name = name,
                    Mode = b.Mode,
                    Instances = instances,
                    Timeout = b.Timeout,
                    MaxBodySize = b.EffectiveMaxBodySize,
                    StreamBodiesAbove = b.StreamBodiesAbove,
                    SendTimeout = b.SendTimeout,
                    AttemptTimeout = b.AttemptTimeout,
                    Retry = b.Retry,
                    LoadBalancing = b.LoadBalancing,
                    HealthCheck = b.HealthCheck,
                };
            }

            var routes = new List<GatewayRoute>(options.Routes.Count);
            foreach (var (name, r) in options.Routes.OrderBy(r => r.Key, StringComparer.Ordinal))
            {
                var backend = backends[r.Backend!];
                routes.Add(new GatewayRoute
                {
                    Name = name,
                    PathTemplate = r.Path!,
                    Pattern = RoutePatternFactory.Parse(r.Path!),
                    Methods = [.. r.Methods.Select(m => m.ToUpperInvariant()).Distinct(StringComparer.Ordinal)],
                    Backend = backend,
                    Timeout = r.Timeout ?? backend.Timeout,
                    MaxBodySize = r.MaxBodySize ?? backend.MaxBodySize,
                    ContentType = r.ContentType,
                    CallerRule = routeRules[name],
                    Summary = r.Summary,
                    Description = r.Description,
                });
            }

            foreach (var key in _instances.Keys.Where(k => !used.Contains(k)).ToList())
            {
                _instances.Remove(key, out var retired);
                retired!.Retire();
                Log.InstanceRetired(_logger, key.Path);
            }

            var table = new RouteTable(++_version, routes, backends)
            {
                CallerRule = globalRule,
                AdminRule = adminRule,
                ExemptHealthEndpoints = options.Authorization.ExemptHealthEndpoints,
                ForwardCallerCredentials = options.ForwardCallerCredentials,
            };
            Volatile.Write(ref _current, table);
            // Routing first (its callbacks rebuild the matcher synchronously), then everyone else: callbacks on one
            // token run in reverse order of registration, so one token could announce the change before routing saw it.
            // Cancelled, not disposed: a reader may still be taking its Token (a CTS without a timer holds nothing once cancelled).
            Interlocked.Exchange(ref _routingChangeSource, new CancellationTokenSource()).Cancel();
            Interlocked.Exchange(ref _changeSource, new CancellationTokenSource()).Cancel();
            return table;
        }
    }

    /// <summary>
    /// The mode of a reply socket directory the gateway creates: the owner's, plus search (x, not list) for the classes
    /// that the reply sockets' own mode lets write — 0700 for socket mode 0600, 0710 for the default 0660, so a
    /// backend of another user in the group can reach the (unguessable, unlisted) reply sockets and nobody else can.
    /// </summary>
    internal static UnixFileMode ReplyDirectoryMode(UnixFileMode socketMode)
    {
        var mode = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;
        if ((socketMode & UnixFileMode.GroupWrite) != 0)
        {
            mode |= UnixFileMode.GroupExecute;
        }

        if ((socketMode & UnixFileMode.OtherWrite) != 0)
        {
            mode |= UnixFileMode.OtherExecute;
        }

        return mode;
    }

    private void PrepareReplyDirectory(string directory, UnixFileMode socketMode)
    {
        if (!Directory.Exists(directory))
        {
            // Created private (the umask can only narrow it); an existing directory, e.g. a shared volume, keeps its mode.
            Hosting.SocketDirectory.Ensure(directory, $"{GatewayOptions.SectionName}:ReplySocketDirectory", ReplyDirectoryMode(socketMode));
            return;
        }

        var mode = File.GetUnixFileMode(directory);
        if ((mode & UnixFileMode.OtherWrite) != 0 && (mode & UnixFileMode.StickyBit) == 0)
        {
            Log.ReplyDirectoryNotPrivate(_logger, directory, Convert.ToString((int)mode & 0xFFF, 8).PadLeft(4, '0'));
        }
    }

    private BackendInstance CreateInstance(InstanceKey key)
    {
        if (key.Mode == BackendMode.Raw)
        {
            return new BackendInstance(key.Path, new RawDatagramClient(
                new RawDatagramClientOptions { ServerPath = key.Path, SendTimeout = key.SendTimeout, MaxConcurrency = key.MaxConcurrency, ReplyDirectory = _replyDirectory, ReplyFileMode = _replyMode, ExpectedReplyUid = key.ReplyUid, Tap = _tap },
                _timeProvider,
                _loggerFactory))
            {
                Resilience = new InstanceResilience(key.Resilience, _timeProvider, key.Path, _resilienceLogger),
            };
        }

        var replyPath = _replyDirectory is null ? null : Path.Combine(_replyDirectory, _replyPrefix + (++_replyCounter).ToString(System.Globalization.CultureInfo.InvariantCulture) + ".sock");
        var client = new DatagramClient(
            new DatagramClientOptions { BackendPath = key.Path, SendTimeout = key.SendTimeout, ReplyPath = replyPath, ExpectedReplyUid = key.ReplyUid, Tap = _tap },
            _timeProvider,
            _loggerFactory);
        if (replyPath is not null)
        {
            File.SetUnixFileMode(replyPath, _replyMode);
        }

        return new BackendInstance(key.Path, client)
        {
            Resilience = new InstanceResilience(key.Resilience, _timeProvider, key.Path, _resilienceLogger),
        };
    }

    public async ValueTask DisposeAsync()
    {
        List<BackendInstance> instances;
        lock (_gate)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            instances = [.. _instances.Values];
            _instances.Clear();
        }

        _reloadRegistration?.Dispose();
        foreach (var instance in instances)
        {
            await instance.DisposeAsync().ConfigureAwait(false);
        }

        _routingChangeSource.Dispose();
        _changeSource.Dispose();
    }

    private readonly record struct InstanceKey(string Path, BackendMode Mode, TimeSpan SendTimeout, int MaxConcurrency, uint? ReplyUid, InstanceResilienceSettings Resilience);
}
