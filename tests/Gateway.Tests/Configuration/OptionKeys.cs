using System.Reflection;
using Gateway.Configuration;

namespace Gateway.Tests.Configuration;

/// <summary>One configuration key of the options classes: <c>Gateway:Backends:&lt;name&gt;:Timeout</c>, <c>Gateway:Routes:&lt;name&gt;:Methods:&lt;i&gt;</c>.</summary>
public sealed record OptionKey(string Template, Type Type)
{
    /// <summary>The value type without <see cref="Nullable{T}"/>.</summary>
    public Type Scalar => Nullable.GetUnderlyingType(Type) ?? Type;

    public bool IsNullable => Nullable.GetUnderlyingType(Type) is not null;

    /// <summary>An item of a list (the template ends in <c>:&lt;i&gt;</c>).</summary>
    public bool IsListItem => Template.EndsWith(":" + OptionKeys.Index, StringComparison.Ordinal);

    /// <summary>The key with its placeholders filled: backend <c>b</c>, route <c>r</c>, item 0.</summary>
    public string Key => OptionKeys.Concrete(Template);

    /// <summary>The property's own name (for a list item: the list's).</summary>
    public string Name => (IsListItem ? Template[..^(OptionKeys.Index.Length + 1)] : Template).Split(':')[^1];
}

/// <summary>
/// Every option leaf of <see cref="GatewayOptions"/>, found by walking the public settable properties of the options
/// classes (written apart from the gateway's own walk, <c>OptionsShape</c>, so that the two can disagree).
/// </summary>
public static class OptionKeys
{
    public const string Entry = "<name>";
    public const string Index = "<i>";
    public const string BackendName = "b";
    public const string RouteName = "r";

    public static IReadOnlyList<OptionKey> All { get; } = [.. Walk(GatewayOptions.SectionName, typeof(GatewayOptions))];

    public static string Concrete(string template) => template
        .Replace($"Backends:{Entry}", $"Backends:{BackendName}", StringComparison.Ordinal)
        .Replace($"Routes:{Entry}", $"Routes:{RouteName}", StringComparison.Ordinal)
        .Replace(Index, "0", StringComparison.Ordinal);

    private static IEnumerable<OptionKey> Walk(string prefix, Type type)
    {
        foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.SetMethod?.IsPublic == true))
        {
            var key = $"{prefix}:{property.Name}";
            var t = property.PropertyType;
            if (t.IsGenericType && t.GetGenericTypeDefinition() == typeof(Dictionary<,>))
            {
                foreach (var leaf in Walk($"{key}:{Entry}", t.GetGenericArguments()[1]))
                {
                    yield return leaf;
                }
            }
            else if (t.IsArray || (t.IsGenericType && t.GetGenericTypeDefinition() == typeof(List<>)))
            {
                var item = t.IsArray ? t.GetElementType()! : t.GetGenericArguments()[0];
                Assert.True(item == typeof(string) || item.IsValueType, $"{key}: lists of sections are not walked yet; add them here");
                yield return new OptionKey($"{key}:{Index}", item);
            }
            else if (t == typeof(string) || t.IsValueType)
            {
                yield return new OptionKey(key, t);
            }
            else
            {
                foreach (var leaf in Walk(key, t))
                {
                    yield return leaf;
                }
            }
        }
    }
}
