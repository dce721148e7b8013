using System.Buffers;
using System.Threading.Channels;
using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Client;

/// <summary>
/// The body of a streamed reply (docs/protocol.md §4.5.2), read chunk by chunk with <see cref="ReadChunkAsync"/>.
/// </summary>
/// <remarks>
/// <para>
/// Flow control: the client grants the backend a window of <see cref="DatagramClientOptions.StreamWindowBytes"/> when the
/// head arrives, and grants again what the reader has consumed once that is at least half a window. A chunk counts as
/// consumed when the reader asks for the next one. So the stream never holds more than one window of data, and a reader
/// that stops reading makes only its own backend stream wait: the client's receive loop never blocks on it. A chunk
/// beyond the granted credit, out of sequence, or an END with the wrong count aborts the stream
/// (<see cref="DatagramFailure.StreamAborted"/>) and CANCELs it at the backend.
/// </para>
/// <para>Dispose the stream (or the <see cref="DatagramReply"/> that carries it) when done: a stream disposed before its
/// end sends CANCEL. One reader at a time.</para>
/// </remarks>
public sealed class ReplyStream : IDisposable
{
    private readonly DatagramClient _owner;
    private readonly ushort _attempt;
    private readonly int _window;
    private readonly Channel<Item> _items = Channel.CreateUnbounded<Item>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = true });
    private readonly Lock _lock = new();

    // Receive-loop side (under _lock): what was granted and received.
    private long _granted;
    private long _received;
    private uint _nextSequence;
    private bool _closed; // END, ERROR, violation or dispose: no more items

    // Reader side.
    private byte[]? _current;
    private long _consumedSinceGrant;
    private int _disposed;

    internal ReplyStream(DatagramClient owner, ulong correlationId, ushort attempt, int window)
    {
        _owner = owner;
        CorrelationId = correlationId;
        _attempt = attempt;
        _window = window;
        _granted = window;
    }

    /// <summary>The stream's correlation ID.</summary>
    public ulong CorrelationId { get; }

    /// <summary>Number of chunks read so far.</summary>
    public long ChunksRead { get; private set; }

    /// <summary>Number of body bytes read so far.</summary>
    public long BytesRead { get; private set; }

    /// <summary>
    /// Waits for the next chunk. Returns an empty memory at the end of the stream (END). The memory stays valid until the
    /// next call or <see cref="Dispose"/>; asking for the next chunk releases it and may grant the backend more credit.
    /// </summary>
    /// <param name="cancellationToken">The reader's token (the stream stays open when it fires; dispose it to CANCEL).</param>
    /// <returns>The chunk's data, or empty at the end.</returns>
    /// <exception cref="DatagramException">The backend sent ERROR (<see cref="DatagramFailure.StreamAborted"/>), broke the protocol, or the client closed.</exception>
    /// <exception cref="ObjectDisposedException">The stream was disposed.</exception>
    public async ValueTask<ReadOnlyMemory<byte>> ReadChunkAsync(CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        ReleaseCurrent();
        var item = await _items.Reader.ReadAsync(cancellationToken).ConfigureAwait(false);
        return Take(item);
    }

    /// <summary>
    /// Takes the next chunk if it has already arrived, without waiting: lets a reader write what is already here in one go
    /// and flush once, while a trickle (server-sent events) is still flushed chunk by chunk. Like
    /// <see cref="ReadChunkAsync"/> it releases the previous chunk (its memory may be reused) when it takes one.
    /// </summary>
    /// <param name="chunk">The chunk; empty at the end of the stream.</param>
    /// <returns>True when a chunk (or the end) was taken; false when nothing is waiting.</returns>
    /// <exception cref="DatagramException">The stream was aborted (as <see cref="ReadChunkAsync"/>).</exception>
    public bool TryReadChunk(out ReadOnlyMemory<byte> chunk)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (!_items.Reader.TryPeek(out _))
        {
            chunk = default;
            return false;
        }

        ReleaseCurrent();
        _items.Reader.TryRead(out var item);
        chunk = Take(item!);
        return true;
    }

    private ReadOnlyMemory<byte> Take(Item item)
    {
        switch (item.Kind)
        {
            case ItemKind.Data:
                _current = item.Buffer;
                ChunksRead++;
                BytesRead += item.Length;
                _consumedSinceGrant += item.Length;
                return item.Buffer.AsMemory(0, item.Length);
            case ItemKind.End:
                _items.Writer.TryComplete();
                return ReadOnlyMemory<byte>.Empty;
            default:
                // Stays readable: a second call throws the same failure.
                _items.Writer.TryWrite(item);
                throw item.Failure!;
        }
    }

    /// <summary>Releases buffered chunks; a stream that has not ended is CANCELled at the backend. Idempotent.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        bool wasOpen;
        lock (_lock)
        {
            wasOpen = !_closed;
            _closed = true;
        }

        _owner.RemoveStream(this);
        if (wasOpen)
        {
            _owner.SendCancel(CorrelationId);
        }

        ReturnBuffer(ref _current);
        _items.Writer.TryComplete();
        while (_items.Reader.TryRead(out var item))
        {
            if (item.Buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(item.Buffer);
            }
        }
    }

    /// <summary>Receive loop: a CHUNK. Returns an error text when the chunk breaks the stream (then the stream is failed).</summary>
    internal string? OnChunk(uint sequence, ReadOnlySpan<byte> data)
    {
        lock (_lock)
        {
            if (_closed)
            {
                return null;
            }

            if (sequence != _nextSequence)
            {
                return $"CHUNK sequence {sequence}, expected {_nextSequence}";
            }

            if (_received + data.Length > _granted)
            {
                return $"CHUNK of {data.Length} bytes beyond the credit ({_granted - _received} bytes left)";
            }

            _nextSequence++;
            _received += data.Length;
            var buffer = ArrayPool<byte>.Shared.Rent(data.Length);
            data.CopyTo(buffer);
            _items.Writer.TryWrite(new Item(ItemKind.Data, buffer, data.Length, null));
            return null;
        }
    }

    /// <summary>Receive loop: an END. Returns an error text when the count is wrong.</summary>
    internal string? OnEnd(uint chunkCount)
    {
        lock (_lock)
        {
            if (_closed)
            {
                return null;
            }

            if (chunkCount != _nextSequence)
            {
                return $"END with chunk_count {chunkCount} after {_nextSequence} chunks";
            }

            _closed = true;
            _items.Writer.TryWrite(new Item(ItemKind.End, null, 0, null));
            return null;
        }
    }

    /// <summary>Fails the stream (mid-stream ERROR, protocol violation, client closed). Returns whether it was open.</summary>
    internal bool Fail(DatagramException failure)
    {
        lock (_lock)
        {
            if (_closed)
            {
                return false;
            }

            _closed = true;
            _items.Writer.TryWrite(new Item(ItemKind.Failed, null, 0, failure));
            return true;
        }
    }

    private void ReleaseCurrent()
    {
        ReturnBuffer(ref _current);
        if (_consumedSinceGrant >= _window / 2)
        {
            var grant = (uint)Math.Min(_consumedSinceGrant, ProtocolConstants.MaxCredit);
            _consumedSinceGrant -= grant;
            bool open;
            lock (_lock)
            {
                open = !_closed;
                if (open)
                {
                    _granted += grant;
                }
            }

            if (open)
            {
                _owner.SendStreamControl(MessageKind.Credit, CorrelationId, _attempt, grant);
            }
        }
    }

    private static void ReturnBuffer(ref byte[]? buffer)
    {
        var b = buffer;
        buffer = null;
        if (b is not null)
        {
            ArrayPool<byte>.Shared.Return(b);
        }
    }

    private enum ItemKind
    {
        Data,
        End,
        Failed,
    }

    private readonly record struct Item(ItemKind Kind, byte[]? Buffer, int Length, DatagramException? Failure);
}
