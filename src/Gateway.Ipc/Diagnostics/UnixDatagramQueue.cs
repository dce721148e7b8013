using System.Globalization;

namespace Gateway.Ipc.Diagnostics;

/// <summary>
/// The kernel's length limit of Unix datagram receive queues, <c>net.unix.max_dgram_qlen</c>: a socket created while it
/// is N queues at most N + 1 datagrams, and a sender to a full queue waits (or gets <c>EAGAIN</c>). Linux's default is 10,
/// which stalls a busy gateway and backend (both queues fill at a few dozen requests in flight); raising it to
/// <see cref="RecommendedMinimum"/> or more before the processes start measured 22–26 % more throughput at 32 requests in
/// flight and 41–47 % at 256 (bench/README.md). The setting belongs to the network namespace and is read when a socket is created.
/// </summary>
public static class UnixDatagramQueue
{
    /// <summary>Where the setting is read: <c>/proc/sys/net/unix/max_dgram_qlen</c> (of the caller's network namespace).</summary>
    public const string SettingPath = "/proc/sys/net/unix/max_dgram_qlen";

    /// <summary>Below this value the startup logs of the gateway and of <see cref="Backend.DatagramBackendServer"/> advise raising it.</summary>
    public const int RecommendedMinimum = 64;

    /// <summary>Reads the current value of <c>net.unix.max_dgram_qlen</c>.</summary>
    /// <param name="path">The file to read (default <see cref="SettingPath"/>; tests pass another).</param>
    /// <returns>The value, or <see langword="null"/> when the file is missing, unreadable or not a number (not Linux, a sandbox without <c>/proc</c>).</returns>
    public static int? ReadMaxLength(string path = SettingPath)
    {
        ArgumentNullException.ThrowIfNull(path);
        try
        {
            var text = File.ReadAllText(path).Trim();
            return int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var value) ? value : null;
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException or NotSupportedException)
        {
            return null;
        }
    }

    /// <summary>Whether a value read by <see cref="ReadMaxLength"/> is below <see cref="RecommendedMinimum"/> (an unknown value is not).</summary>
    /// <param name="maxLength">The value, or <see langword="null"/> if unknown.</param>
    /// <returns><see langword="true"/> if it is known and below the recommended minimum.</returns>
    public static bool IsBelowRecommended(int? maxLength) => maxLength is { } value && value < RecommendedMinimum;
}
