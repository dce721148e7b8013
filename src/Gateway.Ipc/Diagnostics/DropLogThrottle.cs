using Microsoft.Extensions.Logging;

namespace Gateway.Ipc.Diagnostics;

/// <summary>
/// Bounds the warnings a flood of hostile datagrams can cause: any local process can send to a socket, and one
/// warning per datagram would let it slow a receive loop to the speed of the log sink. The first drop of a window
/// (<see cref="Interval"/>) is logged at Warning, the others of that window at Debug; the first warning after them
/// says how many were demoted. Every drop is still counted in the component's statistics and metrics.
/// </summary>
internal sealed class DropLogThrottle
{
    /// <summary>At most one warning per socket in this interval.</summary>
    public static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    private readonly TimeProvider _timeProvider;
    private readonly long _intervalTicks;
    private long _windowEnd = long.MinValue;
    private long _demoted;

    public DropLogThrottle(TimeProvider timeProvider)
    {
        _timeProvider = timeProvider;
        _intervalTicks = (long)(Interval.TotalSeconds * timeProvider.TimestampFrequency);
    }

    /// <summary>The level to log this drop at.</summary>
    /// <param name="demotedBefore">When Warning: how many drops were logged at Debug since the previous warning.</param>
    public LogLevel Next(out long demotedBefore)
    {
        var now = _timeProvider.GetTimestamp();
        var end = Volatile.Read(ref _windowEnd);
        if (now >= end && Interlocked.CompareExchange(ref _windowEnd, now + _intervalTicks, end) == end)
        {
            demotedBefore = Interlocked.Exchange(ref _demoted, 0);
            return LogLevel.Warning;
        }

        Interlocked.Increment(ref _demoted);
        demotedBefore = 0;
        return LogLevel.Debug;
    }
}
