using Gateway.Security;

namespace Gateway.Tests.Security;

/// <summary>The path rule on its own: each refusal reason, and targets that must pass unchanged.</summary>
public class RequestTargetRuleTests
{
    [Theory]
    [InlineData("/", "/")]
    [InlineData("/echo/a", "/echo/a")]
    [InlineData("/echo/a/", "/echo/a/")]
    [InlineData("/echo/a?x=/../%2f&y=;", "/echo/a")]
    [InlineData("/echo/%61b%63", "/echo/abc")]
    [InlineData("/echo/file%2etxt", "/echo/file.txt")]
    [InlineData("/echo/a%20b", "/echo/a b")]
    [InlineData("/echo/caf%C3%A9", "/echo/café")]
    [InlineData("/echo/%E6%97%A5%E6%9C%AC", "/echo/日本")]
    [InlineData("/echo/..a/a..", "/echo/..a/a..")]
    [InlineData("http://localhost/echo/a?q", "/echo/a")]
    [InlineData("http://localhost?q", "/")]
    public void Accepts_AndDecodesToThePath(string target, string path)
    {
        Assert.Equal(TargetProblem.None, RequestTargetRule.Check(target, out var decoded));
        Assert.Equal(path, decoded);
    }

    [Theory]
    [InlineData("/echo/../admin", nameof(TargetProblem.DotSegment))]
    [InlineData("/echo/./a", nameof(TargetProblem.DotSegment))]
    [InlineData("/echo/%2e%2E/admin", nameof(TargetProblem.DotSegment))]
    [InlineData("/echo/.%2e", nameof(TargetProblem.DotSegment))]
    [InlineData("/echo/..", nameof(TargetProblem.DotSegment))]
    [InlineData("/echo//secret/a", nameof(TargetProblem.EmptySegment))]
    [InlineData("//echo", nameof(TargetProblem.EmptySegment))]
    [InlineData("/echo/secret%2fa", nameof(TargetProblem.EncodedSlash))]
    [InlineData("/echo/secret%2Fa", nameof(TargetProblem.EncodedSlash))]
    [InlineData("/echo/secret%5ca", nameof(TargetProblem.Backslash))]
    [InlineData("/echo\\secret", nameof(TargetProblem.Backslash))]
    [InlineData("/echo/secret%3fa", nameof(TargetProblem.EncodedDelimiter))]
    [InlineData("/echo/secret%23a", nameof(TargetProblem.EncodedDelimiter))]
    [InlineData("/echo/secret%252fa", nameof(TargetProblem.EncodedDelimiter))]
    [InlineData("/echo/a#frag", nameof(TargetProblem.EncodedDelimiter))]
    [InlineData("/echo/secret;v=1/a", nameof(TargetProblem.PathParameter))]
    [InlineData("/echo/secret%3b/a", nameof(TargetProblem.PathParameter))]
    [InlineData("/echo/a%00", nameof(TargetProblem.Nul))]
    [InlineData("/echo/a%0a", nameof(TargetProblem.ControlCharacter))]
    [InlineData("/echo/a%7F", nameof(TargetProblem.ControlCharacter))]
    [InlineData("/echo/a%c2%85", nameof(TargetProblem.ControlCharacter))]
    [InlineData("/echo/a%c2%9f", nameof(TargetProblem.ControlCharacter))]
    [InlineData("/echo/a%2", nameof(TargetProblem.BadPercentEncoding))]
    [InlineData("/echo/a%zz", nameof(TargetProblem.BadPercentEncoding))]
    [InlineData("/echo/%c0%af", nameof(TargetProblem.OverlongUtf8))]
    [InlineData("/echo/%c0%ae%c0%ae", nameof(TargetProblem.OverlongUtf8))]
    [InlineData("/echo/%e0%80%ae", nameof(TargetProblem.OverlongUtf8))]
    [InlineData("/echo/%f0%80%80%af", nameof(TargetProblem.OverlongUtf8))]
    [InlineData("/echo/%ff", nameof(TargetProblem.InvalidUtf8))]
    [InlineData("/echo/%e2%82", nameof(TargetProblem.InvalidUtf8))]
    [InlineData("/echo/%ed%a0%80", nameof(TargetProblem.InvalidUtf8))]
    [InlineData("/echo/%c5%bfecret", nameof(TargetProblem.AmbiguousCharacter))] // ſ upper-cases to S
    [InlineData("/echo/%e2%84%aa", nameof(TargetProblem.AmbiguousCharacter))] // Kelvin sign lower-cases to k
    [InlineData("/echo/s%c4%b1", nameof(TargetProblem.AmbiguousCharacter))] // dotless ı upper-cases to I
    [InlineData("/echo/%c4%b0", nameof(TargetProblem.AmbiguousCharacter))] // İ lower-cases to i
    [InlineData("/echo/%ef%bd%93ecret", nameof(TargetProblem.AmbiguousCharacter))] // fullwidth s: NFKC gives s
    [InlineData("/echo/a%ef%bc%8fb", nameof(TargetProblem.AmbiguousCharacter))] // fullwidth solidus: NFKC gives /
    [InlineData("/echo/secret%20/a", nameof(TargetProblem.SegmentWhitespace))]
    [InlineData("/echo/%20secret", nameof(TargetProblem.SegmentWhitespace))]
    [InlineData("/echo/secret%c2%a0", nameof(TargetProblem.SegmentWhitespace))]
    [InlineData("/echo/secret%e2%80%8b", nameof(TargetProblem.SegmentWhitespace))]
    [InlineData("*", nameof(TargetProblem.NotOriginForm))]
    [InlineData("echo", nameof(TargetProblem.NotOriginForm))]
    public void Refuses_WithTheReason(string target, string problem)
    {
        var expected = Enum.Parse<TargetProblem>(problem);
        Assert.Equal(expected, RequestTargetRule.Check(target, out _));
        Assert.NotEqual("none", RequestTargetRule.Reason(expected));
        Assert.NotEmpty(RequestTargetRule.Describe(expected));
    }

    [Fact]
    public void EveryProblem_HasADistinctReasonAndASentence()
    {
        var problems = Enum.GetValues<TargetProblem>().Where(p => p != TargetProblem.None).ToList();
        Assert.Equal(problems.Count, problems.Select(RequestTargetRule.Reason).Distinct().Count());
        Assert.All(problems, p => Assert.NotEqual("none", RequestTargetRule.Reason(p)));
        Assert.All(problems, p => Assert.NotEmpty(RequestTargetRule.Describe(p)));
    }

    /// <summary>
    /// The rule's fixed table against an independent oracle, the machine's Python: every non-ASCII code point whose
    /// case mappings or NFKC form contain ASCII is refused; and the letters that don't are accepted.
    /// </summary>
    [Fact]
    public async Task FoldingTable_CoversEveryCodePointThatPythonFoldsToAscii()
    {
        const string script = """
            import unicodedata
            def folds(c):
                for t in (unicodedata.normalize('NFKC', c), c.upper(), c.lower(), c.casefold(), unicodedata.normalize('NFKC', c.casefold())):
                    if any(ord(x) < 128 for x in t):
                        return True
                return False
            print(unicodedata.unidata_version)
            print(' '.join('%X' % cp for cp in range(0x80, 0x110000) if not 0xD800 <= cp < 0xE000 and folds(chr(cp))))
            """;
        var start = new System.Diagnostics.ProcessStartInfo("python3", ["-c", script]) { RedirectStandardOutput = true };
        using var python = System.Diagnostics.Process.Start(start)!;
        var output = (await python.StandardOutput.ReadToEndAsync()).Split('\n');
        await python.WaitForExitAsync();
        Assert.Equal(0, python.ExitCode);

        var folding = output[1].Split(' ', StringSplitOptions.RemoveEmptyEntries)
            .Select(hex => int.Parse(hex, System.Globalization.NumberStyles.HexNumber, System.Globalization.CultureInfo.InvariantCulture))
            .ToHashSet();
        Assert.True(folding.Count > 1000, $"Unicode {output[0]}: only {folding.Count} folding code points");
        var missing = folding.Where(cp => !RequestTargetRule.FoldsToAscii(new System.Text.Rune(cp))).Take(20).ToList();
        Assert.True(missing.Count == 0, $"Unicode {output[0]}: not refused: " + string.Join(' ', missing.Select(cp => cp.ToString("X", System.Globalization.CultureInfo.InvariantCulture))));

        // The table holds nothing else: every entry folds by this Python (new Unicode versions only add).
        var extra = Enumerable.Range(0x80, 0x110000 - 0x80)
            .Where(cp => cp is < 0xD800 or >= 0xE000)
            .Where(cp => RequestTargetRule.FoldsToAscii(new System.Text.Rune(cp)) && !folding.Contains(cp))
            .Take(20).ToList();
        Assert.True(extra.Count == 0, "refused but not folding: " + string.Join(' ', extra.Select(cp => cp.ToString("X", System.Globalization.CultureInfo.InvariantCulture))));

        // And through the whole rule: one folding character refuses a segment, a non-folding one does not.
        foreach (var cp in folding.Where(cp => !char.IsWhiteSpace(char.ConvertFromUtf32(cp), 0) && !System.Text.Rune.IsControl(new System.Text.Rune(cp))).Take(200))
        {
            var target = "/echo/a" + Uri.EscapeDataString(char.ConvertFromUtf32(cp)) + "b";
            Assert.Equal(TargetProblem.AmbiguousCharacter, RequestTargetRule.Check(target, out _));
        }
    }
}
