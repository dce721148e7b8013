using Gateway.Ipc.Client;

namespace Gateway.Resilience;

/// <summary>Log messages of retries, breakers, ejection and probing (event ids 1100–1199).</summary>
internal static partial class ResilienceLog
{
    [LoggerMessage(1100, LogLevel.Information, "Retrying request {CorrelationId} on route {Route} (attempt {Attempt}) after {Delay}: {Reason}")]
    public static partial void Retrying(ILogger logger, string correlationId, string route, int attempt, TimeSpan delay, string reason);

    [LoggerMessage(1101, LogLevel.Warning, "Backend instance {SocketPath} ejected after {Failures} consecutive failures (last: {Failure})")]
    public static partial void InstanceEjected(ILogger logger, string socketPath, int failures, DatagramFailure failure);

    [LoggerMessage(1102, LogLevel.Warning, "Backend instance {SocketPath} failed its health probe; ejected")]
    public static partial void ProbeFailed(ILogger logger, string socketPath);

    [LoggerMessage(1103, LogLevel.Information, "Backend instance {SocketPath} answered its health probe; readmitted")]
    public static partial void ProbeRecovered(ILogger logger, string socketPath);

    [LoggerMessage(1104, LogLevel.Warning, "Request on route {Route} not retried: {Reason}")]
    public static partial void NotRetried(ILogger logger, string route, string reason);

    [LoggerMessage(1105, LogLevel.Warning, "Backend instance {SocketPath} is at its in-flight limit ({Limit}); request on route {Route} rejected after waiting {QueueTimeout}")]
    public static partial void InstanceBusy(ILogger logger, string socketPath, int limit, string route, TimeSpan queueTimeout);

    [LoggerMessage(1106, LogLevel.Error, "Health probe loop failed")]
    public static partial void ProbeLoopFailed(ILogger logger, Exception exception);

    [LoggerMessage(1107, LogLevel.Warning, "Circuit of backend instance {SocketPath} opened for {BreakDuration}")]
    public static partial void CircuitOpened(ILogger logger, string socketPath, TimeSpan breakDuration);

    [LoggerMessage(1108, LogLevel.Information, "Circuit of backend instance {SocketPath} half-open: one trial request")]
    public static partial void CircuitHalfOpened(ILogger logger, string socketPath);

    [LoggerMessage(1109, LogLevel.Information, "Circuit of backend instance {SocketPath} closed")]
    public static partial void CircuitClosed(ILogger logger, string socketPath);
}
