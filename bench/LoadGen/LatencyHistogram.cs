using System.Numerics;

namespace Gateway.Bench.LoadGen;

/// <summary>
/// A fixed-size log-linear histogram of nanosecond values (HdrHistogram-like): values below 256 ns are
/// exact, above that each power of two is split into 128 linear sub-buckets (relative error &lt; 0.8%).
/// Recording is one array increment; nothing is allocated after construction.
/// </summary>
internal sealed class LatencyHistogram
{
    private const int SubBits = 7;
    private const int SubCount = 1 << SubBits;
    private const int MaxExponent = 40; // 2^47 ns ≈ 39 hours: more than enough

    private readonly long[] _counts = new long[(MaxExponent + 2) * SubCount];
    private long _sumNs;

    public long TotalCount { get; private set; }

    public void Record(long valueNs)
    {
        if (valueNs < 0)
        {
            valueNs = 0;
        }

        Interlocked.Increment(ref _counts[GetIndex(valueNs)]);
        Interlocked.Add(ref _sumNs, valueNs);
    }

    /// <summary>Sums the counts (call once recording has stopped).</summary>
    public void Seal()
    {
        long total = 0;
        foreach (var c in _counts)
        {
            total += c;
        }

        TotalCount = total;
    }

    public double MeanNs => TotalCount == 0 ? 0 : (double)Interlocked.Read(ref _sumNs) / TotalCount;

    /// <summary>The highest value equivalent to the bucket holding the given percentile (like HdrHistogram).</summary>
    public long ValueAtPercentile(double percentile)
    {
        if (TotalCount == 0)
        {
            return 0;
        }

        var rank = (long)Math.Ceiling(percentile / 100.0 * TotalCount);
        rank = Math.Clamp(rank, 1, TotalCount);
        long seen = 0;
        for (var i = 0; i < _counts.Length; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                return HighestEquivalent(i);
            }
        }

        return HighestEquivalent(_counts.Length - 1);
    }

    public long Max()
    {
        for (var i = _counts.Length - 1; i >= 0; i--)
        {
            if (_counts[i] != 0)
            {
                return HighestEquivalent(i);
            }
        }

        return 0;
    }

    internal static int GetIndex(long value)
    {
        if (value < 2 * SubCount)
        {
            return (int)value;
        }

        var exponent = 63 - BitOperations.LeadingZeroCount((ulong)value) - SubBits;
        if (exponent > MaxExponent)
        {
            return ((MaxExponent + 1) * SubCount) - 1 + SubCount;
        }

        return (exponent * SubCount) + (int)(value >> exponent);
    }

    internal static long HighestEquivalent(int index)
    {
        if (index < 2 * SubCount)
        {
            return index;
        }

        var exponent = (index / SubCount) - 1;
        long mantissa = index - (exponent * SubCount);
        return ((mantissa + 1) << exponent) - 1;
    }
}
