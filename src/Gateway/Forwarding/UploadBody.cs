using System.Globalization;
using System.IO.Pipelines;

namespace Gateway.Forwarding;

/// <summary>
/// A request body streamed to a backend (docs/protocol.md §4.5.3): the part the gateway read before it chose to stream
/// (at most <c>StreamBodiesAbove</c> and one read), then the rest as the caller sends it, read only as fast as the
/// backend grants credit. Reading past the route's limit throws <see cref="BodyTooLargeException"/>.
/// </summary>
internal sealed class UploadBody(ReadOnlyMemory<byte> prefix, PipeReader reader, long limit, string routeName) : Stream
{
    private readonly Lock _lock = new();
    private ReadOnlyMemory<byte> _prefix = prefix;
    private long _total = prefix.Length;
    private bool _detached;

    /// <summary>Body bytes read from the caller so far (the part read before streaming included).</summary>
    public long BytesRead => _total;

    /// <summary>Whether the body was read to its end.</summary>
    public bool Completed { get; private set; }

    /// <summary>Whether reading failed (too large, unreadable, the caller gone).</summary>
    public bool Failed { get; private set; }

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (buffer.IsEmpty)
        {
            return 0;
        }

        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_detached, this);
            if (!_prefix.IsEmpty)
            {
                var n = Math.Min(buffer.Length, _prefix.Length);
                _prefix[..n].CopyTo(buffer);
                _prefix = _prefix[n..];
                return n;
            }
        }

        while (true)
        {
            ReadResult result;
            try
            {
                result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            }
            catch
            {
                Failed = true;
                throw;
            }

            var data = result.Buffer;
            if (result.IsCanceled || Volatile.Read(ref _detached))
            {
                // Detached: never taken for the end of the body (an END would make a truncated body look complete).
                reader.AdvanceTo(data.Start);
                throw new OperationCanceledException("The request is over; its body is no longer read.");
            }

            if (data.IsEmpty)
            {
                reader.AdvanceTo(data.End);
                if (result.IsCompleted)
                {
                    Completed = true;
                    return 0;
                }

                continue;
            }

            var n = (int)Math.Min(buffer.Length, data.Length);
            var slice = data.Slice(0, n);
            foreach (var segment in slice)
            {
                segment.Span.CopyTo(buffer.Span);
                buffer = buffer[segment.Length..];
            }

            reader.AdvanceTo(slice.End);
            _total += n;
            if (_total > limit)
            {
                Failed = true;
                throw new BodyTooLargeException(string.Create(CultureInfo.InvariantCulture, $"The body exceeds the {limit} bytes that route '{routeName}' accepts."));
            }

            return n;
        }
    }

    /// <summary>
    /// Ends the body's use before the request ends (its prefix lives in the request's frame buffer, its reader belongs to
    /// Kestrel's request): a later or pending read throws instead of touching either.
    /// </summary>
    public void Detach()
    {
        lock (_lock)
        {
            _detached = true;
            _prefix = default;
        }

        reader.CancelPendingRead();
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("Read the upload asynchronously.");

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

/// <summary>A streamed request body went past its route's limit (413 <c>body-too-large</c>).</summary>
internal sealed class BodyTooLargeException(string message) : Exception(message);
