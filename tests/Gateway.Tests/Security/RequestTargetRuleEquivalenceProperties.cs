using System.Buffers;
using System.Globalization;
using System.Text;
using FsCheck;
using FsCheck.Fluent;
using Gateway.Security;

namespace Gateway.Tests.Security;

/// <summary>
/// The allocation-free path rule decides exactly like the previous implementation (<see cref="LegacyRequestTargetRule"/>,
/// the oracle) on generated targets: the same problem, the same decoded path, and a routed path that matches exactly
/// when it is the oracle's decoded path (however it is split between path base and path).
/// </summary>
public sealed class RequestTargetRuleEquivalenceProperties
{
    /// <summary>Cases per run; <c>GATEWAY_PATH_SEED</c> replays a seed that a failure printed.</summary>
    private const int Cases = 20_000;

    private static readonly string[] Pieces =
    [
        "echo", "ECHO", "a", "x", "hello", "sec%72et", "%65cho", "a%2eb", "caf%c3%a9", "%e6%97%a5", "a%20b", "%7e", "~",
        "", ".", "..", "%2e", "%2E%2e", ".%2e", "%2f", "%5c", "\\", "%00", "%01", "%0a", "%7f", "%c0%af", "%e0%80%ae",
        "%f0%80%80%af", "%ff", "%c3", "%e2%82", "%ed%a0%80", ";x", "%3b", "%3f", "%23", "%25", "%252f", "%20", " ", "a ",
        "%c2%a0", "%c2%85", "%e2%80%8b", "%ef%bb%bf", "%c5%bf", "%e2%84%aa", "%c4%b1", "%ef%bc%8f", "%f0%9f%98%80", "%2",
        "%zz", "%a", "#", "é", "日本", "\u0085", "\t", "%C3%A9", "%E2%82%AC", "..a", "a..",
    ];

    private static readonly string[] Queries = ["", "?a=1", "?x=/echo/secret", "?%2f..%2f", "?;a", "?", "?#"];

    [Fact]
    public void CurrentRule_DecidesLikeTheOracle()
    {
        var seed = ulong.TryParse(Environment.GetEnvironmentVariable("GATEWAY_PATH_SEED"), NumberStyles.None, CultureInfo.InvariantCulture, out var s)
            ? s
            : 20261203UL;
        var failures = new List<string>();
        var accepted = 0;
        var longOnes = 0;
        foreach (var (target, split) in FsCheck.FSharp.Gen.Sample(new Rnd(seed), 30, Cases, TargetGen()))
        {
            var expected = LegacyRequestTargetRule.Check(target, out var expectedPath);
            var actual = RequestTargetRule.Check(target, out var actualPath);
            if (actual != expected || actualPath != expectedPath)
            {
                failures.Add($"{target}: Check gives {actual} '{actualPath}', the oracle {expected} '{expectedPath}'");
                continue;
            }

            longOnes += target.Length > 256 ? 1 : 0;
            if (expected != TargetProblem.None)
            {
                // A problem of the target itself wins over any routed path.
                var routed = RequestTargetRule.CheckRouted(target, "", "/anything");
                if (routed != expected)
                {
                    failures.Add($"{target}: CheckRouted gives {routed}, the oracle {expected}");
                }

                continue;
            }

            accepted++;
            var at = Math.Min(split, expectedPath.Length);
            Expect(target, expectedPath[..at], expectedPath[at..], TargetProblem.None, failures);
            Expect(target, null, expectedPath, TargetProblem.None, failures);
            Expect(target, "", expectedPath + "x", TargetProblem.NotCanonical, failures);
            Expect(target, "", expectedPath[..^1], TargetProblem.NotCanonical, failures);
            Expect(target, "/x", expectedPath, TargetProblem.NotCanonical, failures);
            var flipped = FlipCase(expectedPath);
            Expect(target, "", flipped, string.Equals(flipped, expectedPath, StringComparison.Ordinal) ? TargetProblem.None : TargetProblem.NotCanonical, failures);
        }

        Assert.True(failures.Count == 0, $"seed {seed} (GATEWAY_PATH_SEED): {failures.Count} disagreements:\n" + string.Join('\n', failures.Take(30)));
        Assert.True(accepted > Cases / 10 && accepted < Cases * 9 / 10, $"accepted {accepted} of {Cases}");
        Assert.True(longOnes > 10, $"only {longOnes} targets longer than the stack buffers");
    }

    [Theory]
    [InlineData("/echo/hello", "", "/echo/hello")]
    [InlineData("/echo/hello?x=1&y=%2f", "", "/echo/hello")]
    [InlineData("/echo/a%20b/c%2e", "/echo", "/a b/c.")]
    public void OrdinaryAsciiTarget_IsCheckedWithoutAllocating(string target, string pathBase, string path)
    {
        Assert.Equal(TargetProblem.None, RequestTargetRule.CheckRouted(target, pathBase, path)); // warm: statics, tiering stubs
        var before = GC.GetAllocatedBytesForCurrentThread();
        for (var i = 0; i < 100; i++)
        {
            RequestTargetRule.CheckRouted(target, pathBase, path);
        }

        Assert.Equal(0, GC.GetAllocatedBytesForCurrentThread() - before);
    }

    /// <summary>The path with its first letter's case changed (the router compares paths case-insensitively; the rule does not).</summary>
    private static string FlipCase(string path)
    {
        var i = path.AsSpan().IndexOfAny(SearchValues.Create("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"));
        return i < 0 ? path : string.Concat(path.AsSpan(0, i), [char.IsAsciiLetterLower(path[i]) ? char.ToUpperInvariant(path[i]) : char.ToLowerInvariant(path[i])], path.AsSpan(i + 1));
    }

    private static void Expect(string target, string? pathBase, string path, TargetProblem expected, List<string> failures)
    {
        var actual = RequestTargetRule.CheckRouted(target, pathBase, path);
        if (actual != expected)
        {
            failures.Add($"{target} routed as '{pathBase}' + '{path}': {actual}, expected {expected}");
        }
    }

    private static Gen<(string Target, int Split)> TargetGen() =>
        from count in Gen.Choose(0, 6)
        from segments in Gen.ArrayOf(Gen.Frequency((3, Gen.Elements(Pieces)), (1, PieceOf(2)), (1, PieceOf(4))), count)
        from repeat in Gen.Frequency((12, Gen.Constant(1)), (1, Gen.Choose(20, 60)))
        from query in Gen.Elements(Queries)
        from form in Gen.Elements("", "", "", "", "http://localhost", "HTTPS://h:1", "x", "http://h?")
        from trailing in Gen.Elements("", "", "/")
        from split in Gen.Choose(0, 40)
        select (form + "/" + string.Join('/', Enumerable.Repeat(segments, repeat).SelectMany(x => x)) + trailing + query, split);

    /// <summary>A segment glued from a few random pieces (so that encodings meet across piece boundaries).</summary>
    private static Gen<string> PieceOf(int n) =>
        Gen.ArrayOf(Gen.Elements(Pieces), n).Select(parts => new StringBuilder().AppendJoin(string.Empty, parts).ToString());
}
