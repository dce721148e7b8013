using System.Buffers;
using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Backend;

/// <summary>
/// The write-only <see cref="Stream"/> a streamed handler writes its body to: each write becomes one or more CHUNKs, never
/// beyond the credit the client granted (docs/protocol.md §4.5.5); a write waits for credit.
/// </summary>
internal sealed class ReplyStreamWriter : Stream
{
    private readonly Func<ReadOnlyMemory<byte>, ValueTask<bool>> _send;
    private readonly ulong _correlationId;
    private readonly ushort _attempt;
    private readonly CancellationToken _stopped;
    private readonly Lock _lock = new();
    private long _credit;
    private TaskCompletionSource? _creditWaiter;
    private uint _sequence;

    /// <param name="send">Sends one CHUNK (its buffer is reused once the returned task completes); false when the client is gone (the stream then ends).</param>
    /// <param name="correlationId">The stream's correlation ID.</param>
    /// <param name="attempt">The request's attempt.</param>
    /// <param name="stopped">Fires on CANCEL, a broken rule or shutdown: no CHUNK is sent after it, whatever token a write got.</param>
    public ReplyStreamWriter(Func<ReadOnlyMemory<byte>, ValueTask<bool>> send, ulong correlationId, ushort attempt, CancellationToken stopped)
    {
        _send = send;
        _correlationId = correlationId;
        _attempt = attempt;
        _stopped = stopped;
    }

    /// <summary>The number of CHUNKs sent.</summary>
    public uint ChunkCount => _sequence;

    /// <summary>The number of body bytes sent.</summary>
    public long BytesSent { get; private set; }

    /// <summary>The most credit the stream held unused at once (for tests: the writer never exceeded it).</summary>
    public long CreditGranted { get; private set; }

    public override bool CanRead => false;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    /// <summary>Receive loop: a CREDIT from the client.</summary>
    public void AddCredit(uint bytes)
    {
        TaskCompletionSource? waiter;
        lock (_lock)
        {
            _credit += bytes;
            CreditGranted += bytes;
            waiter = _creditWaiter;
            _creditWaiter = null;
        }

        waiter?.TrySetResult();
    }

    public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
    {
        while (!buffer.IsEmpty)
        {
            var n = await WaitForCreditAsync(buffer.Length, cancellationToken).ConfigureAwait(false);

            // Credit may have come after a CANCEL (the client's CREDIT and CANCEL cross): a stopped stream sends nothing.
            _stopped.ThrowIfCancellationRequested();
            cancellationToken.ThrowIfCancellationRequested();
            // One pooled buffer per CHUNK, encoded in place (a 64 KiB piece used to cost three allocations and two copies).
            var length = StreamFrames.ChunkDataOffset + n;
            var frame = ArrayPool<byte>.Shared.Rent(length);
            try
            {
                StreamFrames.WriteChunkPrefix(frame, _correlationId, _attempt, _sequence, n);
                buffer.Span[..n].CopyTo(frame.AsSpan(StreamFrames.ChunkDataOffset));
                if (!await _send(frame.AsMemory(0, length)).ConfigureAwait(false))
                {
                    throw new StreamClientGoneException();
                }
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(frame);
            }

            _sequence++;
            BytesSent += n;
            buffer = buffer[n..];
        }
    }

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override void Write(byte[] buffer, int offset, int count) => WriteAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override void Flush()
    {
    }

    public override Task FlushAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    /// <summary>Waits until there is credit; takes up to <paramref name="wanted"/> bytes of it (at most one CHUNK's worth).</summary>
    private async ValueTask<int> WaitForCreditAsync(int wanted, CancellationToken cancellationToken)
    {
        while (true)
        {
            Task wait;
            lock (_lock)
            {
                if (_credit > 0)
                {
                    var n = (int)Math.Min(Math.Min(wanted, ProtocolConstants.MaxChunkData), _credit);
                    _credit -= n;
                    return n;
                }

                _creditWaiter ??= new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
                wait = _creditWaiter.Task;
            }

            await wait.WaitAsync(cancellationToken).WaitAsync(_stopped).ConfigureAwait(false);
        }
    }
}

/// <summary>A CHUNK could not be sent: the client is gone or took nothing for the reply send timeout. The stream ends.</summary>
internal sealed class StreamClientGoneException() : IOException("The client no longer takes this stream's datagrams.");
