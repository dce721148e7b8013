using BenchmarkDotNet.Attributes;
using Gateway.Security;
using Gateway.Tests.Security;

namespace Gateway.Benchmarks;

/// <summary>
/// The path rule as <c>RequestTargetMiddleware</c> runs it on every request: the previous implementation (decoded path
/// built in a StringBuilder, then compared with PathBase + Path) against <see cref="RequestTargetRule.CheckRouted"/>.
/// </summary>
[MemoryDiagnoser]
public class PathRuleBenchmarks
{
    [Params("/echo/hello", "/api/v1/users/12345/orders?limit=10&offset=20", "/echo/caf%C3%A9/a%20b")]
    public string Target { get; set; } = "";

    private string _path = "";

    [GlobalSetup]
    public void Setup() => RequestTargetRule.Check(Target, out _path);

    [Benchmark(Baseline = true)]
    public int Previous()
    {
        var problem = LegacyRequestTargetRule.Check(Target, out var path);
        return (int)(problem == TargetProblem.None && !string.Equals(path, "" + _path, StringComparison.Ordinal) ? TargetProblem.NotCanonical : problem);
    }

    [Benchmark]
    public int Current() => (int)RequestTargetRule.CheckRouted(Target, "", _path);
}
