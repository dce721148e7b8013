using System.Globalization;

namespace Gateway.Security;

/// <summary>Resolves allow-list entries: a numeric id, or a name from /etc/passwd (users) or /etc/group (groups).</summary>
internal static class UnixIds
{
    public static bool TryResolveUser(string? text, out uint uid) => TryResolve(text, "/etc/passwd", out uid);

    public static bool TryResolveGroup(string? text, out uint gid) => TryResolve(text, "/etc/group", out gid);

    private static bool TryResolve(string? text, string database, out uint id)
    {
        id = 0;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }

        text = text.Trim();
        if (uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out id))
        {
            return true;
        }

        if (!File.Exists(database))
        {
            return false;
        }

        // name:password:id:...
        foreach (var line in File.ReadLines(database))
        {
            var fields = line.Split(':');
            if (fields.Length >= 3 && fields[0] == text && uint.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out id))
            {
                return true;
            }
        }

        return false;
    }
}
