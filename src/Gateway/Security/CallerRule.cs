using System.Collections.Frozen;

namespace Gateway.Security;

/// <summary>
/// One allow-list rule (the global <c>Gateway:Authorization</c> lists, or a route's): a caller passes if its uid
/// is in <see cref="Uids"/> or its primary or a supplementary gid is in <see cref="Gids"/>. A caller of unknown
/// identity (no peer credentials) never passes.
/// </summary>
internal sealed class CallerRule
{
    private CallerRule(string name, FrozenSet<uint> uids, FrozenSet<uint> gids)
    {
        Name = name;
        Uids = uids;
        Gids = gids;
    }

    /// <summary>The configuration key(s) of the rule, as named in a 403 (never the lists themselves).</summary>
    public string Name { get; }

    public FrozenSet<uint> Uids { get; }

    public FrozenSet<uint> Gids { get; }

    /// <summary>The rule of <paramref name="section"/>'s <c>AllowedUids</c>/<c>AllowedGids</c>; null when both are empty.</summary>
    /// <remarks>The lists have been validated: every entry resolves.</remarks>
    public static CallerRule? Create(string section, IReadOnlyList<string> uids, IReadOnlyList<string> gids)
    {
        if (uids.Count == 0 && gids.Count == 0)
        {
            return null;
        }

        var keys = new List<string>(2);
        if (uids.Count > 0)
        {
            keys.Add(section + ":AllowedUids");
        }

        if (gids.Count > 0)
        {
            keys.Add(section + ":AllowedGids");
        }

        return new CallerRule(
            string.Join(" / ", keys),
            uids.Select(u => UnixIds.TryResolveUser(u, out var id) ? id : throw new InvalidOperationException($"{section}:AllowedUids: '{u}' is not a uid.")).ToFrozenSet(),
            gids.Select(g => UnixIds.TryResolveGroup(g, out var id) ? id : throw new InvalidOperationException($"{section}:AllowedGids: '{g}' is not a gid.")).ToFrozenSet());
    }

    /// <summary>
    /// The rule of <c>Gateway:Admin</c>: its lists, or, when both are empty, the user the gateway runs as and root.
    /// </summary>
    public static CallerRule CreateAdmin(string section, IReadOnlyList<string> uids, IReadOnlyList<string> gids) =>
        Create(section, uids, gids)
        ?? new CallerRule(section + ":AllowedUids (default: the gateway's own user and root)", new[] { Hosting.SocketDirectory.EffectiveUid(), 0u }.ToFrozenSet(), FrozenSet<uint>.Empty);

    public bool Allows(IPeerCredentialsFeature? caller)
    {
        if (caller is null)
        {
            return false;
        }

        if (Uids.Contains(caller.Uid))
        {
            return true;
        }

        if (Gids.Count == 0)
        {
            return false;
        }

        if (Gids.Contains(caller.Gid))
        {
            return true;
        }

        foreach (var gid in caller.Groups)
        {
            if (Gids.Contains(gid))
            {
                return true;
            }
        }

        return false;
    }
}
