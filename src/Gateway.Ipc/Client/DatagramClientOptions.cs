using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Client;

/// <summary>Options of a <see cref="DatagramClient"/>.</summary>
public sealed class DatagramClientOptions
{
    /// <summary>Where the client shows the datagrams it sends and receives to an observer (a live capture); <see langword="null"/> = nowhere.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public Diagnostics.DatagramTap? Tap { get; set; }

    /// <summary>The path of the backend's datagram socket. Required.</summary>
    /// <value>The default value is the empty string (invalid).</value>
    public string BackendPath { get; set; } = "";

    /// <summary>
    /// Where the client's reply socket is bound: <see langword="null"/> for a unique Linux abstract name
    /// (<c>@gw-…</c>, no file), otherwise a filesystem path (put it in a private directory). A path is unlinked
    /// on dispose only if it is still the socket file this client created (same inode).
    /// </summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public string? ReplyPath { get; set; }

    /// <summary>
    /// When set, replies are accepted only from a process running as this uid (in addition to the check of the
    /// sender's address): the reply socket enables <c>SO_PASSCRED</c>, the kernel attaches each sender's credentials
    /// (<c>SCM_CREDENTIALS</c>) and a datagram from another uid, or without credentials, is dropped and counted in
    /// <see cref="DatagramClientStatistics.ForeignUidReplies"/>. The uid compared is the one the kernel reports: the
    /// sender's real uid (a sender may claim its effective or saved uid instead; only root can claim any other).
    /// Use it when the backend runs as a known user and its socket's directory, or the reply socket (an abstract name is
    /// reachable by every local user), is not private.
    /// </summary>
    /// <value>The default value is <see langword="null"/> (no uid check; receiving stays on the <c>recvfrom</c> fast path).</value>
    public uint? ExpectedReplyUid { get; set; }

    /// <summary>
    /// How long the backend may accept no datagram at all (no progress) while requests wait in the client's send
    /// queue; then every queued request fails with <see cref="DatagramFailure.BackendOverloaded"/>
    /// (<see cref="Timeout.InfiniteTimeSpan"/> = no limit). A backend that keeps reading, however slowly, is not
    /// overloaded: each accepted datagram restarts this period.
    /// </summary>
    /// <value>The default value is 1 second.</value>
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// The most requests that may wait in the client's send queue (the one being sent included); a request beyond it
    /// fails at once with <see cref="DatagramFailure.BackendOverloaded"/>. Bounds the memory held for a dead backend.
    /// </summary>
    /// <value>The default value is 10,000.</value>
    public int MaxSendQueueLength { get; set; } = 10_000;

    /// <summary>
    /// The most bytes of encoded requests that may wait in the client's send queue; a request beyond it fails at once
    /// with <see cref="DatagramFailure.BackendOverloaded"/>. An empty queue always accepts one request of any size.
    /// </summary>
    /// <value>The default value is 64 MiB.</value>
    public long MaxSendQueueBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>The largest payload sent or accepted, in bytes (both directions).</summary>
    /// <value>The default value is 17 MiB (<see cref="ProtocolConstants.DefaultMaxMessageBytes"/>): a 16 MiB body plus up to 1 MiB of envelope fields, the largest message the gateway sends.</value>
    public int MaxMessageBytes { get; set; } = ProtocolConstants.DefaultMaxMessageBytes;

    /// <summary>The largest total of memory held by partially received fragmented replies, in bytes.</summary>
    /// <value>The default value is 64 MiB.</value>
    public long MaxReassemblyBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>The longest time a partially received fragmented reply is kept.</summary>
    /// <value>The default value is 10 seconds.</value>
    public TimeSpan ReassemblyTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>
    /// The flow-control window of a streamed reply (docs/protocol.md §4.5.5): the most body bytes the client lets one
    /// stream's backend send ahead of its reader, and so the most one open stream holds in memory.
    /// </summary>
    /// <value>The default value is 256 KiB.</value>
    public int StreamWindowBytes { get; set; } = 256 * 1024;

    internal void Validate()
    {
        if (StreamWindowBytes <= 0)
        {
            throw new ArgumentOutOfRangeException("options", StreamWindowBytes, "DatagramClientOptions.StreamWindowBytes must be positive.");
        }

        if (string.IsNullOrEmpty(BackendPath))
        {
            throw new ArgumentException("DatagramClientOptions.BackendPath is required.", "options");
        }

        if (ReplyPath is { Length: 0 })
        {
            throw new ArgumentException("DatagramClientOptions.ReplyPath must be null (abstract name) or a path.", "options");
        }

        if (SendTimeout <= TimeSpan.Zero && SendTimeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException("options", SendTimeout, "DatagramClientOptions.SendTimeout must be positive or infinite.");
        }

        if (MaxSendQueueLength <= 0)
        {
            throw new ArgumentOutOfRangeException("options", MaxSendQueueLength, "DatagramClientOptions.MaxSendQueueLength must be positive.");
        }

        if (MaxSendQueueBytes <= 0)
        {
            throw new ArgumentOutOfRangeException("options", MaxSendQueueBytes, "DatagramClientOptions.MaxSendQueueBytes must be positive.");
        }

        if (MaxMessageBytes <= 0)
        {
            throw new ArgumentOutOfRangeException("options", MaxMessageBytes, "DatagramClientOptions.MaxMessageBytes must be positive.");
        }

        if (MaxReassemblyBytes <= 0)
        {
            throw new ArgumentOutOfRangeException("options", MaxReassemblyBytes, "DatagramClientOptions.MaxReassemblyBytes must be positive.");
        }

        if (ReassemblyTimeout <= TimeSpan.Zero && ReassemblyTimeout != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException("options", ReassemblyTimeout, "DatagramClientOptions.ReassemblyTimeout must be positive or infinite.");
        }
    }
}
