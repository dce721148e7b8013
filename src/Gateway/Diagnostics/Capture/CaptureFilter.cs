using System.Globalization;
using Gateway.Routing;
using Microsoft.Extensions.Primitives;

namespace Gateway.Diagnostics.Capture;

/// <summary>
/// What a capture keeps and when it ends: the query of <c>GET /admin/capture</c>. Every list parameter may repeat and
/// may hold comma-separated values; values of one parameter are alternatives (OR), different parameters all apply (AND).
/// </summary>
internal sealed class CaptureFilter
{
    public const int DefaultCount = 1000;
    public const int MaxCount = 1_000_000;
    public static readonly TimeSpan DefaultDuration = TimeSpan.FromSeconds(60);
    public static readonly TimeSpan MaxDuration = TimeSpan.FromHours(1);
    public const int MaxPayloadBytes = 65_536;

    public static readonly string[] Parameters = ["backend", "route", "instance", "correlationId", "kind", "count", "duration", "payload", "format"];

    public static readonly string[] Kinds = ["REQUEST", "RESPONSE", "ERROR", "PING", "PONG", "CANCEL", "RESPONSE_HEAD", "REQUEST_HEAD", "CHUNK", "END", "CREDIT", "RAW", "MALFORMED"];

    /// <summary>Backend names (as configured); null = any.</summary>
    public HashSet<string>? Backends { get; private init; }

    /// <summary>Route names; null = any.</summary>
    public HashSet<string>? Routes { get; private init; }

    /// <summary>The backends of <see cref="Routes"/>.</summary>
    public HashSet<string>? RouteBackends { get; private init; }

    /// <summary>Instance socket paths; null = any.</summary>
    public HashSet<string>? Instances { get; private init; }

    public HashSet<ulong>? CorrelationIds { get; private init; }

    public HashSet<string>? KindNames { get; private init; }

    public int Count { get; private init; } = DefaultCount;

    public TimeSpan Duration { get; private init; } = DefaultDuration;

    /// <summary>Whether the capture is written as pcapng (whole datagrams) instead of NDJSON.</summary>
    public bool Pcapng { get; private init; }

    /// <summary>Payload bytes to include per datagram (0 = none).</summary>
    public int PayloadBytes { get; private init; }

    /// <summary>Whether this session may want datagrams of <paramref name="backend"/> (checked per forwarded request while a capture runs).</summary>
    public bool MatchesBackend(string backend) =>
        (Backends is null || Backends.Contains(backend)) && (RouteBackends is null || RouteBackends.Contains(backend));

    /// <summary>Checked first, for every datagram while a capture runs: whether this session wants anything from the instance.</summary>
    public bool MatchesInstance(string[] backends, string path)
    {
        if (Instances is not null && !Instances.Contains(path))
        {
            return false;
        }

        return (Backends is null || Any(Backends, backends)) && (RouteBackends is null || Any(RouteBackends, backends));
    }

    public bool Matches(CapturedDatagram datagram, string[] backends)
    {
        if (!MatchesInstance(backends, datagram.Instance))
        {
            return false;
        }

        if (KindNames is not null && !KindNames.Contains(datagram.Kind))
        {
            return false;
        }

        if (CorrelationIds is not null && (datagram.CorrelationId is not { } id || !CorrelationIds.Contains(id)))
        {
            return false;
        }

        // A route's datagrams: those of the requests it forwarded; a raw backend's carry no correlation ID.
        return Routes is null || datagram.Kind == "RAW" || (datagram.Route is { } route && Routes.Contains(route));
    }

    private static bool Any(HashSet<string> wanted, string[] backends)
    {
        foreach (var backend in backends)
        {
            if (wanted.Contains(backend))
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>Parses the query against the current route table; every problem is named with its parameter.</summary>
    public static CaptureFilter? TryParse(IQueryCollection query, RouteTable table, List<string> errors)
    {
        foreach (var key in query.Keys)
        {
            if (!Parameters.Contains(key, StringComparer.Ordinal))
            {
                var near = Parameters.FirstOrDefault(p => string.Equals(p, key, StringComparison.OrdinalIgnoreCase));
                errors.Add($"Unknown parameter '{key}'{(near is null ? "" : $" (did you mean '{near}'?)")}; the parameters are {string.Join(", ", Parameters)}.");
            }
        }

        var backends = Values(query, "backend");
        foreach (var name in backends ?? [])
        {
            if (!table.Backends.ContainsKey(name))
            {
                errors.Add($"backend: there is no backend '{name}'; the backends are {Known(table.Backends.Keys)}.");
            }
        }

        var routes = Values(query, "route");
        HashSet<string>? routeBackends = null;
        foreach (var name in routes ?? [])
        {
            if (table.FindRoute(name) is { } route)
            {
                (routeBackends ??= new(StringComparer.OrdinalIgnoreCase)).Add(route.Backend.Name);
            }
            else
            {
                errors.Add($"route: there is no route '{name}'; the routes are {Known(table.Routes.Select(r => r.Name))}.");
            }
        }

        var instances = Values(query, "instance");
        var knownInstances = table.Backends.Values.SelectMany(b => b.Instances).Select(i => i.SocketPath).ToHashSet(StringComparer.Ordinal);
        foreach (var path in instances ?? [])
        {
            if (!knownInstances.Contains(path))
            {
                errors.Add($"instance: no backend has the instance '{path}'; the instances are {Known(knownInstances)}.");
            }
        }

        HashSet<ulong>? ids = null;
        foreach (var text in Values(query, "correlationId") ?? [])
        {
            if (text.Length is >= 1 and <= 16 && ulong.TryParse(text, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var id) && id != 0)
            {
                (ids ??= []).Add(id);
            }
            else
            {
                errors.Add($"correlationId: '{text}' is not a correlation ID (1 to 16 hex digits, as in X-Correlation-Id, not 0).");
            }
        }

        HashSet<string>? kinds = null;
        foreach (var text in Values(query, "kind") ?? [])
        {
            var kind = Kinds.FirstOrDefault(k => string.Equals(k, text, StringComparison.OrdinalIgnoreCase));
            if (kind is null)
            {
                errors.Add($"kind: '{text}' is not a kind; the kinds are {string.Join(", ", Kinds)}.");
            }
            else
            {
                (kinds ??= new(StringComparer.Ordinal)).Add(kind);
            }
        }

        var count = DefaultCount;
        if (Single(query, "count", errors) is { } countText
            && (!int.TryParse(countText, NumberStyles.None, CultureInfo.InvariantCulture, out count) || count is < 1 or > MaxCount))
        {
            errors.Add($"count: '{countText}' is not a whole number from 1 to {MaxCount}.");
        }

        var duration = DefaultDuration;
        if (Single(query, "duration", errors) is { } durationText)
        {
            if (double.TryParse(durationText, NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var seconds) && seconds > 0 && seconds <= MaxDuration.TotalSeconds)
            {
                duration = TimeSpan.FromSeconds(seconds);
            }
            else
            {
                errors.Add($"duration: '{durationText}' is not a number of seconds greater than 0 and at most {MaxDuration.TotalSeconds:0}.");
            }
        }

        var payload = 0;
        if (Single(query, "payload", errors) is { } payloadText
            && (!int.TryParse(payloadText, NumberStyles.None, CultureInfo.InvariantCulture, out payload) || payload > MaxPayloadBytes))
        {
            errors.Add($"payload: '{payloadText}' is not a number of bytes from 0 to {MaxPayloadBytes}.");
        }

        var pcapng = false;
        if (Single(query, "format", errors) is { } format)
        {
            if (format is "pcapng")
            {
                pcapng = true;
            }
            else if (format is not "ndjson")
            {
                errors.Add($"format: '{format}' is not a format; the formats are ndjson (the default) and pcapng.");
            }

            if (pcapng && payload != 0)
            {
                errors.Add("payload: a pcapng capture always holds whole datagrams; leave payload out.");
            }
        }

        return errors.Count != 0 ? null : new CaptureFilter
        {
            Backends = backends?.ToHashSet(StringComparer.OrdinalIgnoreCase),
            Routes = routes?.ToHashSet(StringComparer.OrdinalIgnoreCase),
            RouteBackends = routeBackends,
            Instances = instances?.ToHashSet(StringComparer.Ordinal),
            CorrelationIds = ids,
            KindNames = kinds,
            Count = count,
            Duration = duration,
            PayloadBytes = payload,
            Pcapng = pcapng,
        };
    }

    private static List<string>? Values(IQueryCollection query, string name)
    {
        if (!query.TryGetValue(name, out var values))
        {
            return null;
        }

        return [.. values.SelectMany(v => (v ?? "").Split(',', StringSplitOptions.TrimEntries | StringSplitOptions.RemoveEmptyEntries))];
    }

    private static string? Single(IQueryCollection query, string name, List<string> errors)
    {
        if (!query.TryGetValue(name, out StringValues values))
        {
            return null;
        }

        if (values.Count > 1)
        {
            errors.Add($"{name}: given {values.Count} times; give it once.");
        }

        return values[0] ?? "";
    }

    private static string Known(IEnumerable<string> names)
    {
        var list = names.Order(StringComparer.Ordinal).ToList();
        return list.Count == 0 ? "(none)" : string.Join(", ", list.Take(20)) + (list.Count > 20 ? ", …" : "");
    }
}
