namespace Gateway.Bench.LoadGen.Tests;

/// <summary>The scale target line of the report: all held requests correct and RSS under 300 decimal megabytes.</summary>
public class ReportTests
{
    [Theory]
    [InlineData(10_000, 10_000, 292_000, true)] // 292,000 KiB = 299.0 MB
    [InlineData(10_000, 10_000, 293_000, false)] // 293,000 KiB = 300.0 MB: not under
    [InlineData(10_000, 9_999, 200_000, false)] // one wrong reply
    [InlineData(0, 0, 100_000, false)] // nothing held
    public void ScaleVerdict_IsMetOnlyWhenEveryRequestIsCorrectAndRssIsUnder300DecimalMegabytes(long requests, long correct, double rssKb, bool met)
    {
        var line = Report.ScaleVerdict(requests, correct, rssKb);

        Assert.EndsWith(met ? "— met" : "— NOT met", line);
        Assert.Contains($"{rssKb * 1024 / 1_000_000:F1} MB", line);
    }

    [Fact]
    public void PerProcess_TabulatesEachNamedProcessByMedianOverRounds()
    {
        var path = Path.GetTempFileName();
        try
        {
            static string Record(int round, double gatewayCpu, double echoCs) =>
                $"{{\"label\":\"gateway\",\"scenario\":\"GET c32\",\"round\":{round},\"processes\":[{{\"name\":\"gateway\",\"cpu_us_per_req\":{gatewayCpu},\"cs_per_req\":2.5}},{{\"name\":\"echo\",\"cpu_us_per_req\":20,\"cs_per_req\":{echoCs}}}]}}";
            File.WriteAllLines(path, [Record(1, 50, 0.5), Record(2, 70, 0.9), Record(3, 60, 0.7), "{\"label\":\"direct\",\"scenario\":\"GET c32\",\"round\":1}"]);

            var table = Report.PerProcess(path);

            Assert.Contains("| GET c32 | gateway | gateway | 60.0 | 2.50 |", table, StringComparison.Ordinal);
            Assert.Contains("| GET c32 | gateway | echo | 20.0 | 0.70 |", table, StringComparison.Ordinal);
            Assert.DoesNotContain("| direct |", table, StringComparison.Ordinal); // a record without named processes adds no row
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void PerProcess_IsEmptyWhenNoRecordNamesItsProcesses()
    {
        var path = Path.GetTempFileName();
        try
        {
            File.WriteAllLines(path, ["{\"label\":\"gateway\",\"scenario\":\"GET c1\",\"round\":1,\"sut_cpu_pct\":100}"]);

            Assert.Equal("", Report.PerProcess(path));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void WatchPid_TakesAnOptionalNamePerProcess()
    {
        var options = Options.Parse(["--socket", "/x", "--watch-pid", "11:gateway, 12:raw echo,13"]);

        Assert.Equal([11, 12, 13], options.WatchPids);
        Assert.Equal(["gateway", "raw echo", "13"], options.WatchNames);
    }

    [Fact]
    public void ContextSwitches_OfThisProcess_AreCountedOverItsThreads()
    {
        // A running .NET process has blocked threads (the finalizer, the thread pool's gate): each has switched out.
        var switches = ProcessWatch.ContextSwitches(Environment.ProcessId);
        var mainThreadOnly = long.Parse(
            File.ReadLines($"/proc/{Environment.ProcessId}/task/{Environment.ProcessId}/status").First(l => l.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal)).Split(':')[1].Trim(),
            System.Globalization.CultureInfo.InvariantCulture);

        Assert.True(switches > mainThreadOnly, $"all threads ({switches}) count more than the main thread's voluntary switches ({mainThreadOnly})");
        Assert.Equal(0, ProcessWatch.ContextSwitches(int.MaxValue)); // no such process
    }
}
