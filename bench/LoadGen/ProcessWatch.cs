using System.Globalization;

namespace Gateway.Bench.LoadGen;

/// <summary>Reads CPU time and memory of other processes from /proc (Linux).</summary>
internal static class ProcessWatch
{
    private const double ClockTicksPerSecond = 100; // USER_HZ on Linux

    /// <summary>utime + stime of all the processes, in seconds (a vanished process counts 0).</summary>
    public static double CpuSeconds(IReadOnlyList<int> pids)
    {
        double total = 0;
        foreach (var pid in pids)
        {
            try
            {
                var stat = File.ReadAllText($"/proc/{pid}/stat");
                var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
                // After "pid (comm) ": field 3 is index 0, so utime (14) is 11 and stime (15) is 12.
                total += (long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture)) / ClockTicksPerSecond;
            }
            catch (IOException)
            {
            }
        }

        return total;
    }

    /// <summary>Sum of a /proc/PID/status field in KiB (VmRSS = now, VmHWM = peak).</summary>
    public static long StatusKb(IReadOnlyList<int> pids, string field)
    {
        long total = 0;
        foreach (var pid in pids)
        {
            try
            {
                foreach (var line in File.ReadLines($"/proc/{pid}/status"))
                {
                    if (line.StartsWith(field, StringComparison.Ordinal) && line.Length > field.Length && line[field.Length] == ':')
                    {
                        var value = line[(field.Length + 1)..].Trim();
                        total += long.Parse(value.Split(' ')[0], CultureInfo.InvariantCulture);
                        break;
                    }
                }
            }
            catch (IOException)
            {
            }
        }

        return total;
    }
}
