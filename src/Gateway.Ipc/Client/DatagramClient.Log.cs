using System.Net.Sockets;
using Gateway.Ipc.Protocol;
using Microsoft.Extensions.Logging;

namespace Gateway.Ipc.Client;

public sealed partial class DatagramClient
{
    // Event ids 2100–2199 belong to the datagram client.
    private static partial class Log
    {
        [LoggerMessage(2100, LogLevel.Debug, "Datagram client {LocalAddress} started for backend {BackendPath}.")]
        public static partial void Started(ILogger logger, string localAddress, string backendPath);

        [LoggerMessage(2101, LogLevel.Debug, "Datagram client {LocalAddress} for backend {BackendPath} stopped.")]
        public static partial void Stopped(ILogger logger, string localAddress, string backendPath);

        [LoggerMessage(2102, LogLevel.Warning, "Receiving on {LocalAddress} failed; the loop continues.")]
        public static partial void ReceiveFailed(ILogger logger, string localAddress, Exception exception);

        [LoggerMessage(EventId = 2103, Message = "Dropped a datagram from {Sender}: replies are accepted only from backend {BackendPath}.")]
        public static partial void SpoofedDatagram(ILogger logger, LogLevel level, string sender, string backendPath);

        [LoggerMessage(EventId = 2104, Message = "Dropped a datagram from backend {BackendPath} larger than {MaxDatagram} bytes.")]
        public static partial void OversizedDatagram(ILogger logger, LogLevel level, string backendPath, int maxDatagram);

        [LoggerMessage(EventId = 2105, Message = "Dropped a malformed datagram from backend {BackendPath} ({Violation}): {Detail}")]
        public static partial void MalformedDatagram(ILogger logger, LogLevel level, string backendPath, ProtocolViolation violation, string detail);

        [LoggerMessage(2106, LogLevel.Debug, "Dropped a late or duplicate {Kind} for correlation ID {CorrelationId} from backend {BackendPath}.")]
        public static partial void LateReply(ILogger logger, ulong correlationId, MessageKind kind, string backendPath);

        [LoggerMessage(2107, LogLevel.Warning, "The reply to correlation ID {CorrelationId} announces {PayloadLength} bytes, more than the {MaxMessageBytes} accepted.")]
        public static partial void ReplyTooLarge(ILogger logger, ulong correlationId, uint payloadLength, int maxMessageBytes);

        [LoggerMessage(2108, LogLevel.Debug, "Dropped a fragment of correlation ID {CorrelationId}: {Result}.")]
        public static partial void ReassemblyDropped(ILogger logger, ulong correlationId, ReassemblyResult result);

        [LoggerMessage(2109, LogLevel.Debug, "Request {CorrelationId} to backend {BackendPath} timed out.")]
        public static partial void RequestTimedOut(ILogger logger, ulong correlationId, string backendPath);

        [LoggerMessage(2110, LogLevel.Debug, "Sending to backend {BackendPath} failed: {Failure} ({SocketError}).")]
        public static partial void SendFailed(ILogger logger, string backendPath, DatagramFailure failure, SocketError socketError);

        [LoggerMessage(2111, LogLevel.Debug, "CANCEL for correlation ID {CorrelationId} to backend {BackendPath} not sent ({SocketError}).")]
        public static partial void CancelNotSent(ILogger logger, ulong correlationId, string backendPath, SocketError socketError);

        [LoggerMessage(2112, LogLevel.Debug, "Ping of backend {BackendPath} failed: {Failure}.")]
        public static partial void PingFailed(ILogger logger, string backendPath, DatagramFailure failure);

        [LoggerMessage(2113, LogLevel.Debug, "Removed reply socket file {ReplyPath}.")]
        public static partial void ReplyPathRemoved(ILogger logger, string replyPath);

        [LoggerMessage(2114, LogLevel.Information, "Left reply socket path {ReplyPath} in place: it is gone or no longer our socket file.")]
        public static partial void ReplyPathKept(ILogger logger, string replyPath);

        [LoggerMessage(2115, LogLevel.Error, "Handling a datagram from backend {BackendPath} failed unexpectedly; it was dropped.")]
        public static partial void DatagramHandlingFailed(ILogger logger, string backendPath, Exception exception);

        // Debug, like the other per-datagram drops a flood can cause: counted in ForeignUidReplies and the metrics.
        [LoggerMessage(2116, LogLevel.Debug, "Dropped a datagram from backend {BackendPath}'s address sent by uid {SenderUid} (-1: no credentials); replies are accepted only from uid {ExpectedUid}.")]
        public static partial void ForeignUidDatagram(ILogger logger, long senderUid, string backendPath, uint expectedUid);

        [LoggerMessage(2117, LogLevel.Warning, "{Count} more datagrams were dropped on {LocalAddress} since the last such warning (logged at Debug; every drop is counted in the client's statistics and metrics).")]
        public static partial void DropsDemoted(ILogger logger, long count, string localAddress);
    }
}
