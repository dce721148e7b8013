using System.Globalization;
using System.Text.RegularExpressions;

namespace Gateway.Tests.OpenApi;

/// <summary>One request of a <c>.http</c> file, with the status its <c># expect NNN</c> comment states.</summary>
public sealed record HttpSample(string File, string Name, string Method, string Url, IReadOnlyList<(string Name, string Value)> Headers, string? Body, int ExpectedStatus);

/// <summary>
/// A parser for the subset of the <c>.http</c> format (VS Code REST Client / JetBrains / Visual Studio) the samples
/// use: <c>@var = value</c>, <c>###</c> separators, <c>#</c> comments, request line, headers, blank line, body.
/// </summary>
public static partial class HttpSampleFile
{
    public static IReadOnlyList<HttpSample> Parse(string path, IReadOnlyDictionary<string, string>? overrides = null)
    {
        var variables = new Dictionary<string, string>(StringComparer.Ordinal);
        var samples = new List<HttpSample>();
        var blocks = Regex.Split(File.ReadAllText(path), @"^###", RegexOptions.Multiline);
        foreach (var block in blocks)
        {
            var lines = block.Split('\n').Select(l => l.TrimEnd('\r')).ToList();
            var name = lines[0].Trim();
            int? expected = null;
            string? method = null, url = null;
            var headers = new List<(string, string)>();
            var i = 1;
            for (; i < lines.Count; i++)
            {
                var line = lines[i];
                if (Variable().Match(line) is { Success: true } v)
                {
                    variables[v.Groups[1].Value] = v.Groups[2].Value.Trim();
                    continue;
                }

                if (Expect().Match(line) is { Success: true } e)
                {
                    expected = int.Parse(e.Groups[1].Value, CultureInfo.InvariantCulture);
                    continue;
                }

                if (line.StartsWith('#') || line.StartsWith("//", StringComparison.Ordinal) || (method is null && line.Length == 0))
                {
                    continue;
                }

                if (method is null)
                {
                    var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
                    (method, url) = (parts[0], parts[1]);
                    continue;
                }

                if (line.Length == 0)
                {
                    i++;
                    break; // the body follows
                }

                var colon = line.IndexOf(':', StringComparison.Ordinal);
                headers.Add((line[..colon].Trim(), line[(colon + 1)..].Trim()));
            }

            if (method is null)
            {
                continue; // the file's preamble
            }

            var body = string.Join('\n', lines.Skip(i)).TrimEnd('\n', ' ');
            if (expected is null)
            {
                throw new InvalidOperationException($"{path}: request '{name}' has no '# expect NNN' comment.");
            }

            samples.Add(new HttpSample(Path.GetFileName(path), name, method, Substitute(url!, variables, overrides), headers, body.Length == 0 ? null : body, expected.Value));
        }

        return samples;
    }

    private static string Substitute(string text, Dictionary<string, string> variables, IReadOnlyDictionary<string, string>? overrides) =>
        Placeholder().Replace(text, m =>
            overrides is not null && overrides.TryGetValue(m.Groups[1].Value, out var o) ? o
            : variables.TryGetValue(m.Groups[1].Value, out var v) ? v
            : throw new InvalidOperationException($"Undefined variable {m.Value}."));

    [GeneratedRegex(@"^@(\w+)\s*=\s*(.*)$")]
    private static partial Regex Variable();

    [GeneratedRegex(@"^#\s*expect\s+(\d{3})\b")]
    private static partial Regex Expect();

    [GeneratedRegex(@"\{\{(\w+)\}\}")]
    private static partial Regex Placeholder();
}
