using System.Buffers;
using System.Buffers.Binary;
using System.Text;
using System.Text.Unicode;

namespace Gateway.Ipc.Protocol;

/// <summary>
/// Encodes one message (header + payload) into a pooled, growable buffer without allocating per message.
/// Reuse an instance with <see cref="Reset"/>; <see cref="Dispose"/> returns the buffer to the pool.
/// </summary>
/// <remarks>
/// Usage: <c>BeginRequest</c>/<c>BeginResponse</c>, then <c>AddHeader</c> for each header, then write the
/// body through <see cref="IBufferWriter{T}"/> or <see cref="WriteBody"/>, then <see cref="Complete"/>.
/// Not thread-safe.
/// </remarks>
public sealed class FrameWriter : IBufferWriter<byte>, IDisposable
{
    private const int DefaultInitialSize = 4096;

    private byte[] _buffer;
    private int _written;
    private int _headerCountOffset = -1;
    private int _headerCount;
    private MessageKind _kind;
    private bool _completed;

    /// <summary>Creates a writer with a rented buffer of at least <paramref name="initialSize"/> bytes.</summary>
    /// <param name="initialSize">Initial capacity.</param>
    public FrameWriter(int initialSize = DefaultInitialSize)
    {
        _buffer = ArrayPool<byte>.Shared.Rent(Math.Max(initialSize, ProtocolConstants.HeaderSize));
    }

    /// <summary>The bytes written so far (the whole frame once <see cref="Complete"/> has run).</summary>
    public ReadOnlyMemory<byte> WrittenMemory => _buffer.AsMemory(0, _written);

    /// <summary>The bytes written so far, writable (for patching attempt and budget on retries).</summary>
    public Span<byte> WrittenSpan => _buffer.AsSpan(0, _written);

    /// <summary>Number of bytes written.</summary>
    public int WrittenCount => _written;

    /// <summary>Number of payload bytes written (excludes the header).</summary>
    public int PayloadLength => _written - ProtocolConstants.HeaderSize;

    /// <summary>Forgets the current message; the buffer is kept.</summary>
    public void Reset()
    {
        _written = 0;
        _headerCountOffset = -1;
        _headerCount = 0;
        _completed = false;
    }

    /// <summary>Starts a REQUEST.</summary>
    /// <param name="correlationId">Non-zero correlation ID.</param>
    /// <param name="attempt">Attempt number.</param>
    /// <param name="budgetMs">Remaining budget in milliseconds (0 = none).</param>
    /// <param name="method">HTTP method, 1–32 ASCII characters.</param>
    /// <param name="target">Path and query, starting with '/'.</param>
    /// <param name="traceParent">W3C traceparent (empty or 55 characters).</param>
    /// <param name="traceState">W3C tracestate (empty or up to 512 characters).</param>
    public void BeginRequest(ulong correlationId, ushort attempt, uint budgetMs, ReadOnlySpan<char> method, ReadOnlySpan<char> target, ReadOnlySpan<char> traceParent = default, ReadOnlySpan<char> traceState = default)
    {
        if (method.IsEmpty || method.Length > ProtocolConstants.MaxMethodLength)
        {
            throw new ArgumentException($"The method must have 1 to {ProtocolConstants.MaxMethodLength} characters.", nameof(method));
        }

        if (target.IsEmpty || target[0] != '/')
        {
            throw new ArgumentException("The target must start with '/'.", nameof(target));
        }

        if (!traceParent.IsEmpty && traceParent.Length != ProtocolConstants.TraceParentLength)
        {
            traceParent = default;
            traceState = default;
        }

        if (traceParent.IsEmpty || traceState.Length > ProtocolConstants.MaxTraceStateLength)
        {
            traceState = default;
        }

        Begin(MessageKind.Request, correlationId, attempt, budgetMs);
        WriteStr8Ascii(method);
        WriteStr16Utf8(target, nameof(target));
        WriteStr8Ascii(traceParent);
        WriteStr16Ascii(traceState);
        BeginHeaders();
    }

    /// <summary>Starts a RESPONSE.</summary>
    /// <param name="correlationId">The request's correlation ID.</param>
    /// <param name="attempt">The request's attempt.</param>
    /// <param name="status">HTTP status, 200–599.</param>
    public void BeginResponse(ulong correlationId, ushort attempt, int status)
    {
        if (status is < 200 or > 599)
        {
            throw new ArgumentOutOfRangeException(nameof(status), status, "The status must be 200–599.");
        }

        Begin(MessageKind.Response, correlationId, attempt, 0);
        BinaryPrimitives.WriteUInt16BigEndian(GetSpan(2), (ushort)status);
        Advance(2);
        BeginHeaders();
    }

    /// <summary>Starts a RESPONSE_HEAD (the head of a streamed reply): status and headers, no body.</summary>
    /// <param name="correlationId">The request's correlation ID.</param>
    /// <param name="attempt">The request's attempt.</param>
    /// <param name="status">HTTP status, 200–599.</param>
    public void BeginResponseHead(ulong correlationId, ushort attempt, int status)
    {
        BeginResponse(correlationId, attempt, status);
        _kind = MessageKind.ResponseHead;
        _buffer[3] = (byte)MessageKind.ResponseHead;
    }

    /// <summary>
    /// Starts a REQUEST_HEAD (a request whose body follows as CHUNKs): as <see cref="BeginRequest"/>, but no body may
    /// be written. Send it only to a backend that announced <see cref="StreamFeatures.StreamRequest"/>.
    /// </summary>
    /// <param name="correlationId">Non-zero correlation ID.</param>
    /// <param name="attempt">Attempt number.</param>
    /// <param name="budgetMs">Remaining budget in milliseconds (0 = none).</param>
    /// <param name="method">HTTP method, 1–32 ASCII characters.</param>
    /// <param name="target">Path and query, starting with '/'.</param>
    /// <param name="traceParent">W3C traceparent (empty or 55 characters).</param>
    /// <param name="traceState">W3C tracestate (empty or up to 512 characters).</param>
    public void BeginRequestHead(ulong correlationId, ushort attempt, uint budgetMs, ReadOnlySpan<char> method, ReadOnlySpan<char> target, ReadOnlySpan<char> traceParent = default, ReadOnlySpan<char> traceState = default)
    {
        BeginRequest(correlationId, attempt, budgetMs, method, target, traceParent, traceState);
        _kind = MessageKind.RequestHead;
        _buffer[3] = (byte)MessageKind.RequestHead;
    }

    /// <summary>Sets the <c>features</c> byte of the message being written (PING, PONG, REQUEST, REQUEST_HEAD).</summary>
    /// <param name="features">The features.</param>
    public void SetFeatures(StreamFeatures features)
    {
        if (_written < ProtocolConstants.HeaderSize)
        {
            throw new InvalidOperationException("No message has been started.");
        }

        _buffer[5] = (byte)features;
    }

    /// <summary>Writes a whole CHUNK message of a stream.</summary>
    /// <param name="correlationId">The stream's correlation ID.</param>
    /// <param name="attempt">The request's attempt.</param>
    /// <param name="sequence">0 for the stream's first chunk, then +1 per chunk.</param>
    /// <param name="data">1 to <see cref="ProtocolConstants.MaxChunkData"/> bytes.</param>
    public void WriteChunk(ulong correlationId, ushort attempt, uint sequence, ReadOnlySpan<byte> data)
    {
        if (data.IsEmpty || data.Length > ProtocolConstants.MaxChunkData)
        {
            throw new ArgumentOutOfRangeException(nameof(data), data.Length, $"A chunk carries 1 to {ProtocolConstants.MaxChunkData} bytes.");
        }

        Begin(MessageKind.Chunk, correlationId, attempt, 0);
        var span = GetSpan(4 + data.Length);
        BinaryPrimitives.WriteUInt32BigEndian(span, sequence);
        data.CopyTo(span[4..]);
        Advance(4 + data.Length);
        Complete();
    }

    /// <summary>Writes a whole END or CREDIT message.</summary>
    /// <param name="kind"><see cref="MessageKind.End"/> or <see cref="MessageKind.Credit"/>.</param>
    /// <param name="correlationId">The stream's correlation ID.</param>
    /// <param name="attempt">The request's attempt.</param>
    /// <param name="value">END: the number of chunks sent; CREDIT: the bytes granted (1 to <see cref="int.MaxValue"/>).</param>
    public void WriteStreamControl(MessageKind kind, ulong correlationId, ushort attempt, uint value)
    {
        Begin(kind, correlationId, attempt, 0);
        StreamFrames.WriteValue(kind, value, GetSpan(4));
        Advance(4);
        Complete();
    }

    /// <summary>Writes a whole ERROR message.</summary>
    /// <param name="correlationId">The request's correlation ID.</param>
    /// <param name="attempt">The request's attempt.</param>
    /// <param name="code">The error code.</param>
    /// <param name="message">A human-readable reason; truncated to 1,024 UTF-8 bytes.</param>
    public void WriteError(ulong correlationId, ushort attempt, IpcErrorCode code, ReadOnlySpan<char> message)
    {
        Begin(MessageKind.Error, correlationId, attempt, 0);
        BinaryPrimitives.WriteUInt16BigEndian(GetSpan(2), (ushort)code);
        Advance(2);
        var max = Math.Min(Encoding.UTF8.GetMaxByteCount(message.Length), ProtocolConstants.MaxErrorMessageLength + 4);
        var span = GetSpan(2 + max);
        var n = Utf8Truncate(message, span[2..(2 + max)], ProtocolConstants.MaxErrorMessageLength);
        BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)n);
        Advance(2 + n);
        Complete();
    }

    /// <summary>Writes a whole PING, PONG or CANCEL message (empty payload).</summary>
    /// <param name="kind">PING, PONG or CANCEL.</param>
    /// <param name="correlationId">Correlation ID.</param>
    /// <param name="attempt">Attempt.</param>
    public void WriteControl(MessageKind kind, ulong correlationId, ushort attempt = 0) => WriteControl(kind, correlationId, attempt, StreamFeatures.None);

    /// <summary>Writes a whole PING, PONG or CANCEL message (empty payload) with a <c>features</c> byte (PING, PONG).</summary>
    /// <param name="kind">PING, PONG or CANCEL.</param>
    /// <param name="correlationId">Correlation ID.</param>
    /// <param name="attempt">Attempt.</param>
    /// <param name="features">The features announced (0 for CANCEL).</param>
    public void WriteControl(MessageKind kind, ulong correlationId, ushort attempt, StreamFeatures features)
    {
        if (kind is not (MessageKind.Ping or MessageKind.Pong or MessageKind.Cancel))
        {
            throw new ArgumentOutOfRangeException(nameof(kind), kind, "Only PING, PONG and CANCEL have empty payloads.");
        }

        Begin(kind, correlationId, attempt, 0);
        _buffer[5] = kind == MessageKind.Cancel ? (byte)0 : (byte)features;
        Complete();
    }

    /// <summary>Adds a header field; the name is written in lower case.</summary>
    /// <param name="name">1–255 ASCII characters.</param>
    /// <param name="value">The value (UTF-8, at most 65,535 bytes).</param>
    public void AddHeader(ReadOnlySpan<char> name, ReadOnlySpan<char> value)
    {
        if (_headerCountOffset < 0)
        {
            throw new InvalidOperationException("Headers can only follow BeginRequest or BeginResponse.");
        }

        if (_headerCount == ushort.MaxValue)
        {
            throw new InvalidOperationException("A message carries at most 65,535 header fields.");
        }

        if (name.IsEmpty || name.Length > byte.MaxValue)
        {
            throw new ArgumentException("A header name must have 1 to 255 characters.", nameof(name));
        }

        var span = GetSpan(1 + name.Length);
        span[0] = (byte)name.Length;
        for (var i = 0; i < name.Length; i++)
        {
            var c = name[i];
            if (c > 0x7f)
            {
                throw new ArgumentException("A header name must be ASCII.", nameof(name));
            }

            span[1 + i] = (byte)(c is >= 'A' and <= 'Z' ? c + 32 : c);
        }

        Advance(1 + name.Length);
        WriteStr16Utf8(value, nameof(value));
        _headerCount++;
    }

    /// <summary>Adds a header field whose name is already lower-case ASCII bytes and whose value is bytes.</summary>
    /// <param name="name">Lower-case ASCII name, 1–255 bytes.</param>
    /// <param name="value">Value bytes, at most 65,535.</param>
    public void AddHeader(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        if (_headerCountOffset < 0)
        {
            throw new InvalidOperationException("Headers can only follow BeginRequest or BeginResponse.");
        }

        if (name.IsEmpty || name.Length > byte.MaxValue || value.Length > ushort.MaxValue || _headerCount == ushort.MaxValue)
        {
            throw new ArgumentException("A header name must have 1 to 255 bytes and a value at most 65,535.", nameof(name));
        }

        var span = GetSpan(3 + name.Length + value.Length);
        span[0] = (byte)name.Length;
        name.CopyTo(span[1..]);
        BinaryPrimitives.WriteUInt16BigEndian(span[(1 + name.Length)..], (ushort)value.Length);
        value.CopyTo(span[(3 + name.Length)..]);
        Advance(3 + name.Length + value.Length);
        _headerCount++;
    }

    /// <summary>Appends body bytes (after the headers).</summary>
    /// <param name="body">The bytes.</param>
    public void WriteBody(ReadOnlySpan<byte> body)
    {
        body.CopyTo(GetSpan(body.Length));
        Advance(body.Length);
    }

    /// <summary>Finishes the message: patches the header count and <c>payload_length</c>.</summary>
    /// <returns>The encoded message.</returns>
    public ReadOnlyMemory<byte> Complete()
    {
        if (_completed)
        {
            return WrittenMemory;
        }

        if (_written < ProtocolConstants.HeaderSize)
        {
            throw new InvalidOperationException("No message has been started.");
        }

        if (_headerCountOffset >= 0)
        {
            BinaryPrimitives.WriteUInt16BigEndian(_buffer.AsSpan(_headerCountOffset), (ushort)_headerCount);
        }

        BinaryPrimitives.WriteUInt32BigEndian(_buffer.AsSpan(20), (uint)(_written - ProtocolConstants.HeaderSize));
        _completed = true;
        return WrittenMemory;
    }

    /// <summary>The kind of the message being written.</summary>
    public MessageKind Kind => _kind;

    /// <inheritdoc/>
    public void Advance(int count)
    {
        if ((uint)count > (uint)(_buffer.Length - _written))
        {
            throw new ArgumentOutOfRangeException(nameof(count));
        }

        _written += count;
    }

    /// <inheritdoc/>
    public Memory<byte> GetMemory(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsMemory(_written);
    }

    /// <inheritdoc/>
    public Span<byte> GetSpan(int sizeHint = 0)
    {
        Ensure(sizeHint);
        return _buffer.AsSpan(_written);
    }

    /// <summary>Returns the buffer to the pool.</summary>
    public void Dispose()
    {
        var buffer = _buffer;
        _buffer = [];
        _written = 0;
        if (buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private void Begin(MessageKind kind, ulong correlationId, ushort attempt, uint budgetMs)
    {
        if (correlationId == 0)
        {
            throw new ArgumentOutOfRangeException(nameof(correlationId), "The correlation ID must not be 0.");
        }

        Reset();
        _kind = kind;
        new FrameHeader(kind, MessageFlags.None, attempt, correlationId, budgetMs, 0).Write(GetSpan(ProtocolConstants.HeaderSize));
        Advance(ProtocolConstants.HeaderSize);
    }

    private void BeginHeaders()
    {
        _headerCountOffset = _written;
        GetSpan(2);
        Advance(2);
    }

    private void Ensure(int sizeHint)
    {
        if (sizeHint < 1)
        {
            sizeHint = 1;
        }

        if (_buffer.Length - _written >= sizeHint)
        {
            return;
        }

        var newSize = Math.Max(_buffer.Length * 2, _written + sizeHint);
        var next = ArrayPool<byte>.Shared.Rent(newSize);
        _buffer.AsSpan(0, _written).CopyTo(next);
        if (_buffer.Length > 0)
        {
            ArrayPool<byte>.Shared.Return(_buffer);
        }

        _buffer = next;
    }

    private void WriteStr8Ascii(ReadOnlySpan<char> value)
    {
        var span = GetSpan(1 + value.Length);
        span[0] = (byte)value.Length;
        if (Ascii.FromUtf16(value, span[1..], out _) != OperationStatus.Done)
        {
            throw new ArgumentException("The field must be ASCII.", nameof(value));
        }

        Advance(1 + value.Length);
    }

    private void WriteStr16Ascii(ReadOnlySpan<char> value)
    {
        var span = GetSpan(2 + value.Length);
        BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)value.Length);
        if (Ascii.FromUtf16(value, span[2..], out _) != OperationStatus.Done)
        {
            throw new ArgumentException("The field must be ASCII.", nameof(value));
        }

        Advance(2 + value.Length);
    }

    private void WriteStr16Utf8(ReadOnlySpan<char> value, string paramName)
    {
        int byteCount;
        if (Ascii.IsValid(value))
        {
            byteCount = value.Length;
            if (byteCount > ushort.MaxValue)
            {
                throw new ArgumentException("The field is longer than 65,535 bytes.", paramName);
            }

            var span = GetSpan(2 + byteCount);
            Ascii.FromUtf16(value, span[2..], out _);
            BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)byteCount);
        }
        else
        {
            byteCount = Encoding.UTF8.GetByteCount(value);
            if (byteCount > ushort.MaxValue)
            {
                throw new ArgumentException("The field is longer than 65,535 bytes.", paramName);
            }

            var span = GetSpan(2 + byteCount);
            Encoding.UTF8.GetBytes(value, span[2..]);
            BinaryPrimitives.WriteUInt16BigEndian(span, (ushort)byteCount);
        }

        Advance(2 + byteCount);
    }

    private static int Utf8Truncate(ReadOnlySpan<char> value, Span<byte> destination, int maxBytes)
    {
        Utf8.FromUtf16(value, destination, out _, out var written, replaceInvalidSequences: true, isFinalBlock: true);
        if (written <= maxBytes)
        {
            return written;
        }

        // Cut at a character boundary: back up over UTF-8 continuation bytes.
        var n = maxBytes;
        while (n > 0 && (destination[n] & 0xC0) == 0x80)
        {
            n--;
        }

        return n;
    }
}
