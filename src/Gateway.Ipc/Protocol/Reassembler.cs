using System.Buffers;

namespace Gateway.Ipc.Protocol;

/// <summary>The outcome of <see cref="Reassembler.Add"/>.</summary>
public enum ReassemblyResult
{
    /// <summary>The fragment was stored; the message is not complete yet.</summary>
    Incomplete,

    /// <summary>The fragment completed a message, handed out as a <see cref="ReassembledMessage"/>.</summary>
    Completed,

    /// <summary>
    /// A first fragment announced a payload larger than the maximum message size; nothing is held. A backend
    /// answers ERROR <c>TOO_LARGE</c> (this result is returned once per message: its later fragments give
    /// <see cref="OutOfOrder"/>), a client fails the request as too large.
    /// </summary>
    TooLarge,

    /// <summary>
    /// The fragment's offset is not the next expected one (or it continues a message that is not held):
    /// the fragment and any partial message under its key were dropped.
    /// </summary>
    OutOfOrder,

    /// <summary>Holding the message would exceed the limit on the memory of all partial messages; it was dropped.</summary>
    OverLimit,

    /// <summary>The datagram is not a well-formed fragment, or disagrees with its partial message's <c>payload_length</c>; dropped.</summary>
    Malformed,
}

/// <summary>Counters of a <see cref="Reassembler"/>. Values are read atomically; they only grow.</summary>
public sealed class ReassemblerStatistics
{
    internal long _completed;
    internal long _tooLarge;
    internal long _outOfOrder;
    internal long _overLimit;
    internal long _malformed;
    internal long _expired;

    /// <summary>Messages completed.</summary>
    public long Completed => Interlocked.Read(ref _completed);

    /// <summary>Messages refused because their announced payload exceeds the maximum message size.</summary>
    public long TooLarge => Interlocked.Read(ref _tooLarge);

    /// <summary>Fragments dropped because they did not continue a held message in order (each also drops the partial, if any).</summary>
    public long OutOfOrder => Interlocked.Read(ref _outOfOrder);

    /// <summary>Messages dropped because they did not fit in the memory limit for partial messages.</summary>
    public long OverLimit => Interlocked.Read(ref _overLimit);

    /// <summary>Datagrams dropped as malformed fragments.</summary>
    public long Malformed => Interlocked.Read(ref _malformed);

    /// <summary>Partial messages freed because they did not complete within the reassembly timeout.</summary>
    public long Expired => Interlocked.Read(ref _expired);
}

/// <summary>
/// A reassembled message: the 24-byte header (with the <c>FRAGMENT</c> flag cleared, so
/// <see cref="FrameHeader.ReadDatagram(ReadOnlySpan{byte})"/> accepts it) followed by the whole payload, in a pooled buffer.
/// Dispose it to return the buffer; its memory must not be used afterwards.
/// </summary>
public sealed class ReassembledMessage : IDisposable
{
    private byte[]? _buffer;
    private readonly int _length;

    internal ReassembledMessage(byte[] buffer, int length, FrameHeader header)
    {
        _buffer = buffer;
        _length = length;
        Header = header;
    }

    /// <summary>The message's header (<c>FRAGMENT</c> cleared).</summary>
    public FrameHeader Header { get; }

    /// <summary>The whole message: header followed by payload.</summary>
    /// <exception cref="ObjectDisposedException">The message was disposed.</exception>
    public Memory<byte> Message => (_buffer ?? throw new ObjectDisposedException(nameof(ReassembledMessage))).AsMemory(0, _length);

    /// <summary>The payload (the bytes after the header).</summary>
    /// <exception cref="ObjectDisposedException">The message was disposed.</exception>
    public Memory<byte> Payload => Message[ProtocolConstants.HeaderSize..];

    /// <summary>Returns the buffer to the pool. Idempotent.</summary>
    public void Dispose()
    {
        var buffer = Interlocked.Exchange(ref _buffer, null);
        if (buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}

/// <summary>
/// Reassembles fragmented messages (<c>docs/protocol.md</c> section 6), keyed by
/// (sender address, <c>kind</c>, <c>correlation_id</c>, <c>attempt</c>), in order only.
/// </summary>
/// <remarks>
/// <para>
/// Fragments must arrive in order (AF_UNIX keeps the order of one sender): a fragment whose offset is not the
/// next expected one drops the partial message (a fragment at offset 0 then starts a new one).
/// </para>
/// <para>
/// Limits: a first fragment announcing more than <c>maxMessageBytes</c> of payload gives
/// <see cref="ReassemblyResult.TooLarge"/>. A partial message reserves its whole announced size on its first
/// fragment (one pooled buffer, no copying on completion); a message whose reservation would push the total
/// held above <c>maxTotalBytes</c> is dropped (<see cref="ReassemblyResult.OverLimit"/>). A partial message
/// older than <c>timeout</c> is freed by the next <see cref="Add"/> or <see cref="Sweep"/> (both O(1) when
/// nothing expired: partials are kept in creation order). Every drop is counted in <see cref="Statistics"/>.
/// </para>
/// <para>Thread-safe: every method takes one internal lock (uncontended on a receive loop).</para>
/// </remarks>
public sealed class Reassembler : IDisposable
{
    private readonly Dictionary<PartialKey, Partial> _partials = [];
    private readonly Lock _lock = new();
    private readonly int _maxMessageBytes;
    private readonly long _maxTotalBytes;
    private readonly TimeSpan _timeout;
    private readonly TimeProvider _timeProvider;
    private Partial? _oldest;
    private Partial? _newest;
    private long _bytesHeld;
    private int _count;
    private bool _disposed;

    /// <summary>Creates a reassembler.</summary>
    /// <param name="maxMessageBytes">Largest accepted payload, in bytes (default 17 MiB).</param>
    /// <param name="maxTotalBytes">Largest total of memory reserved by partial messages (default 64 MiB).</param>
    /// <param name="timeout">Longest time a partial message is kept (default 10 s; <see cref="Timeout.InfiniteTimeSpan"/> = forever).</param>
    /// <param name="timeProvider">The clock (default <see cref="TimeProvider.System"/>).</param>
    public Reassembler(int maxMessageBytes = ProtocolConstants.DefaultMaxMessageBytes, long maxTotalBytes = 64L * 1024 * 1024, TimeSpan? timeout = null, TimeProvider? timeProvider = null)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxMessageBytes);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(maxTotalBytes);
        var t = timeout ?? TimeSpan.FromSeconds(10);
        if (t <= TimeSpan.Zero && t != Timeout.InfiniteTimeSpan)
        {
            throw new ArgumentOutOfRangeException(nameof(timeout), t, "The timeout must be positive or infinite.");
        }

        // Array.MaxLength bounds what one buffer can hold.
        _maxMessageBytes = Math.Min(maxMessageBytes, Array.MaxLength - ProtocolConstants.HeaderSize);
        _maxTotalBytes = maxTotalBytes;
        _timeout = t;
        _timeProvider = timeProvider ?? TimeProvider.System;
    }

    /// <summary>Drop and completion counters.</summary>
    public ReassemblerStatistics Statistics { get; } = new();

    /// <summary>Number of partial messages held.</summary>
    public int PartialCount => Volatile.Read(ref _count);

    /// <summary>Bytes reserved by partial messages.</summary>
    public long BytesHeld => Interlocked.Read(ref _bytesHeld);

    /// <summary>Adds one fragment datagram.</summary>
    /// <param name="senderAddress">The sender's address bytes (e.g. <c>SocketAddress.Buffer[..Size]</c>); copied when a partial message starts.</param>
    /// <param name="datagram">The whole received datagram (it should carry the <c>FRAGMENT</c> flag).</param>
    /// <param name="message">The completed message when the result is <see cref="ReassemblyResult.Completed"/>; the caller owns and disposes it.</param>
    /// <returns>What happened to the fragment.</returns>
    public ReassemblyResult Add(ReadOnlySpan<byte> senderAddress, ReadOnlySpan<byte> datagram, out ReassembledMessage? message)
    {
        message = null;
        FrameHeader header;
        try
        {
            header = FrameHeader.ReadDatagram(datagram, refuseNeedlessFragments: false);
        }
        catch (ProtocolException)
        {
            Interlocked.Increment(ref Statistics._malformed);
            return ReassemblyResult.Malformed;
        }

        if (!header.IsFragment)
        {
            Interlocked.Increment(ref Statistics._malformed);
            return ReassemblyResult.Malformed;
        }

        var offset = FrameHeader.ReadFragmentOffset(datagram);
        var data = datagram[ProtocolConstants.FragmentHeaderSize..];
        var key = new PartialKey(header.CorrelationId, header.Kind, header.Attempt);

        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            SweepLocked();
            var partial = Find(key, senderAddress);
            if (partial is not null)
            {
                if (partial.PayloadLength != header.PayloadLength)
                {
                    RemoveLocked(partial);
                    Interlocked.Increment(ref Statistics._malformed);
                    return ReassemblyResult.Malformed;
                }

                if (offset != partial.NextOffset)
                {
                    RemoveLocked(partial);
                    if (offset != 0)
                    {
                        Interlocked.Increment(ref Statistics._outOfOrder);
                        return ReassemblyResult.OutOfOrder;
                    }

                    // A new message under the same key starting over: the old partial is lost.
                    Interlocked.Increment(ref Statistics._outOfOrder);
                    partial = null;
                }
            }

            if (partial is null)
            {
                if (offset != 0)
                {
                    Interlocked.Increment(ref Statistics._outOfOrder);
                    return ReassemblyResult.OutOfOrder;
                }

                if (header.PayloadLength > (uint)_maxMessageBytes)
                {
                    Interlocked.Increment(ref Statistics._tooLarge);
                    return ReassemblyResult.TooLarge;
                }

                var size = ProtocolConstants.HeaderSize + (int)header.PayloadLength;
                if (_bytesHeld + size > _maxTotalBytes)
                {
                    Interlocked.Increment(ref Statistics._overLimit);
                    return ReassemblyResult.OverLimit;
                }

                partial = new Partial(key, senderAddress.ToArray(), header.PayloadLength, ArrayPool<byte>.Shared.Rent(size), size, _timeProvider.GetTimestamp());
                datagram[..ProtocolConstants.HeaderSize].CopyTo(partial.Buffer);
                partial.Buffer[4] &= unchecked((byte)~(byte)MessageFlags.Fragment);
                AddLocked(partial);
            }

            data.CopyTo(partial.Buffer.AsSpan(ProtocolConstants.HeaderSize + (int)offset));
            partial.NextOffset = offset + (uint)data.Length;
            if (partial.NextOffset < partial.PayloadLength)
            {
                return ReassemblyResult.Incomplete;
            }

            var buffer = partial.Buffer;
            partial.Buffer = [];
            RemoveLocked(partial);
            Interlocked.Increment(ref Statistics._completed);
            message = new ReassembledMessage(buffer, partial.Size, header with { Flags = header.Flags & ~MessageFlags.Fragment });
            return ReassemblyResult.Completed;
        }
    }

    /// <summary>Frees the partial messages older than the timeout.</summary>
    /// <returns>The number of partial messages freed.</returns>
    public int Sweep()
    {
        lock (_lock)
        {
            return _disposed ? 0 : SweepLocked();
        }
    }

    /// <summary>Frees every partial message. Later calls to <see cref="Add"/> throw <see cref="ObjectDisposedException"/>.</summary>
    public void Dispose()
    {
        lock (_lock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            while (_oldest is not null)
            {
                RemoveLocked(_oldest);
            }
        }
    }

    private int SweepLocked()
    {
        if (_oldest is null || _timeout == Timeout.InfiniteTimeSpan)
        {
            return 0;
        }

        var freed = 0;
        while (_oldest is { } oldest && _timeProvider.GetElapsedTime(oldest.StartTimestamp) >= _timeout)
        {
            RemoveLocked(oldest);
            Interlocked.Increment(ref Statistics._expired);
            freed++;
        }

        return freed;
    }

    private Partial? Find(PartialKey key, ReadOnlySpan<byte> sender)
    {
        if (!_partials.TryGetValue(key, out var partial))
        {
            return null;
        }

        while (partial is not null && !sender.SequenceEqual(partial.Sender))
        {
            partial = partial.NextSameKey;
        }

        return partial;
    }

    private void AddLocked(Partial partial)
    {
        ref var head = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrAddDefault(_partials, partial.Key, out _);
        partial.NextSameKey = head;
        head = partial;

        partial.Older = _newest;
        if (_newest is not null)
        {
            _newest.Newer = partial;
        }

        _newest = partial;
        _oldest ??= partial;
        _bytesHeld += partial.Size;
        _count++;
    }

    private void RemoveLocked(Partial partial)
    {
        // Unlink from the chain of partials sharing the key (different senders).
        if (_partials.TryGetValue(partial.Key, out var head))
        {
            if (ReferenceEquals(head, partial))
            {
                if (partial.NextSameKey is null)
                {
                    _partials.Remove(partial.Key);
                }
                else
                {
                    _partials[partial.Key] = partial.NextSameKey;
                }
            }
            else
            {
                while (head.NextSameKey is not null && !ReferenceEquals(head.NextSameKey, partial))
                {
                    head = head.NextSameKey;
                }

                head.NextSameKey = partial.NextSameKey;
            }
        }

        // Unlink from the age list.
        if (partial.Older is not null)
        {
            partial.Older.Newer = partial.Newer;
        }
        else
        {
            _oldest = partial.Newer;
        }

        if (partial.Newer is not null)
        {
            partial.Newer.Older = partial.Older;
        }
        else
        {
            _newest = partial.Older;
        }

        partial.Older = partial.Newer = partial.NextSameKey = null;
        _bytesHeld -= partial.Size;
        _count--;
        if (partial.Buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(partial.Buffer);
            partial.Buffer = [];
        }
    }

    private readonly record struct PartialKey(ulong CorrelationId, MessageKind Kind, ushort Attempt);

    private sealed class Partial(PartialKey key, byte[] sender, uint payloadLength, byte[] buffer, int size, long startTimestamp)
    {
        public PartialKey Key { get; } = key;

        public byte[] Sender { get; } = sender;

        public uint PayloadLength { get; } = payloadLength;

        public int Size { get; } = size;

        public long StartTimestamp { get; } = startTimestamp;

        public byte[] Buffer { get; set; } = buffer;

        public uint NextOffset { get; set; }

        public Partial? NextSameKey { get; set; }

        public Partial? Older { get; set; }

        public Partial? Newer { get; set; }
    }
}
