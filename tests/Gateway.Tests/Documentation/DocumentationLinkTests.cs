using System.Text.RegularExpressions;
using Gateway.Testing;

namespace Gateway.Tests.Documentation;

/// <summary>
/// The README is a map of docs/ pages: every relative link in it and in the pages must lead to a file that exists
/// and, when it names a section (#anchor), to a heading of that file (GitHub's anchor rules), so a page or section
/// that is moved or renamed cannot leave a dead link behind.
/// </summary>
public partial class DocumentationLinkTests
{
    public static TheoryData<string> Pages()
    {
        var pages = new TheoryData<string> { "README.md", "bench/README.md", "samples/raw/README.md" };
        foreach (var page in Directory.EnumerateFiles(RepoPaths.Combine("docs"), "*.md").Order(StringComparer.Ordinal))
        {
            pages.Add(Path.GetRelativePath(RepoPaths.Root, page));
        }

        return pages;
    }

    [Theory]
    [MemberData(nameof(Pages))]
    public void EveryRelativeLink_LeadsToAFileAndHeadingThatExist(string page)
    {
        var path = RepoPaths.Combine(page);
        var text = WithoutCodeBlocks(File.ReadAllText(path));
        var broken = new List<string>();
        foreach (Match link in MarkdownLink().Matches(text))
        {
            var target = link.Groups["target"].Value;
            if (target.Contains("://", StringComparison.Ordinal) || target.StartsWith("mailto:", StringComparison.Ordinal))
            {
                continue;
            }

            var hash = target.IndexOf('#', StringComparison.Ordinal);
            var file = hash < 0 ? target : target[..hash];
            var anchor = hash < 0 ? null : target[(hash + 1)..];
            var resolved = file.Length == 0 ? path : Path.GetFullPath(Path.Combine(Path.GetDirectoryName(path)!, file));
            if (!File.Exists(resolved) && !Directory.Exists(resolved))
            {
                broken.Add($"{target}: {Path.GetRelativePath(RepoPaths.Root, resolved)} does not exist");
            }
            else if (anchor is not null && resolved.EndsWith(".md", StringComparison.Ordinal) && !Anchors(resolved).Contains(anchor))
            {
                broken.Add($"{target}: no heading with anchor #{anchor} in {Path.GetRelativePath(RepoPaths.Root, resolved)}");
            }
        }

        Assert.True(broken.Count == 0, $"{page} has broken links:\n" + string.Join('\n', broken));
    }

    /// <summary>GitHub's heading anchors: lower case, punctuation other than '-' and '_' removed, spaces to '-'.</summary>
    internal static HashSet<string> Anchors(string markdownFile)
    {
        var anchors = new HashSet<string>(StringComparer.Ordinal);
        foreach (Match heading in Heading().Matches(WithoutCodeBlocks(File.ReadAllText(markdownFile))))
        {
            var text = heading.Groups["text"].Value.Trim().ToLowerInvariant();
            var slug = new string([.. text.Where(c => char.IsLetterOrDigit(c) || c is '-' or '_' or ' ')]).Replace(' ', '-');
            anchors.Add(slug);
        }

        return anchors;
    }

    private static string WithoutCodeBlocks(string markdown) => CodeBlock().Replace(markdown, string.Empty);

    [GeneratedRegex(@"\]\((?<target>[^)\s]+)\)")]
    private static partial Regex MarkdownLink();

    [GeneratedRegex(@"^#{1,6} (?<text>.+)$", RegexOptions.Multiline)]
    private static partial Regex Heading();

    [GeneratedRegex(@"^```.*?^```", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex CodeBlock();
}
