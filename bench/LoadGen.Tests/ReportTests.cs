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
}
