using System.Net.Sockets;
using Gateway.Ipc.Protocol;
using Microsoft.Extensions.Logging;

namespace Gateway.Ipc.Backend;

public sealed partial class DatagramBackendServer
{
    /// <summary>Log messages of the backend server; event ids 2000–2099.</summary>
    private static partial class Log
    {
        [LoggerMessage(2000, LogLevel.Information, "Datagram backend listening on {SocketPath} (MaxConcurrency {MaxConcurrency}, ReplayCacheSize {ReplayCacheSize}, ReplayCacheTtl {ReplayCacheTtl}).")]
        public static partial void Listening(ILogger logger, string socketPath, int maxConcurrency, int replayCacheSize, TimeSpan replayCacheTtl);

        [LoggerMessage(2001, LogLevel.Information, "Datagram backend on {SocketPath} stopped.")]
        public static partial void Stopped(ILogger logger, string socketPath);

        [LoggerMessage(EventId = 2002, Message = "Dropped a malformed datagram of {Length} bytes from {Sender}: {Violation}: {Reason}")]
        public static partial void DroppedMalformed(ILogger logger, LogLevel level, int length, string sender, ProtocolViolation violation, string reason);

        [LoggerMessage(EventId = 2003, Message = "Dropped a datagram from {Sender} that filled the {BufferSize}-byte receive buffer (oversized, possibly truncated).")]
        public static partial void DroppedOversized(ILogger logger, LogLevel level, string sender, int bufferSize);

        [LoggerMessage(EventId = 2004, Message = "Dropped a {Kind} message from {Sender}: a backend does not accept this kind.")]
        public static partial void DroppedUnexpectedKind(ILogger logger, LogLevel level, MessageKind kind, string sender);

        [LoggerMessage(EventId = 2005, Message = "Dropped request {CorrelationId} from an unbound socket: it cannot be answered.")]
        public static partial void DroppedUnbound(ILogger logger, LogLevel level, ulong correlationId);

        [LoggerMessage(EventId = 2006, Message = "Request {CorrelationId} from {Sender} has a malformed payload; answered ERROR MALFORMED: {Reason}")]
        public static partial void MalformedRequest(ILogger logger, LogLevel level, ulong correlationId, string sender, string reason);

        [LoggerMessage(2007, LogLevel.Warning, "Request {CorrelationId} refused with ERROR OVERLOADED: {InFlight} requests in flight.")]
        public static partial void Overloaded(ILogger logger, ulong correlationId, int inFlight);

        [LoggerMessage(2008, LogLevel.Debug, "Dropped attempt {Attempt} of request {CorrelationId}: the request is still executing.")]
        public static partial void DuplicateInFlight(ILogger logger, ulong correlationId, ushort attempt);

        [LoggerMessage(2009, LogLevel.Debug, "Replayed the cached reply of request {CorrelationId} for attempt {Attempt}.")]
        public static partial void Replayed(ILogger logger, ulong correlationId, ushort attempt);

        [LoggerMessage(2010, LogLevel.Debug, "Dropped request {CorrelationId}: its deadline {Deadline} passed before it could start.")]
        public static partial void Expired(ILogger logger, ulong correlationId, DateTimeOffset deadline);

        [LoggerMessage(2011, LogLevel.Error, "The handler failed for request {CorrelationId} ({Method} {Target}); answered ERROR INTERNAL.")]
        public static partial void HandlerFailed(ILogger logger, Exception exception, ulong correlationId, string method, string target);

        [LoggerMessage(2012, LogLevel.Debug, "Request {CorrelationId} was cancelled by its client; no reply is sent.")]
        public static partial void CancelledByClient(ILogger logger, ulong correlationId);

        [LoggerMessage(2013, LogLevel.Warning, "Could not send the reply to request {CorrelationId} to {Sender}: {Error}.")]
        public static partial void ReplyFailed(ILogger logger, ulong correlationId, string sender, SocketError error);

        [LoggerMessage(2014, LogLevel.Warning, "Could not send the reply to request {CorrelationId} to {Sender} within {Timeout}: its receive queue stayed full.")]
        public static partial void ReplyTimedOut(ILogger logger, ulong correlationId, string sender, TimeSpan timeout);

        [LoggerMessage(2015, LogLevel.Warning, "The reply to request {CorrelationId} has a {Length}-byte payload, over the {Limit}-byte limit; answered ERROR TOO_LARGE.")]
        public static partial void ReplyTooLarge(ILogger logger, ulong correlationId, long length, int limit);

        [LoggerMessage(2016, LogLevel.Warning, "Request {CorrelationId} from {Sender} has a {Length}-byte payload, over the {Limit}-byte limit; answered ERROR TOO_LARGE.")]
        public static partial void RequestTooLarge(ILogger logger, ulong correlationId, string sender, long length, int limit);

        [LoggerMessage(2017, LogLevel.Error, "Receiving on {SocketPath} failed.")]
        public static partial void ReceiveFailed(ILogger logger, Exception exception, string socketPath);

        [LoggerMessage(2018, LogLevel.Error, "Unexpected failure while processing a datagram on {SocketPath}.")]
        public static partial void ProcessingFailed(ILogger logger, Exception exception, string socketPath);

        [LoggerMessage(2019, LogLevel.Warning, "{InFlight} requests still running after the drain timeout {DrainTimeout}; cancelling them.")]
        public static partial void DrainTimedOut(ILogger logger, int inFlight, TimeSpan drainTimeout);

        [LoggerMessage(2020, LogLevel.Error, "The handler returned an invalid response for request {CorrelationId}; answered ERROR INTERNAL.")]
        public static partial void InvalidResponse(ILogger logger, Exception exception, ulong correlationId);

        [LoggerMessage(2021, LogLevel.Debug, "Dropped a fragment of request {CorrelationId} from {Sender}: {Reason}")]
        public static partial void FragmentDropped(ILogger logger, ulong correlationId, string sender, string reason);

        [LoggerMessage(2022, LogLevel.Warning, "{Count} more datagrams were dropped or refused on {SocketPath} since the last such warning (logged at Debug; every one is counted in the backend's statistics).")]
        public static partial void DropsDemoted(ILogger logger, long count, string socketPath);

        [LoggerMessage(2023, LogLevel.Information, "{SocketPath} queues at most {QueueLength} datagrams (net.unix.max_dgram_qlen = {MaxDgramQlen}): under concurrent load senders wait on it. Set net.unix.max_dgram_qlen to {Recommended} or more (e.g. 256) before the backend starts; see the gateway's docs/performance.md.")]
        public static partial void SmallDatagramQueue(ILogger logger, string socketPath, int queueLength, int maxDgramQlen, int recommended);
    }
}
