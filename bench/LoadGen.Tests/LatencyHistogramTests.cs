namespace Gateway.Bench.LoadGen.Tests;

public class LatencyHistogramTests
{
    [Fact]
    public void EveryValue_MapsToBucketWhoseHighestEquivalentIsWithinOnePercent()
    {
        long previousIndex = -1;
        for (long v = 0; v < 50_000_000; v = (v * 21 / 20) + 1)
        {
            var index = LatencyHistogram.GetIndex(v);
            var highest = LatencyHistogram.HighestEquivalent(index);

            Assert.True(index >= previousIndex, $"index not monotonic at {v}");
            Assert.InRange(highest, v, v + Math.Max(0, v / 128));
            previousIndex = index;
        }
    }

    [Fact]
    public void BucketBoundaries_AreContiguous()
    {
        for (var index = 1; index < 5000; index++)
        {
            Assert.Equal(index, LatencyHistogram.GetIndex(LatencyHistogram.HighestEquivalent(index - 1) + 1));
        }
    }

    [Fact]
    public void Percentiles_OfUniformValues_AreWithinBucketPrecision()
    {
        var h = new LatencyHistogram();
        for (var v = 1; v <= 100_000; v++)
        {
            h.Record(v * 10L);
        }

        h.Seal();

        Assert.Equal(100_000, h.TotalCount);
        Assert.InRange(h.ValueAtPercentile(50), 500_000, 504_000);
        Assert.InRange(h.ValueAtPercentile(99), 990_000, 998_000);
        Assert.InRange(h.ValueAtPercentile(99.9), 999_000, 1_007_000);
        Assert.InRange(h.Max(), 1_000_000, 1_008_000);
        Assert.Equal(500_005, h.MeanNs, 1);
    }

    [Fact]
    public void Empty_ReportsZero()
    {
        var h = new LatencyHistogram();
        h.Seal();

        Assert.Equal(0, h.ValueAtPercentile(99));
        Assert.Equal(0, h.Max());
    }
}
