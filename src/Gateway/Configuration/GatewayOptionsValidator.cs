using System.Buffers;
using System.Globalization;
using System.Text;
using Gateway.Ipc.Protocol;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.Extensions.Options;

namespace Gateway.Configuration;

/// <summary>
/// Validation of the whole <c>Gateway</c> section: first its shape (<see cref="OptionsShape"/>: unknown keys, values
/// that do not parse as their type, read from the configuration itself because binding loses them), then the bound
/// values across fields. Reports every error at once, each naming its configuration key, so a user fixes the file in
/// one pass; at start-up (ValidateOnStart) and on every reload (<see cref="Routing.RouteTableProvider"/>).
/// </summary>
internal sealed class GatewayOptionsValidator(IConfiguration configuration) : IValidateOptions<GatewayOptions>
{
    /// <summary>sun_path holds 108 bytes including the terminating NUL.</summary>
    internal const int MaxSocketPathBytes = 107;

    private static readonly SearchValues<char> TokenChars =
        SearchValues.Create("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");

    public ValidateOptionsResult Validate(string? name, GatewayOptions options)
    {
        var errors = OptionsShape.Check(configuration.GetSection(GatewayOptions.SectionName), typeof(GatewayOptions)).ToList();
        // A malformed value was not bound (or bound blank): its shape error says why, and an error about it, or one
        // that compares another value with it, would be about a default the user never wrote.
        var malformed = errors.Select(KeyOf).ToList();
        errors.AddRange(Validate(options).Where(e => !malformed.Exists(key => Names(e, key))));
        return errors.Count == 0 ? ValidateOptionsResult.Success : ValidateOptionsResult.Fail(errors);
    }

    /// <summary>The key an error is about: the text before its first ": ".</summary>
    private static string KeyOf(string error) => error.IndexOf(": ", StringComparison.Ordinal) is var i and >= 0 ? error[..i] : error;

    /// <summary>Whether <paramref name="error"/> names <paramref name="key"/> itself (not merely a key that begins with it).</summary>
    private static bool Names(string error, string key)
    {
        for (var i = error.IndexOf(key, StringComparison.OrdinalIgnoreCase); i >= 0; i = error.IndexOf(key, i + 1, StringComparison.OrdinalIgnoreCase))
        {
            var end = i + key.Length;
            if (end == error.Length || !(char.IsLetterOrDigit(error[end]) || error[end] == ':' && end + 1 < error.Length && error[end + 1] != ' '))
            {
                return true;
            }
        }

        return false;
    }

    private static void ValidateResilience(List<string> errors, string key, BackendOptions backend)
    {
        if (backend.AttemptTimeout is { } attempt && (attempt <= TimeSpan.Zero || attempt > backend.Timeout))
        {
            errors.Add($"{key}:AttemptTimeout: must be positive and at most {key}:Timeout.");
        }

        if (backend.Retry.MaxAttempts is < 1 or > 10)
        {
            errors.Add($"{key}:Retry:MaxAttempts: {backend.Retry.MaxAttempts} is out of range (1–10).");
        }

        if (backend.Retry.BaseDelay < TimeSpan.Zero || backend.Retry.BaseDelay > TimeSpan.FromMinutes(1))
        {
            errors.Add($"{key}:Retry:BaseDelay: must be between 0 and 1 minute.");
        }

        if (backend.Retry.MaxDelay < backend.Retry.BaseDelay)
        {
            errors.Add($"{key}:Retry:MaxDelay: must not be less than {key}:Retry:BaseDelay.");
        }

        if (!Enum.IsDefined(backend.LoadBalancing))
        {
            errors.Add($"{key}:LoadBalancing: must be RoundRobin or PowerOfTwoChoices.");
        }

        if (backend.MaxInFlightPerInstance is < 1 or > 1_000_000)
        {
            errors.Add($"{key}:MaxInFlightPerInstance: {backend.MaxInFlightPerInstance} is out of range (1–1000000).");
        }

        if (backend.QueueTimeout < TimeSpan.Zero)
        {
            errors.Add($"{key}:QueueTimeout: must not be negative.");
        }

        var breaker = backend.CircuitBreaker;
        if (breaker.FailureRatio is <= 0 or > 1 || double.IsNaN(breaker.FailureRatio))
        {
            errors.Add($"{key}:CircuitBreaker:FailureRatio: {breaker.FailureRatio.ToString(CultureInfo.InvariantCulture)} is out of range (0 < ratio ≤ 1).");
        }

        if (breaker.MinimumThroughput < 2)
        {
            errors.Add($"{key}:CircuitBreaker:MinimumThroughput: must be at least 2.");
        }

        if (breaker.SamplingDuration < TimeSpan.FromMilliseconds(500))
        {
            errors.Add($"{key}:CircuitBreaker:SamplingDuration: must be at least 500 ms.");
        }

        if (breaker.BreakDuration < TimeSpan.FromMilliseconds(500) || breaker.BreakDuration > TimeSpan.FromDays(1))
        {
            errors.Add($"{key}:CircuitBreaker:BreakDuration: must be between 500 ms and 1 day.");
        }

        var health = backend.HealthCheck;
        if (health.Interval <= TimeSpan.Zero)
        {
            errors.Add($"{key}:HealthCheck:Interval: must be positive.");
        }

        if (health.Timeout <= TimeSpan.Zero)
        {
            errors.Add($"{key}:HealthCheck:Timeout: must be positive.");
        }

        if (health.EjectAfterFailures < 1)
        {
            errors.Add($"{key}:HealthCheck:EjectAfterFailures: must be at least 1.");
        }
    }

    public static List<string> Validate(GatewayOptions options)
    {
        const string root = GatewayOptions.SectionName;
        var errors = new List<string>();

        ValidateSocketPath(errors, $"{root}:Listen:UnixSocket", options.Listen.UnixSocket);
        if (!TryParseMode(options.Listen.SocketMode, out _))
        {
            errors.Add($"{root}:Listen:SocketMode: '{options.Listen.SocketMode}' is not an octal file mode between 0000 and 0777 (e.g. 0660).");
        }

        if (!string.IsNullOrWhiteSpace(options.Listen.SocketGroup) && !GroupExists(options.Listen.SocketGroup))
        {
            errors.Add($"{root}:Listen:SocketGroup: group '{options.Listen.SocketGroup}' does not exist (a name from /etc/group or a numeric id).");
        }

        if (options.Listen.TcpPort is < 1 or > 65535)
        {
            errors.Add($"{root}:Listen:TcpPort: {options.Listen.TcpPort} is not a port number (1–65535).");
        }

        if (options.DrainTimeout < TimeSpan.Zero)
        {
            errors.Add($"{root}:DrainTimeout: must not be negative.");
        }

        if (string.IsNullOrWhiteSpace(options.RequestIdHeader) || options.RequestIdHeader.AsSpan().ContainsAnyExcept(TokenChars))
        {
            errors.Add($"{root}:RequestIdHeader: '{options.RequestIdHeader}' is not a valid header name.");
        }

        ValidateCallerLists(errors, $"{root}:Authorization", options.Authorization.AllowedUids, options.Authorization.AllowedGids);
        ValidateCallerLists(errors, $"{root}:Admin", options.Admin.AllowedUids, options.Admin.AllowedGids);
        ValidateLimits(errors, root, options.Limits, options.RateLimiting);

        if (options.ReplySocketDirectory is { } replyDirectory)
        {
            // Reply sockets are named "gw-reply-<12 hex>-<n>.sock" inside it: keep room for that in sun_path.
            if (!Path.IsPathRooted(replyDirectory))
            {
                errors.Add($"{root}:ReplySocketDirectory: '{replyDirectory}' must be an absolute path.");
            }
            else if (Encoding.UTF8.GetByteCount(replyDirectory) > MaxSocketPathBytes - 40)
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture, $"{root}:ReplySocketDirectory: '{replyDirectory}' is too long; reply socket paths inside it must fit {MaxSocketPathBytes} bytes (use at most {MaxSocketPathBytes - 40})."));
            }
        }

        if (options.DemoBackend.SocketPath is { } demoPath)
        {
            ValidateSocketPath(errors, $"{root}:DemoBackend:SocketPath", demoPath);
        }

        foreach (var (backendName, backend) in options.Backends)
        {
            var key = $"{root}:Backends:{backendName}";
            if (backend is null)
            {
                errors.Add($"{key}: is empty.");
                continue;
            }

            if (backend.Instances.Count == 0)
            {
                errors.Add($"{key}:Instances: at least one datagram socket path is required.");
            }

            for (var i = 0; i < backend.Instances.Count; i++)
            {
                ValidateSocketPath(errors, $"{key}:Instances:{i}", backend.Instances[i]);
            }

            var duplicate = backend.Instances.GroupBy(p => p, StringComparer.Ordinal).FirstOrDefault(g => g.Count() > 1);
            if (duplicate is not null)
            {
                errors.Add($"{key}:Instances: '{duplicate.Key}' is listed more than once.");
            }

            if (backend.Timeout <= TimeSpan.Zero)
            {
                errors.Add($"{key}:Timeout: must be positive.");
            }

            if (backend.SendTimeout <= TimeSpan.Zero)
            {
                errors.Add($"{key}:SendTimeout: must be positive.");
            }

            if (backend.ReplyUid is < 0 or >= uint.MaxValue)
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture, $"{key}:ReplyUid: {backend.ReplyUid} is not a uid (0–{uint.MaxValue - 1})."));
            }

            ValidateBodySize(errors, $"{key}:MaxBodySize", backend.EffectiveMaxBodySize, backend.Mode);
            if (backend.StreamBodiesAbove is < 0 or > ProtocolConstants.DefaultMaxBodyBytes)
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture, $"{key}:StreamBodiesAbove: {backend.StreamBodiesAbove} is out of range (0–{ProtocolConstants.DefaultMaxBodyBytes}: a body sent in one message has at most 16 MiB)."));
            }
            if (backend.MaxConcurrency is < 1 or > 100_000)
            {
                errors.Add($"{key}:MaxConcurrency: {backend.MaxConcurrency} is out of range (1–100000).");
            }

            ValidateResilience(errors, key, backend);
        }

        var seen = new Dictionary<string, (string Route, List<string> Methods)>(StringComparer.OrdinalIgnoreCase);
        foreach (var (routeName, route) in options.Routes)
        {
            var key = $"{root}:Routes:{routeName}";
            if (route is null)
            {
                errors.Add($"{key}: is empty.");
                continue;
            }

            if (string.IsNullOrWhiteSpace(route.Path))
            {
                errors.Add($"{key}:Path: is required (an ASP.NET Core route template such as /echo/{{**rest}}).");
            }
            else if (!route.Path.StartsWith('/'))
            {
                errors.Add($"{key}:Path: '{route.Path}' must start with '/'.");
            }
            else
            {
                try
                {
                    RoutePatternFactory.Parse(route.Path);
                }
                catch (RoutePatternException ex)
                {
                    errors.Add($"{key}:Path: '{route.Path}' is not a valid route template: {ex.Message}");
                }

                if (IsReserved(route.Path))
                {
                    errors.Add($"{key}:Path: '{route.Path}' is reserved for the gateway's own endpoints (/healthz, /readyz, /admin, /openapi, /swagger).");
                }
            }

            for (var i = 0; i < route.Methods.Count; i++)
            {
                var method = route.Methods[i];
                if (string.IsNullOrEmpty(method) || method.Length > ProtocolConstants.MaxMethodLength || method.AsSpan().ContainsAnyExcept(TokenChars))
                {
                    errors.Add($"{key}:Methods:{i}: '{method}' is not an HTTP method token.");
                }
            }

            BackendOptions? target = null;
            if (string.IsNullOrWhiteSpace(route.Backend))
            {
                errors.Add($"{key}:Backend: is required (the name of an entry under {root}:Backends).");
            }
            else if (!options.Backends.TryGetValue(route.Backend, out target))
            {
                var known = options.Backends.Count == 0 ? "none is configured" : "known: " + string.Join(", ", options.Backends.Keys.Order(StringComparer.Ordinal));
                errors.Add($"{key}:Backend: '{route.Backend}' is not a configured backend ({known}).");
            }

            ValidateCallerLists(errors, key, route.AllowedUids, route.AllowedGids);

            if (route.ContentType is { } contentType && !Microsoft.Net.Http.Headers.MediaTypeHeaderValue.TryParse(contentType, out _))
            {
                errors.Add($"{key}:ContentType: '{contentType}' is not a media type (e.g. text/plain; charset=utf-8).");
            }

            if (route.Timeout is { } timeout && timeout <= TimeSpan.Zero)
            {
                errors.Add($"{key}:Timeout: must be positive.");
            }

            if (route.MaxBodySize is { } max)
            {
                ValidateBodySize(errors, $"{key}:MaxBodySize", max, target?.Mode ?? BackendMode.Envelope);
            }

            if (!string.IsNullOrWhiteSpace(route.Path))
            {
                var methods = route.Methods.Count == 0 ? ["*"] : route.Methods.Select(m => m.ToUpperInvariant()).ToList();
                var normalized = Normalize(route.Path);
                if (seen.TryGetValue(normalized, out var other) && (other.Methods.Contains("*") || methods.Contains("*") || other.Methods.Intersect(methods).Any()))
                {
                    errors.Add($"{key}:Path: '{route.Path}' overlaps route '{other.Route}' for the same methods.");
                }
                else
                {
                    seen[normalized] = (routeName, methods);
                }
            }
        }

        return errors;
    }

    /// <summary>Every entry of an allow-list must be a numeric id or a known name.</summary>
    private static void ValidateCallerLists(List<string> errors, string section, List<string> uids, List<string> gids)
    {
        for (var i = 0; i < uids.Count; i++)
        {
            if (!Security.UnixIds.TryResolveUser(uids[i], out _))
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture, $"{section}:AllowedUids:{i}: '{uids[i]}' is not a uid (a number or a user name from /etc/passwd)."));
            }
        }

        for (var i = 0; i < gids.Count; i++)
        {
            if (!Security.UnixIds.TryResolveGroup(gids[i], out _))
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture, $"{section}:AllowedGids:{i}: '{gids[i]}' is not a gid (a number or a group name from /etc/group)."));
            }
        }
    }

    private static void ValidateLimits(List<string> errors, string root, RequestLimitsOptions limits, CallerRateLimitOptions rate)
    {
        if (limits.MaxRequestHeaderCount is < 1 or > 10_000)
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{root}:Limits:MaxRequestHeaderCount: {limits.MaxRequestHeaderCount} is out of range (1–10000)."));
        }

        if (limits.MaxRequestHeadersTotalSize is < 1024 or > RequestLimitsOptions.MaxHeadersTotalSizeLimit)
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{root}:Limits:MaxRequestHeadersTotalSize: {limits.MaxRequestHeadersTotalSize} is out of range (1024–{RequestLimitsOptions.MaxHeadersTotalSizeLimit} bytes: with a 16 MiB body, the envelope must fit the 17 MiB message of docs/protocol.md §6)."));
        }

        if (rate.PermitsPerSecond is { } permits && (!double.IsFinite(permits) || permits <= 0 || permits > 1_000_000))
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{root}:RateLimiting:PermitsPerSecond: {permits} is out of range (0 < rate ≤ 1000000)."));
        }

        if (rate.Burst is { } burst)
        {
            if (burst is < 1 or > 1_000_000)
            {
                errors.Add(string.Create(CultureInfo.InvariantCulture, $"{root}:RateLimiting:Burst: {burst} is out of range (1–1000000)."));
            }
            else if (rate.PermitsPerSecond is null)
            {
                errors.Add($"{root}:RateLimiting:Burst: has no effect without {root}:RateLimiting:PermitsPerSecond.");
            }
        }

        if (rate.ConcurrentRequestsPerCaller is < 1 or > 1_000_000)
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{root}:RateLimiting:ConcurrentRequestsPerCaller: {rate.ConcurrentRequestsPerCaller} is out of range (1–1000000)."));
        }
    }

    public static bool TryParseMode(string? text, out UnixFileMode mode)
    {
        mode = default;
        if (string.IsNullOrWhiteSpace(text) || text.Length > 4)
        {
            return false;
        }

        try
        {
            var value = Convert.ToInt32(text, 8);
            if (value is < 0 or > 0x1ff)
            {
                return false;
            }

            mode = (UnixFileMode)value;
            return true;
        }
        catch (FormatException)
        {
            return false;
        }
    }

    private static bool GroupExists(string group) => Security.UnixIds.TryResolveGroup(group, out _);

    private static void ValidateSocketPath(List<string> errors, string key, string? path)
    {
        if (string.IsNullOrWhiteSpace(path))
        {
            errors.Add($"{key}: a socket path is required.");
        }
        else if (!Path.IsPathRooted(path))
        {
            errors.Add($"{key}: '{path}' must be an absolute path.");
        }
        else if (Encoding.UTF8.GetByteCount(path) > MaxSocketPathBytes)
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{key}: '{path}' is {Encoding.UTF8.GetByteCount(path)} bytes; a Unix socket path holds at most {MaxSocketPathBytes}."));
        }
    }

    /// <summary>The largest body limit an envelope route may have (1 TiB): bodies over 16 MiB are streamed.</summary>
    public const long MaxStreamedBodySize = 1L << 40;

    private static void ValidateBodySize(List<string> errors, string key, long value, BackendMode mode)
    {
        var max = mode == BackendMode.Raw ? ProtocolConstants.MaxDatagram : MaxStreamedBodySize;
        if (value <= 0 || value > max)
        {
            errors.Add(string.Create(CultureInfo.InvariantCulture, $"{key}: {value} is out of range; {mode} backends accept 1 to {max} bytes."));
        }
    }

    private static bool IsReserved(string path)
    {
        foreach (var prefix in (ReadOnlySpan<string>)["/healthz", "/readyz", "/admin", "/openapi", "/swagger"])
        {
            if (path.Equals(prefix, StringComparison.OrdinalIgnoreCase) || path.StartsWith(prefix + "/", StringComparison.OrdinalIgnoreCase))
            {
                return true;
            }
        }

        return false;
    }

    private static string Normalize(string path) => path.TrimEnd('/');
}
