using System.Buffers;
using System.Threading.Channels;
using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Backend;

/// <summary>
/// The body of a streamed request (docs/protocol.md §4.5.3) as the handler reads it: the CHUNKs of the upload in order,
/// then end of stream at END. The receive loop adds chunks; the handler reads them.
/// </summary>
/// <remarks>
/// Flow control: the backend grants the client a window when the handler starts (<see cref="GrantInitial"/>), then grants
/// what the handler has read once that is at least half a window. So the backend never holds more than one window of a
/// request's body, and a handler that reads slowly makes only its own upload wait. A CHUNK beyond the credit, out of
/// sequence, or an END with the wrong count breaks the upload: the read throws <see cref="InvalidDataException"/> and
/// the backend answers ERROR <c>MALFORMED</c>.
/// </remarks>
internal sealed class RequestBodyStream : Stream
{
    private readonly Channel<Item> _items = Channel.CreateUnbounded<Item>(new UnboundedChannelOptions { SingleReader = true, SingleWriter = false });
    private readonly Lock _lock = new();
    private readonly Action<uint> _grant;
    private readonly int _window;

    // Receive-loop side (under _lock).
    private long _granted;
    private long _received;
    private uint _nextSequence;
    private bool _closed; // END, violation, abort or dispose: no more items

    // Reader side.
    private byte[]? _current;
    private int _currentOffset;
    private int _currentLength;
    private long _consumedSinceGrant;
    private bool _ended;
    private Exception? _failure;
    private int _disposed;

    /// <param name="grant">Sends a CREDIT of the given bytes to the client (never throws).</param>
    /// <param name="window">The window: the first grant, and twice the amount read before the next one.</param>
    public RequestBodyStream(Action<uint> grant, int window)
    {
        _grant = grant;
        _window = window;
    }

    /// <summary>The protocol violation that broke the upload, if any (the reply is then ERROR <c>MALFORMED</c>).</summary>
    public string? Violation { get; private set; }

    /// <summary>Body bytes the handler has read.</summary>
    public long BytesRead { get; private set; }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException("A streamed request body has no known length.");

    public override long Position
    {
        get => BytesRead;
        set => throw new NotSupportedException();
    }

    /// <summary>Grants the first window (when the handler starts).</summary>
    public void GrantInitial()
    {
        lock (_lock)
        {
            if (_closed || _granted != 0)
            {
                return;
            }

            _granted = _window;
        }

        _grant((uint)_window);
    }

    /// <summary>Receive loop: a CHUNK. Returns an error text when it breaks the upload (which is then failed).</summary>
    public string? OnChunk(uint sequence, ReadOnlySpan<byte> data)
    {
        string? violation = null;
        lock (_lock)
        {
            if (_closed)
            {
                return null;
            }

            if (sequence != _nextSequence)
            {
                violation = $"CHUNK sequence {sequence}, expected {_nextSequence}";
            }
            else if (_received + data.Length > _granted)
            {
                violation = $"CHUNK of {data.Length} bytes beyond the credit ({_granted - _received} bytes left)";
            }
            else
            {
                _nextSequence++;
                _received += data.Length;
                var buffer = ArrayPool<byte>.Shared.Rent(data.Length);
                data.CopyTo(buffer);
                _items.Writer.TryWrite(new Item(buffer, data.Length, null));
                return null;
            }
        }

        Break(violation!);
        return violation;
    }

    /// <summary>Breaks the upload for a protocol violation: a read throws <see cref="InvalidDataException"/>.</summary>
    public void Break(string violation) =>
        FailCore(violation, new InvalidDataException($"The streamed request body broke the protocol: {violation}."));

    /// <summary>Receive loop: an END. Returns an error text when the count is wrong (the upload is then failed).</summary>
    public string? OnEnd(uint chunkCount)
    {
        string violation;
        lock (_lock)
        {
            if (_closed)
            {
                return null;
            }

            if (chunkCount == _nextSequence)
            {
                _closed = true;
                _items.Writer.TryComplete();
                return null;
            }

            violation = $"END with chunk_count {chunkCount} after {_nextSequence} chunks";
        }

        Break(violation);
        return violation;
    }

    /// <summary>Fails the upload (client CANCEL, shutdown): a waiting or later read throws <paramref name="failure"/>.</summary>
    public void Abort(Exception failure) => FailCore(null, failure);

    private void FailCore(string? violation, Exception failure)
    {
        lock (_lock)
        {
            if (_closed)
            {
                return;
            }

            _closed = true;
            Violation = violation;
            _items.Writer.TryWrite(new Item(null, 0, failure));
            _items.Writer.TryComplete();
        }
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (buffer.IsEmpty)
        {
            return 0;
        }

        while (_current is null)
        {
            if (_failure is not null)
            {
                throw _failure;
            }

            if (_ended)
            {
                return 0;
            }

            if (!await _items.Reader.WaitToReadAsync(cancellationToken).ConfigureAwait(false))
            {
                _ended = true;
                return 0;
            }

            if (!_items.Reader.TryRead(out var item))
            {
                continue;
            }

            if (item.Failure is not null)
            {
                // Stays failed: a later read throws the same failure.
                _failure = item.Failure;
                continue;
            }

            _current = item.Buffer;
            _currentOffset = 0;
            _currentLength = item.Length;
        }

        var n = Math.Min(buffer.Length, _currentLength - _currentOffset);
        _current.AsSpan(_currentOffset, n).CopyTo(buffer.Span);
        _currentOffset += n;
        BytesRead += n;
        _consumedSinceGrant += n;
        if (_currentOffset == _currentLength)
        {
            ArrayPool<byte>.Shared.Return(_current);
            _current = null;
        }

        MaybeGrant();
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override int Read(Span<byte> buffer)
    {
        var rented = ArrayPool<byte>.Shared.Rent(buffer.Length);
        try
        {
            var n = ReadAsync(rented.AsMemory(0, buffer.Length)).AsTask().GetAwaiter().GetResult();
            rented.AsSpan(0, n).CopyTo(buffer);
            return n;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(rented);
        }
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    private void MaybeGrant()
    {
        if (_consumedSinceGrant < _window / 2)
        {
            return;
        }

        var grant = (uint)Math.Min(_consumedSinceGrant, ProtocolConstants.MaxCredit);
        _consumedSinceGrant -= grant;
        lock (_lock)
        {
            if (_closed)
            {
                return;
            }

            _granted += grant;
        }

        _grant(grant);
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing && Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            lock (_lock)
            {
                _closed = true;
                _items.Writer.TryComplete();
            }

            if (_current is not null)
            {
                ArrayPool<byte>.Shared.Return(_current);
                _current = null;
            }

            while (_items.Reader.TryRead(out var item))
            {
                if (item.Buffer is not null)
                {
                    ArrayPool<byte>.Shared.Return(item.Buffer);
                }
            }
        }

        base.Dispose(disposing);
    }

    private readonly record struct Item(byte[]? Buffer, int Length, Exception? Failure);
}
