using System.Reflection;
using System.Text.Json;
using Microsoft.Extensions.Configuration.Json;
using Microsoft.Extensions.FileProviders;
using Microsoft.Extensions.Primitives;

namespace Gateway.Hosting;

/// <summary>
/// The gateway's configuration files, each watched for changes: <c>appsettings.json</c> and
/// <c>appsettings.&lt;Environment&gt;.json</c> (beside the executable; in Development, when the build's project
/// directory exists, those of the project, so that <c>dotnet run</c> picks up edits of <c>src/Gateway/appsettings.json</c>),
/// then the file named by <c>--config</c> or <c>GATEWAY_CONFIG</c>. They take the place of the default builder's
/// <c>appsettings*.json</c> sources, before user secrets, environment variables and the command line.
/// </summary>
internal sealed partial class ConfigurationFiles
{
    public const string ConfigSwitch = "--config";
    public const string ConfigVariable = "GATEWAY_CONFIG";

    /// <summary>Overrides the project directory recorded at build time (tests use it to point at a copy).</summary>
    public const string ProjectDirectoryVariable = "GATEWAY_DEVELOPMENT_PROJECT_DIRECTORY";

    private const string ProjectDirectoryMetadata = "Gateway.ProjectDirectory";

    private readonly List<WatchedJsonFileSource> _files = [];

    /// <summary>Set once the host is built; until then reload failures go to stderr.</summary>
    public ILogger? Logger { get; set; }

    /// <summary>The full paths of the watched files, in the order they apply (a later one overrides an earlier one).</summary>
    public IReadOnlyList<string> Paths => _files.Select(f => f.FullPath).ToArray();

    /// <summary>Removes <c>--config &lt;path&gt;</c> (or <c>--config=&lt;path&gt;</c>) from the arguments.</summary>
    /// <exception cref="StartupException">The switch has no value.</exception>
    public static string[] ExtractConfigSwitch(string[] args, out string? path)
    {
        path = null;
        var rest = new List<string>(args.Length);
        for (var i = 0; i < args.Length; i++)
        {
            if (args[i] == ConfigSwitch)
            {
                if (i + 1 >= args.Length || args[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    throw new StartupException($"{ConfigSwitch}: the path of a JSON configuration file must follow.");
                }

                path = args[++i];
            }
            else if (args[i].StartsWith(ConfigSwitch + "=", StringComparison.Ordinal))
            {
                path = args[i][(ConfigSwitch.Length + 1)..];
            }
            else
            {
                rest.Add(args[i]);
            }
        }

        return [.. rest];
    }

    /// <summary>Replaces the default <c>appsettings*.json</c> sources with watched ones and adds the <c>--config</c> file.</summary>
    /// <exception cref="StartupException">A file is required and absent, or is not valid JSON.</exception>
    public static ConfigurationFiles Apply(WebApplicationBuilder builder, string? configSwitchPath)
    {
        var files = new ConfigurationFiles();
        IList<IConfigurationSource> sources = builder.Configuration.Sources;
        var index = -1;
        for (var i = sources.Count - 1; i >= 0; i--)
        {
            if (sources[i] is JsonConfigurationSource { Path: { } path } && path.StartsWith("appsettings.", StringComparison.OrdinalIgnoreCase))
            {
                sources.RemoveAt(i);
                index = i;
            }
        }

        if (index < 0)
        {
            index = sources.Count;
        }

        var environment = builder.Environment.EnvironmentName;
        var directory = builder.Environment.IsDevelopment() && ProjectDirectory() is { } project ? project : builder.Environment.ContentRootPath;
        var added = new List<WatchedJsonFileSource>
        {
            new(files, Path.Combine(directory, "appsettings.json"), optional: true, origin: "appsettings.json"),
            new(files, Path.Combine(directory, $"appsettings.{environment}.json"), optional: true, origin: $"appsettings.{environment}.json"),
        };

        var (configPath, origin) = configSwitchPath is not null
            ? (configSwitchPath, ConfigSwitch)
            : (Environment.GetEnvironmentVariable(ConfigVariable) is { Length: > 0 } fromVariable ? (fromVariable, ConfigVariable) : (null, null));
        if (configPath is not null)
        {
            added.Add(new(files, Path.GetFullPath(configPath), optional: false, origin: origin!));
        }

        foreach (var source in added)
        {
            files._files.Add(source);
            sources.Insert(index++, source);
        }

        return files;
    }

    /// <summary>The project directory recorded at build time, when it still exists (a development checkout).</summary>
    private static string? ProjectDirectory()
    {
        var directory = Environment.GetEnvironmentVariable(ProjectDirectoryVariable)
            ?? typeof(ConfigurationFiles).Assembly.GetCustomAttributes<AssemblyMetadataAttribute>().FirstOrDefault(a => a.Key == ProjectDirectoryMetadata)?.Value;
        return !string.IsNullOrEmpty(directory) && File.Exists(Path.Combine(directory, "appsettings.json")) ? directory : null;
    }

    internal void ReportReloadFailure(string path, string reason)
    {
        if (Logger is { } logger)
        {
            LogReloadRejected(logger, path, reason);
        }
        else
        {
            Console.Error.WriteLine($"Configuration file {path} changed but {reason}; its previous content stays in effect");
        }
    }

    internal void ReportReloaded(string path)
    {
        if (Logger is { } logger)
        {
            LogReloaded(logger, path);
        }
    }

    [LoggerMessage(1030, LogLevel.Information, "Configuration files (watched for changes, later ones override earlier ones): {Files}")]
    public static partial void LogWatched(ILogger logger, string files);

    [LoggerMessage(1031, LogLevel.Error, "Configuration file {Path} changed but {Reason}; its previous content stays in effect")]
    private static partial void LogReloadRejected(ILogger logger, string path, string reason);

    [LoggerMessage(1032, LogLevel.Information, "Configuration file {Path} changed; reloaded")]
    private static partial void LogReloaded(ILogger logger, string path);
}

/// <summary>Logs the watched configuration files at start-up and lets reload failures be logged.</summary>
internal sealed class ConfigurationFilesLog(ConfigurationFiles files, ILogger<ConfigurationFiles> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        files.Logger = logger;
        ConfigurationFiles.LogWatched(logger, string.Join(", ", files.Paths.Select(p => File.Exists(p) ? p : p + " (absent)")));
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}

/// <summary>A JSON file watched through its directory; see <see cref="WatchedJsonFileProvider"/>.</summary>
internal sealed class WatchedJsonFileSource(ConfigurationFiles owner, string fullPath, bool optional, string origin) : IConfigurationSource
{
    public ConfigurationFiles Owner { get; } = owner;

    public string FullPath { get; } = fullPath;

    public bool Optional { get; } = optional;

    /// <summary>Where the path came from (<c>--config</c>, <c>GATEWAY_CONFIG</c>, <c>appsettings.json</c>), for error messages.</summary>
    public string Origin { get; } = origin;

    public IConfigurationProvider Build(IConfigurationBuilder builder) => new WatchedJsonFileProvider(this);
}

/// <summary>
/// Reads a JSON configuration file and reloads it when it changes. Unlike the built-in JSON provider, a change that
/// leaves the file unreadable (invalid JSON mid-edit, a file briefly absent while an editor replaces it) keeps the
/// last good content and is logged naming the file; at start-up the same failures stop the gateway.
/// </summary>
internal sealed class WatchedJsonFileProvider : ConfigurationProvider, IDisposable
{
    /// <summary>As the built-in provider: lets an editor finish writing before the file is read.</summary>
    private static readonly TimeSpan ReloadDelay = TimeSpan.FromMilliseconds(250);

    private readonly WatchedJsonFileSource _source;
    private readonly PhysicalFileProvider? _watcher;
    private readonly IDisposable? _registration;
    private bool _loaded;
    private string? _lastFailure;
    private readonly Lock _gate = new();

    public WatchedJsonFileProvider(WatchedJsonFileSource source)
    {
        _source = source;
        var directory = Path.GetDirectoryName(source.FullPath);
        if (directory is not null && Directory.Exists(directory))
        {
            _watcher = new PhysicalFileProvider(directory, Microsoft.Extensions.FileProviders.Physical.ExclusionFilters.None);
            var name = Path.GetFileName(source.FullPath);
            _registration = ChangeToken.OnChange(() => _watcher.Watch(name), () => _ = ReloadAfterDelayAsync());
        }
    }

    public override void Load()
    {
        if (TryRead(out var data, out var reason))
        {
            Data = data;
        }
        else if (!_loaded)
        {
            throw new StartupException($"{_source.Origin}: the configuration file {_source.FullPath} {reason}.");
        }
        else
        {
            _source.Owner.ReportReloadFailure(_source.FullPath, reason);
        }

        _loaded = true;
    }

    private async Task ReloadAfterDelayAsync()
    {
        await Task.Delay(ReloadDelay).ConfigureAwait(false);
        lock (_gate) // one save may raise several change events
        {
            if (TryRead(out var data, out var reason))
            {
                if (!SameAs(data))
                {
                    Data = data;
                    _source.Owner.ReportReloaded(_source.FullPath);
                    OnReload();
                }
            }
            else if (reason != _lastFailure)
            {
                _source.Owner.ReportReloadFailure(_source.FullPath, reason); // once per distinct failure
            }

            _lastFailure = reason;
        }
    }

    private bool SameAs(IDictionary<string, string?> data) =>
        data.Count == Data.Count && data.All(kv => Data.TryGetValue(kv.Key, out var value) && value == kv.Value);

    /// <summary>Reads and parses the file; an optional absent file is empty; otherwise false with the reason.</summary>
    private bool TryRead(out IDictionary<string, string?> data, [System.Diagnostics.CodeAnalysis.NotNullWhen(false)] out string? reason)
    {
        data = new Dictionary<string, string?>(StringComparer.OrdinalIgnoreCase);
        reason = null;
        byte[] bytes;
        try
        {
            bytes = File.ReadAllBytes(_source.FullPath);
        }
        catch (Exception ex) when (ex is FileNotFoundException or DirectoryNotFoundException)
        {
            if (_source.Optional)
            {
                return true;
            }

            reason = "does not exist";
            return false;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            reason = $"cannot be read: {ex.Message.TrimEnd('.')}";
            return false;
        }

        try
        {
            using var stream = new MemoryStream(bytes);
            var parser = new Parser(new JsonStreamConfigurationSource { Stream = stream });
            parser.Load();
            data = parser.Parsed;
            return true;
        }
        catch (Exception ex) when (ex is FormatException or JsonException)
        {
            reason = $"is not valid JSON: {(ex.InnerException ?? ex).Message.TrimEnd('.')}";
            return false;
        }
    }

    public void Dispose()
    {
        _registration?.Dispose();
        _watcher?.Dispose();
    }

    private sealed class Parser(JsonStreamConfigurationSource source) : JsonStreamConfigurationProvider(source)
    {
        public IDictionary<string, string?> Parsed => Data;
    }
}
