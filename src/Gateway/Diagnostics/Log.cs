using Gateway.Configuration;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;

namespace Gateway.Diagnostics;

/// <summary>Source-generated log messages of the gateway. Event ids are unique across the project (1xxx).</summary>
internal static partial class Log
{
    [LoggerMessage(1001, LogLevel.Information, "Listening on unix:{SocketPath} (mode {Mode}{GroupText})")]
    public static partial void ListeningUnix(ILogger logger, string socketPath, string mode, string groupText);

    [LoggerMessage(1050, LogLevel.Information, "Listening on unix:{SocketPath}, a socket passed by systemd (socket activation: its file, mode and group are systemd's)")]
    public static partial void ListeningActivated(ILogger logger, string socketPath);

    [LoggerMessage(1002, LogLevel.Information, "Listening on http://127.0.0.1:{Port} (loopback TCP, for browsers and Swagger UI)")]
    public static partial void ListeningTcp(ILogger logger, int port);

    [LoggerMessage(1003, LogLevel.Warning, "Removed a stale socket file at {SocketPath} (nothing was listening on it)")]
    public static partial void StaleSocketRemoved(ILogger logger, string socketPath);

    [LoggerMessage(1010, LogLevel.Information, "Route {Route}: {Path} [{Methods}] -> backend {Backend} (timeout {Timeout}, max body {MaxBodySize} B)")]
    public static partial void RouteSummary(ILogger logger, string route, string path, string methods, string backend, TimeSpan timeout, long maxBodySize);

    [LoggerMessage(1011, LogLevel.Information, "Backend {Backend}: {Mode}, instances {Instances} (timeout {Timeout})")]
    public static partial void BackendSummary(ILogger logger, string backend, BackendMode mode, string instances, TimeSpan timeout);

    [LoggerMessage(1012, LogLevel.Information, "Route table {Version} loaded from changed configuration: {Routes} routes, {Backends} backends")]
    public static partial void RouteTableReloaded(ILogger logger, long version, int routes, int backends);

    [LoggerMessage(1013, LogLevel.Error, "Configuration change rejected; the previous routes and backends stay in effect:\n{Errors}")]
    public static partial void ConfigurationRejected(ILogger logger, string errors);

    [LoggerMessage(1014, LogLevel.Information, "Backend instance {SocketPath} is no longer configured; it closes when its in-flight requests finish")]
    public static partial void InstanceRetired(ILogger logger, string socketPath);

    [LoggerMessage(1016, LogLevel.Warning, "Reply socket directory {Directory} is writable by other users (mode {Mode}); they could replace reply sockets. Make it private (e.g. 0700 or 2770 with a shared group) or set Gateway:Backends:<name>:ReplyUid")]
    public static partial void ReplyDirectoryNotPrivate(ILogger logger, string directory, string mode);

    [LoggerMessage(1017, LogLevel.Information, "Unix datagram sockets created now queue at most {QueueLength} datagrams (net.unix.max_dgram_qlen = {MaxDgramQlen}): under concurrent load the reply sockets and the backends' sockets fill and senders wait. Set net.unix.max_dgram_qlen to {Recommended} or more (e.g. 256) before the gateway and its backends start; see docs/performance.md.")]
    public static partial void SmallDatagramQueue(ILogger logger, int queueLength, int maxDgramQlen, int recommended);

    [LoggerMessage(1018, LogLevel.Information, "Socket completions run {Mode} ({Variable}={Value}, {ThreadCountVariable}={ThreadCount})")]
    public static partial void SocketCompletionMode(ILogger logger, string mode, string variable, string value, string threadCountVariable, string threadCount);

    [LoggerMessage(1015, LogLevel.Information, "Demo echo backend listening on {SocketPath} (route /echo/{{**rest}})")]
    public static partial void DemoBackendStarted(ILogger logger, string socketPath);

    [LoggerMessage(1020, LogLevel.Information, "Client disconnected; request on route {Route} to {SocketPath} cancelled")]
    public static partial void ClientDisconnected(ILogger logger, string route, string socketPath);

    [LoggerMessage(1021, LogLevel.Warning, "Forwarding on route {Route} to {SocketPath} failed: {Failure}: {Message}")]
    public static partial void ForwardFailed(ILogger logger, string route, string socketPath, DatagramFailure failure, string message);

    [LoggerMessage(1022, LogLevel.Warning, "Backend {Backend} answered route {Route} with error {Code}: {Message}")]
    public static partial void BackendErrorReply(ILogger logger, string route, string backend, IpcErrorCode code, string message);

    [LoggerMessage(1040, LogLevel.Warning, "Backend {Backend} answered route {Route} with status {Status} and a body of {Length} bytes; a {Status} response has no content, the body was dropped")]
    public static partial void ReplyBodyDropped(ILogger logger, string route, string backend, int status, int length);

    [LoggerMessage(1041, LogLevel.Warning, "Backend {Backend} ({SocketPath}) answered route {Route} with a reply that breaks docs/protocol.md section 4.2: {Violation}")]
    public static partial void MalformedReplyHead(ILogger logger, string route, string backend, string socketPath, string violation);

    [LoggerMessage(1042, LogLevel.Error, "The reply of backend {Backend} on route {Route} could not be mapped to an HTTP response; answered 502 malformed-reply")]
    public static partial void ReplyMappingFailed(ILogger logger, Exception exception, string route, string backend);

    [LoggerMessage(1043, LogLevel.Error, "The response to route {Route} (backend {Backend}) failed after it had started; the connection is aborted so that the caller cannot take it for a complete response")]
    public static partial void ResponseFailedAfterStart(ILogger logger, Exception exception, string route, string backend);

    [LoggerMessage(1044, LogLevel.Warning, "The streamed reply of backend {Backend} on route {Route} was aborted after {Chunks} chunks ({Bytes} bytes): {Reason}; the HTTP response is aborted, not ended")]
    public static partial void StreamAborted(ILogger logger, string route, string backend, long chunks, long bytes, string reason);

    [LoggerMessage(1045, LogLevel.Debug, "The caller of route {Route} went away during a streamed reply of backend {Backend} after {Chunks} chunks; the backend stream is cancelled")]
    public static partial void StreamCallerGone(ILogger logger, string route, string backend, long chunks);
}
