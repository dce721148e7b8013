using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Reflection;
using System.Text.RegularExpressions;

namespace Gateway.Configuration;

/// <summary>
/// Checks a raw configuration section against the shape of its options class before it is bound: every key must be
/// a property (else "unknown key", with the nearest name suggested), every value must parse as its property's type
/// (time spans as <c>hh:mm:ss</c>, enums by name, numbers in invariant culture, <c>true</c>/<c>false</c>), lists are
/// numbered items and sections are sections. Each error names its full key and the expected format.
/// </summary>
/// <remarks>
/// Needed because <see cref="ConfigurationBinder"/> reports bad values badly: an entry of a dictionary or a list whose
/// value does not convert is dropped without a word (a route with <c>Timeout=abc</c> vanishes, a backend with
/// <c>Mode=Rawx</c> too — and the demo backend switches on in its place), elsewhere it throws on the first bad value
/// only, and it binds what it should refuse (a bare <c>5</c> as five days, <c>10:00</c> as ten hours, <c>1</c> as an
/// enum member). <see cref="Bind"/> binds only the values that passed, so the semantic validation
/// (<see cref="GatewayOptionsValidator"/>) still sees every entry and reports its own errors alongside these.
/// </remarks>
internal static partial class OptionsShape
{
    /// <summary>The time span format accepted: <c>[-][d.]hh:mm:ss[.fffffff]</c> (TimeSpan's invariant "c" format, all three parts required).</summary>
    internal const string TimeSpanFormat = "hh:mm:ss or d.hh:mm:ss, e.g. 00:00:05 or 00:00:00.250";

    /// <summary>
    /// The options classes the walk knows, with their bindable properties. Listed, not found by following property types,
    /// so that the reflection is visible to the trimmer (each <c>typeof</c> meets the
    /// <see cref="DynamicallyAccessedMembersAttribute"/> of <see cref="Properties"/>): a Native AOT build keeps exactly
    /// these properties' metadata. A class reachable from <see cref="GatewayOptions"/> and missing here makes every check
    /// throw, naming it (EveryOptionTests.EveryOptionsClass_IsKnownToTheWalk).
    /// </summary>
    private static readonly Dictionary<Type, PropertyInfo[]> Shapes = new[]
    {
        Shape(typeof(GatewayOptions)),
        Shape(typeof(ListenOptions)),
        Shape(typeof(CallerAuthorizationOptions)),
        Shape(typeof(AdminOptions)),
        Shape(typeof(RequestLimitsOptions)),
        Shape(typeof(CallerRateLimitOptions)),
        Shape(typeof(DemoBackendOptions)),
        Shape(typeof(BackendOptions)),
        Shape(typeof(BackendRetryOptions)),
        Shape(typeof(BackendCircuitBreakerOptions)),
        Shape(typeof(BackendHealthCheckOptions)),
        Shape(typeof(RouteOptions)),
        Shape(typeof(TelemetryOptions)),
    }.ToDictionary();

    /// <summary>The options classes the walk knows (<see cref="Shapes"/>).</summary>
    internal static IReadOnlyCollection<Type> KnownTypes => Shapes.Keys;

    /// <summary>Every error in <paramref name="section"/> against <paramref name="optionsType"/>, each naming its full key.</summary>
    public static IReadOnlyList<string> Check(IConfigurationSection section, Type optionsType) => Inspect(section, optionsType).Errors;

    /// <summary>
    /// Binds the values of <paramref name="section"/> that are well formed; the rest keep their defaults (and are reported by <see cref="Check"/>).
    /// The binding is the configuration binder's source-generated code for <see cref="GatewayOptions"/> (no reflection).
    /// </summary>
    public static void Bind(IConfigurationSection section, GatewayOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        var report = Inspect(section, typeof(GatewayOptions));
        if (report.Errors.Count == 0)
        {
            section.Bind(options);
            return;
        }

        var prefix = section.Path + ConfigurationPath.KeyDelimiter;
        var good = section.AsEnumerable()
            .Where(kv => kv.Key.Length > prefix.Length && kv.Key.StartsWith(prefix, StringComparison.OrdinalIgnoreCase) && !report.Excludes(kv.Key))
            .Select(kv => KeyValuePair.Create(kv.Key[prefix.Length..], report.IsBlank(kv.Key) ? "" : kv.Value));
        new ConfigurationBuilder().AddInMemoryCollection(good).Build().Bind(options);
    }

    /// <summary>
    /// The bindable properties of an options class, as the binder sees them: public, readable, with a public setter.
    /// </summary>
    internal static PropertyInfo[] Properties([DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicProperties)] Type type) =>
        [.. type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.GetMethod is { IsPublic: true } && p.SetMethod is { IsPublic: true } && p.GetIndexParameters().Length == 0)];

    private static KeyValuePair<Type, PropertyInfo[]> Shape([DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.PublicProperties)] Type type) =>
        KeyValuePair.Create(type, Properties(type));

    private static Report Inspect(IConfigurationSection section, Type optionsType)
    {
        var report = new Report();
        InspectObject(section, optionsType, report);
        return report;
    }

    private static void InspectObject(IConfigurationSection section, Type type, Report report)
    {
        if (!Shapes.TryGetValue(type, out var properties))
        {
            throw new NotSupportedException($"{section.Path}: options class {type} is not known to {nameof(OptionsShape)}; add it to {nameof(Shapes)}.");
        }

        if (!string.IsNullOrEmpty(section.Value))
        {
            report.Value(section, $"'{section.Value}' is a single value, but a section is expected (keys such as {section.Path}:{properties[0].Name}).");
        }

        foreach (var child in section.GetChildren())
        {
            var property = Array.Find(properties, p => string.Equals(p.Name, child.Key, StringComparison.OrdinalIgnoreCase));
            if (property is null)
            {
                var names = properties.Select(p => p.Name).ToList();
                var nearest = Nearest(child.Key, names);
                report.Subtree(child, nearest is null
                    ? $"unknown key (the keys here are {string.Join(", ", names)})."
                    : $"unknown key (did you mean '{nearest}'?).");
                continue;
            }

            InspectValue(child, property.PropertyType, report);
        }
    }

    private static void InspectValue(IConfigurationSection section, Type type, Report report)
    {
        var nullable = Nullable.GetUnderlyingType(type);
        if (nullable is not null)
        {
            // An empty value unsets a nullable option (the binder sets null).
            if (section.Value is "" && !section.GetChildren().Any())
            {
                return;
            }

            type = nullable;
        }

        if (type.IsArray)
        {
            InspectList(section, type.GetElementType()!, report);
        }
        else if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(List<>))
        {
            InspectList(section, type.GetGenericArguments()[0], report);
        }
        else if (type.IsGenericType && type.GetGenericTypeDefinition() == typeof(Dictionary<,>))
        {
            if (type.GetGenericArguments()[0] != typeof(string))
            {
                throw new NotSupportedException($"{section.Path}: dictionaries of options must have string keys ({type}).");
            }

            // An empty JSON object or array binds as "": no entries.
            if (!string.IsNullOrEmpty(section.Value))
            {
                report.Value(section, $"'{section.Value}' is a single value, but a section of named entries is expected ({section.Path}:<name>:…).");
            }

            foreach (var entry in section.GetChildren())
            {
                InspectValue(entry, type.GetGenericArguments()[1], report);
            }
        }
        else if (IsScalar(type))
        {
            if (section.GetChildren().Any())
            {
                report.Subtree(section, $"is a section, but a single value is expected ({Expectation(type)}).");
            }
            else if (section.Value is { } value && ScalarError(type, value) is { } error)
            {
                report.Subtree(section, error);
            }
        }
        else if (type.IsClass)
        {
            InspectObject(section, type, report);
        }
        else
        {
            throw new NotSupportedException($"{section.Path}: options of type {type} are not supported by {nameof(OptionsShape)}; add them.");
        }
    }

    private static void InspectList(IConfigurationSection section, Type itemType, Report report)
    {
        var items = section.GetChildren().ToList();
        if (!string.IsNullOrEmpty(section.Value) && items.Count == 0)
        {
            report.Subtree(section, $"'{section.Value}' is a single value, but a list is expected ({section.Path}:0, {section.Path}:1, …).");
            return;
        }

        foreach (var item in items)
        {
            if (!int.TryParse(item.Key, NumberStyles.None, CultureInfo.InvariantCulture, out _))
            {
                report.Subtree(item, $"'{item.Key}' is not a list index (items are numbered {section.Path}:0, {section.Path}:1, …).");
                continue;
            }

            if (string.IsNullOrEmpty(item.Value) && !item.GetChildren().Any())
            {
                // Bound as "" (a null item would reach the validation as null), so that the items after it keep their indexes.
                report.Blank(item, "is empty (a list item needs a value; remove it instead).");
                continue;
            }

            InspectValue(item, itemType, report);
        }
    }

    internal static bool IsScalar(Type type) =>
        type == typeof(string) || type == typeof(bool) || type == typeof(int) || type == typeof(long) || type == typeof(double) || type == typeof(TimeSpan) || type.IsEnum;

    /// <summary>What a value of <paramref name="type"/> must look like.</summary>
    internal static string Expectation(Type type)
    {
        if (type.IsEnum)
        {
            var names = Enum.GetNames(type);
            return "expected " + string.Join(", ", names[..^1]) + " or " + names[^1];
        }

        return type switch
        {
            _ when type == typeof(string) => "expected text",
            _ when type == typeof(bool) => "expected true or false",
            _ when type == typeof(int) => string.Create(CultureInfo.InvariantCulture, $"expected a whole number from {int.MinValue} to {int.MaxValue}, e.g. 10"),
            _ when type == typeof(long) => string.Create(CultureInfo.InvariantCulture, $"expected a whole number from {long.MinValue} to {long.MaxValue}, e.g. 10"),
            _ when type == typeof(double) => "expected a number with '.' as the decimal point, e.g. 0.5",
            _ when type == typeof(TimeSpan) => "expected " + TimeSpanFormat,
            _ => throw new NotSupportedException(type.ToString()),
        };
    }

    /// <summary>Why <paramref name="value"/> is not a <paramref name="type"/>, or null when it is.</summary>
    internal static string? ScalarError(Type type, string value)
    {
        if (type == typeof(string))
        {
            return null;
        }

        var (ok, what) = type switch
        {
            _ when type == typeof(bool) => (bool.TryParse(value, out _), "a boolean"),
            _ when type == typeof(int) => (int.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _), "a whole number"),
            _ when type == typeof(long) => (long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out _), "a whole number"),
            _ when type == typeof(double) => (double.TryParse(value, NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent, CultureInfo.InvariantCulture, out _), "a number"),
            _ when type == typeof(TimeSpan) => (TimeSpanShape().IsMatch(value) && TimeSpan.TryParseExact(value, "c", CultureInfo.InvariantCulture, out _), "a time span"),
            _ when type.IsEnum => (Array.Exists(Enum.GetNames(type), n => string.Equals(n, value, StringComparison.OrdinalIgnoreCase)), "a valid value"),
            _ => throw new NotSupportedException(type.ToString()),
        };
        if (ok)
        {
            return null;
        }

        var suggestion = type.IsEnum && Nearest(value, Enum.GetNames(type)) is { } nearest ? $"; did you mean '{nearest}'?" : "";
        return value.Length == 0
            ? $"is empty ({Expectation(type)})."
            : $"'{value}' is not {what} ({Expectation(type)}{suggestion}).";
    }

    /// <summary>The candidate nearest to <paramref name="key"/> by edit distance (case-insensitive), if near enough to be a typo.</summary>
    internal static string? Nearest(string key, IEnumerable<string> candidates)
    {
        string? best = null;
        var bestDistance = int.MaxValue;
        foreach (var candidate in candidates)
        {
            var distance = Distance(key.ToUpperInvariant(), candidate.ToUpperInvariant());
            if (distance < bestDistance)
            {
                (best, bestDistance) = (candidate, distance);
            }
        }

        return bestDistance <= Math.Max(2, key.Length / 3) ? best : null;
    }

    /// <summary>Levenshtein distance.</summary>
    private static int Distance(string a, string b)
    {
        var previous = new int[b.Length + 1];
        var current = new int[b.Length + 1];
        for (var j = 0; j <= b.Length; j++)
        {
            previous[j] = j;
        }

        for (var i = 1; i <= a.Length; i++)
        {
            current[0] = i;
            for (var j = 1; j <= b.Length; j++)
            {
                current[j] = Math.Min(Math.Min(current[j - 1] + 1, previous[j] + 1), previous[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1));
            }

            (previous, current) = (current, previous);
        }

        return previous[b.Length];
    }

    /// <summary>[-][d.]hh:mm:ss[.fffffff]: the "c" format with hours, minutes and seconds all present (not "5" = 5 days, not "10:00" = 10 hours).</summary>
    [GeneratedRegex(@"^-?([0-9]+\.)?[0-9]{1,2}:[0-9]{1,2}:[0-9]{1,2}(\.[0-9]{1,7})?$", RegexOptions.CultureInvariant)]
    private static partial Regex TimeSpanShape();

    private sealed class Report
    {
        private readonly List<string> _subtrees = [];
        private readonly List<string> _values = [];
        private readonly List<string> _blanks = [];

        public List<string> Errors { get; } = [];

        /// <summary>An error in the key and everything under it: none of it is bound.</summary>
        public void Subtree(IConfigurationSection section, string message)
        {
            Errors.Add($"{section.Path}: {message}");
            _subtrees.Add(section.Path);
        }

        /// <summary>An error in the key's own value only: its children are still bound.</summary>
        public void Value(IConfigurationSection section, string message)
        {
            Errors.Add($"{section.Path}: {message}");
            _values.Add(section.Path);
        }

        /// <summary>An error in a list item: bound as an empty string, so that the items after it keep their indexes.</summary>
        public void Blank(IConfigurationSection section, string message)
        {
            Errors.Add($"{section.Path}: {message}");
            _blanks.Add(section.Path);
        }

        public bool IsBlank(string path) => _blanks.Contains(path, StringComparer.OrdinalIgnoreCase);

        public bool Excludes(string path) =>
            _values.Contains(path, StringComparer.OrdinalIgnoreCase)
            || _subtrees.Exists(s => string.Equals(s, path, StringComparison.OrdinalIgnoreCase) || path.StartsWith(s + ConfigurationPath.KeyDelimiter, StringComparison.OrdinalIgnoreCase));
    }
}
