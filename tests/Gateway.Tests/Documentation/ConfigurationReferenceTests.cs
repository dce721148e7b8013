using System.Text.RegularExpressions;
using Gateway.Testing;
using Gateway.Tests.Configuration;

namespace Gateway.Tests.Documentation;

/// <summary>
/// docs/configuration.md's Keys table and the options classes name the same keys: every option (found by reflection,
/// <see cref="OptionKeys"/>) has a row, and every row is an option. Entries of dictionaries are written
/// <c>&lt;name&gt;</c>, list items <c>&lt;i&gt;</c>; a row may name siblings after the first key
/// (<c>`Gateway:Backends:&lt;name&gt;:Retry:BaseDelay`, `MaxDelay`</c>): each replaces as many trailing parts of the first.
/// </summary>
public partial class ConfigurationReferenceTests
{
    private static readonly string Page = RepoPaths.Combine("docs", "configuration.md");

    /// <summary>The keys of the table under the "## Keys" heading, siblings expanded.</summary>
    internal static List<string> DocumentedKeys()
    {
        var lines = File.ReadAllLines(Page);
        var start = Array.IndexOf(lines, "## Keys");
        Assert.True(start >= 0, "docs/configuration.md has no '## Keys' heading");
        var keys = new List<string>();
        foreach (var line in lines.Skip(start + 1).SkipWhile(l => !l.StartsWith('|')).TakeWhile(l => l.StartsWith('|')))
        {
            var cell = line.Split('|')[1];
            var names = Code().Matches(cell).Select(m => m.Groups[1].Value).ToList();
            if (names.Count == 0 || !names[0].StartsWith("Gateway:", StringComparison.Ordinal))
            {
                continue; // the header and its rule
            }

            var first = names[0].Split(':');
            keys.Add(names[0]);
            foreach (var sibling in names.Skip(1))
            {
                var parts = sibling.Split(':');
                keys.Add(string.Join(':', first[..^parts.Length].Concat(parts)));
            }
        }

        return keys;
    }

    [Fact]
    public void KeysTable_IsFound_AndExpandsSiblings()
    {
        var keys = DocumentedKeys();

        Assert.Contains("Gateway:Backends:<name>:Retry:MaxDelay", keys);
        Assert.Contains("Gateway:Routes:<name>:AllowedGids:<i>", keys);
        Assert.True(keys.Count >= 40, $"only {keys.Count} keys read from the table");
    }

    [Fact]
    public void EveryOption_HasARowInTheKeysTable()
    {
        var documented = DocumentedKeys().ToHashSet(StringComparer.Ordinal);

        var missing = OptionKeys.All.Select(o => o.Template).Where(k => !documented.Contains(k)).ToList();

        Assert.True(missing.Count == 0, "docs/configuration.md's Keys table lacks: " + string.Join(", ", missing));
    }

    [Fact]
    public void EveryRowOfTheKeysTable_IsAnOption()
    {
        var options = OptionKeys.All.Select(o => o.Template).ToHashSet(StringComparer.Ordinal);

        var unknown = DocumentedKeys().Where(k => !options.Contains(k)).ToList();

        Assert.True(unknown.Count == 0, "docs/configuration.md's Keys table names keys the options classes lack: " + string.Join(", ", unknown));
    }

    [Fact]
    public void NoKey_IsDocumentedTwice()
    {
        var twice = DocumentedKeys().GroupBy(k => k, StringComparer.Ordinal).Where(g => g.Count() > 1).Select(g => g.Key).ToList();

        Assert.Empty(twice);
    }

    [GeneratedRegex("`([^`]+)`")]
    private static partial Regex Code();
}
