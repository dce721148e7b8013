using System.Collections;
using System.Globalization;

namespace Gateway.Security;

/// <summary>Logging scope for the rest of a request: who called (CallerUid, CallerGid, CallerPid).</summary>
internal sealed class CallerScope(IPeerCredentialsFeature caller) : IReadOnlyList<KeyValuePair<string, object?>>
{
    public int Count => 3;

    public KeyValuePair<string, object?> this[int index] => index switch
    {
        0 => new("CallerUid", caller.Uid),
        1 => new("CallerGid", caller.Gid),
        2 => new("CallerPid", caller.Pid),
        _ => throw new ArgumentOutOfRangeException(nameof(index)),
    };

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
    {
        for (var i = 0; i < Count; i++)
        {
            yield return this[i];
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"CallerUid:{caller.Uid} CallerGid:{caller.Gid} CallerPid:{caller.Pid}");
}
