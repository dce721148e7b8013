using System.Collections;
using System.Globalization;
using Gateway.Security;

namespace Gateway.Diagnostics;

/// <summary>
/// The one logging scope of a request: who called (CallerUid, CallerGid, CallerPid) from the start, and for a forwarded
/// request, once the forwarding handler has numbered it, the IDs that join a log line to a trace and to backend logs
/// (RequestId, CorrelationId, Route, Backend). One scope instead of one for the caller and one for the forwarding: each
/// <c>BeginScope</c> costs a held request about 270 bytes (scope objects, execution context, async-local map).
/// </summary>
/// <remarks>
/// It is also the request's feature (<see cref="CorrelationIdOf"/>) that tells where the request was forwarded under which
/// correlation ID (the telemetry middleware tags the server span with it, problem details carry it): a feature, not
/// an <c>HttpContext.Items</c> entry, which would cost a held request a dictionary.
/// The forwarding IDs are added once and never removed, after the caller's, so a reader that took <see cref="Count"/>
/// before they were added still reads a consistent prefix.
/// </remarks>
internal sealed class RequestLogScope(IPeerCredentialsFeature? caller) : IReadOnlyList<KeyValuePair<string, object?>>
{
    private readonly int _callerCount = caller is null ? 0 : 3;
    private Forwarded? _forwarded;

    /// <summary>Starts the request's scope and remembers it for <see cref="AddForwarding"/>.</summary>
    public static IDisposable? Begin(ILogger logger, HttpContext context, IPeerCredentialsFeature? caller)
    {
        var scope = new RequestLogScope(caller);
        context.Features.Set(scope);
        return logger.BeginScope(scope);
    }

    /// <summary>
    /// Adds a forwarded request's IDs to the request's scope; begins a scope with only them (returned, to dispose)
    /// when the request has none (the caller middleware is not in the pipeline).
    /// </summary>
    public static IDisposable? AddForwarding(ILogger logger, HttpContext context, string correlationId, string route, string backend)
    {
        var forwarded = new Forwarded(context.TraceIdentifier, correlationId, route, backend);
        if (context.Features.Get<RequestLogScope>() is { } existing)
        {
            Volatile.Write(ref existing._forwarded, forwarded);
            return null;
        }

        var scope = new RequestLogScope(null);
        scope._forwarded = forwarded;
        context.Features.Set(scope);
        return logger.BeginScope(scope);
    }

    /// <summary>The correlation ID of a forwarded request (once forwarding has numbered it), else null.</summary>
    public static string? CorrelationIdOf(HttpContext context) => context.Features.Get<RequestLogScope>()?._forwarded?.CorrelationId;

    public int Count => _callerCount + (Volatile.Read(ref _forwarded) is null ? 0 : 4);

    public KeyValuePair<string, object?> this[int index]
    {
        get
        {
            if (index >= 0 && index < _callerCount)
            {
                return index switch
                {
                    0 => new("CallerUid", caller!.Uid),
                    1 => new("CallerGid", caller!.Gid),
                    _ => new("CallerPid", caller!.Pid),
                };
            }

            return (index - _callerCount, Volatile.Read(ref _forwarded)) switch
            {
                (0, { } f) => new("RequestId", f.RequestId),
                (1, { } f) => new("CorrelationId", f.CorrelationId),
                (2, { } f) => new("Route", f.Route),
                (3, { } f) => new("Backend", f.Backend),
                _ => throw new ArgumentOutOfRangeException(nameof(index)),
            };
        }
    }

    public IEnumerator<KeyValuePair<string, object?>> GetEnumerator()
    {
        var count = Count;
        for (var i = 0; i < count; i++)
        {
            yield return this[i];
        }
    }

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();

    public override string ToString()
    {
        var forwarded = Volatile.Read(ref _forwarded);
        var callerText = caller is null ? string.Empty : string.Create(CultureInfo.InvariantCulture, $"CallerUid:{caller.Uid} CallerGid:{caller.Gid} CallerPid:{caller.Pid}");
        return forwarded is null ? callerText
            : $"{callerText}{(callerText.Length > 0 ? " " : string.Empty)}RequestId:{forwarded.RequestId} CorrelationId:{forwarded.CorrelationId} Route:{forwarded.Route} Backend:{forwarded.Backend}";
    }

    private sealed record Forwarded(string RequestId, string CorrelationId, string Route, string Backend);
}
