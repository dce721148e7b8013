using System.Globalization;

namespace Gateway.Tests.Security;

/// <summary>The test process's own credentials, as the kernel reports them (/proc/self/status): what SO_PEERCRED shows the gateway.</summary>
internal static class ProcessIdentity
{
    private static readonly Lazy<(uint Uid, uint Gid, uint[] Groups)> Status = new(Read);

    /// <summary>The effective uid (may be 0 in CI).</summary>
    public static uint Uid => Status.Value.Uid;

    /// <summary>The effective gid.</summary>
    public static uint Gid => Status.Value.Gid;

    /// <summary>Supplementary groups.</summary>
    public static IReadOnlyList<uint> Groups => Status.Value.Groups;

    /// <summary>A uid that is not the process's.</summary>
    public static uint OtherUid => Uid == 4_242_421u ? 4_242_422u : 4_242_421u;

    /// <summary>A gid that is neither the process's primary nor a supplementary group.</summary>
    public static uint OtherGid
    {
        get
        {
            uint gid = 5_353_531;
            while (gid == Gid || Groups.Contains(gid))
            {
                gid++;
            }

            return gid;
        }
    }

    public static string Text(uint id) => id.ToString(CultureInfo.InvariantCulture);

    private static (uint, uint, uint[]) Read()
    {
        uint uid = 0, gid = 0;
        uint[] groups = [];
        foreach (var line in File.ReadLines("/proc/self/status"))
        {
            var parts = line.Split([':', '\t', ' '], StringSplitOptions.RemoveEmptyEntries);
            switch (parts.FirstOrDefault())
            {
                case "Uid":
                    uid = uint.Parse(parts[2], CultureInfo.InvariantCulture); // real, effective, saved, fs
                    break;
                case "Gid":
                    gid = uint.Parse(parts[2], CultureInfo.InvariantCulture);
                    break;
                case "Groups":
                    groups = [.. parts.Skip(1).Select(p => uint.Parse(p, CultureInfo.InvariantCulture))];
                    break;
            }
        }

        return (uid, gid, groups);
    }
}
