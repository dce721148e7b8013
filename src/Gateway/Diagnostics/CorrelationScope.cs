using System.Collections;

namespace Gateway.Diagnostics;

/// <summary>Logging scope carrying the IDs that join a gateway log line to a trace and to backend logs.</summary>
internal sealed class CorrelationScope : IReadOnlyList<KeyValuePair<string, object?>>
{
    private readonly string _requestId;
    private readonly string _correlationId;
    private readonly string _route;
    private readonly string _backend;

    public CorrelationScope(string requestId, string correlationId, string route, string backend)
    {
        _requestId = requestId;
        _correlationId = correlationId;
        _route = route;
        _backend = backend;
    }

    public int Count => 4;

    public KeyValuePair<string, object?> this[int index] => index switch
    {
        0 => new("RequestId", _requestId),
        1 => new("CorrelationId", _correlationId),
        2 => new("Route", _route),
        3 => new("Backend", _backend),
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

    public override string ToString() => $"RequestId:{_requestId} CorrelationId:{_correlationId} Route:{_route} Backend:{_backend}";
}
