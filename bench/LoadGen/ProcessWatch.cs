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

    /// <summary>
    /// Context switches (voluntary + nonvoluntary) of every thread of the process, from /proc/PID/task/*/status;
    /// 0 for a vanished process. Threads that exited meanwhile are not counted: read it around a window of steady load.
    /// </summary>
    public static long ContextSwitches(int pid)
    {
        long total = 0;
        try
        {
            foreach (var task in Directory.EnumerateDirectories($"/proc/{pid}/task"))
            {
                try
                {
                    foreach (var line in File.ReadLines(Path.Combine(task, "status")))
                    {
                        if (line.StartsWith("voluntary_ctxt_switches:", StringComparison.Ordinal) || line.StartsWith("nonvoluntary_ctxt_switches:", StringComparison.Ordinal))
                        {
                            total += long.Parse(line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim(), CultureInfo.InvariantCulture);
                        }
                    }
                }
                catch (IOException)
                {
                }
            }
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
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
