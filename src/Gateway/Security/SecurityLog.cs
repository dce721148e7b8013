namespace Gateway.Security;

/// <summary>Source-generated log messages of caller authorization and request limits (event ids 12xx).</summary>
internal static partial class SecurityLog
{
    [LoggerMessage(1200, LogLevel.Debug, "Connection {ConnectionId} from uid {CallerUid} gid {CallerGid} pid {CallerPid}")]
    public static partial void CallerConnected(ILogger logger, uint callerUid, uint callerGid, int callerPid, string connectionId);

    [LoggerMessage(1201, LogLevel.Warning, "Caller uid {CallerUid} gid {CallerGid} pid {CallerPid} denied: {Method} {Path} is not allowed by {Rule}")]
    public static partial void CallerDenied(ILogger logger, uint callerUid, uint callerGid, int callerPid, string method, string path, string rule);

    [LoggerMessage(1202, LogLevel.Warning, "Caller of unknown identity (not a Unix socket connection) denied: {Method} {Path} is subject to {Rule}")]
    public static partial void UnknownCallerDenied(ILogger logger, string method, string path, string rule);

    [LoggerMessage(1203, LogLevel.Warning, "Request rejected: {Detail}")]
    public static partial void RequestHeadersRejected(ILogger logger, string detail);

    [LoggerMessage(1204, LogLevel.Warning, "Request {Method} {Path} rate limited: {Detail}")]
    public static partial void RateLimited(ILogger logger, string method, string path, string detail);

    [LoggerMessage(1205, LogLevel.Warning, "Request {Method} refused by the path rule ({Reason}): {RawTarget}")]
    public static partial void TargetRejected(ILogger logger, string method, string reason, string rawTarget);
}
