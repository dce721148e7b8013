// TEMPORARY compile stub of the agreed client API (see branch ipc-client). Deleted when that branch merges.
#pragma warning disable CS1591, CA1822, IDE0060, CA1805, CA1051
using Gateway.Ipc.Protocol;
using Microsoft.Extensions.Logging;

namespace Gateway.Ipc.Client;

public sealed class DatagramClientOptions
{
    public string BackendPath { get; set; } = "";
    public string? ReplyPath { get; set; }
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(1);
    public int MaxMessageBytes { get; set; } = ProtocolConstants.DefaultMaxMessageBytes;
    public long MaxReassemblyBytes { get; set; } = 64L * 1024 * 1024;
    public TimeSpan ReassemblyTimeout { get; set; } = TimeSpan.FromSeconds(10);
}

public sealed class DatagramClientStatistics
{
    public long RequestsSent;
    public long RepliesReceived;
    public long LateReplies;
    public long SpoofedReplies;
    public long MalformedDatagrams;
    public long OversizedDatagrams;
    public long Timeouts;
    public long SendFailures;
}

public sealed class DatagramClient : IAsyncDisposable, IDisposable
{
    public DatagramClient(DatagramClientOptions options, TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null) => BackendPath = options.BackendPath;
    public string BackendPath { get; }
    public string LocalAddress => "";
    public int PendingCount => 0;
    public DatagramClientStatistics Statistics { get; } = new();
    public ulong NextCorrelationId() => 1;
    public Task<DatagramReply> SendAsync(ReadOnlyMemory<byte> frame, TimeSpan timeout, CancellationToken cancellationToken = default) => throw new NotImplementedException();
    public void SendCancel(ulong correlationId) { }
    public Task<bool> PingAsync(TimeSpan timeout, CancellationToken cancellationToken = default) => Task.FromResult(false);
    public ValueTask DisposeAsync() => default;
    public void Dispose() { }
}

public sealed class DatagramReply : IDisposable
{
    public MessageKind Kind { get; }
    public MessageFlags Flags { get; }
    public ushort Attempt { get; }
    public ulong CorrelationId { get; }
    public ReadOnlyMemory<byte> Payload { get; }
    public ResponseView Response => ResponseView.Read(Payload.Span);
    public ErrorView Error => ErrorView.Read(Payload.Span);
    public void Dispose() { }
}

public enum DatagramFailure { Timeout, BackendAbsent, BackendOverloaded, TooLarge, MalformedReply, Closed }

public sealed class DatagramException : Exception
{
    public DatagramException(DatagramFailure failure, string backendPath, string message) : base(message) { Failure = failure; BackendPath = backendPath; }
    public DatagramFailure Failure { get; }
    public string BackendPath { get; }
}
