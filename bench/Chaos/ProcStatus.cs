using System.Globalization;

namespace Gateway.Bench.Chaos;

/// <summary>Memory of a process from /proc/PID/status.</summary>
internal static class ProcStatus
{
    /// <summary>A field in KiB (VmRSS = now, VmHWM = peak), or -1 when the process is gone.</summary>
    public static long Kb(int pid, string field)
    {
        try
        {
            foreach (var line in File.ReadLines($"/proc/{pid}/status"))
            {
                if (line.StartsWith(field + ":", StringComparison.Ordinal))
                {
                    return long.Parse(line[(field.Length + 1)..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
                }
            }
        }
        catch (IOException)
        {
        }

        return -1;
    }

    public static string MiB(long kb) => (kb / 1024.0).ToString("0.0", CultureInfo.InvariantCulture) + " MiB";
}
