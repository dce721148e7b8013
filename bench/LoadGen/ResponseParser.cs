using System.Buffers.Text;
using System.Text;

namespace Gateway.Bench.LoadGen;

internal enum ParseResult
{
    NeedMore,
    Done,
    Malformed,
}

/// <summary>
/// Incremental HTTP/1.1 response parser: status line, <c>Content-Length</c> or <c>Transfer-Encoding: chunked</c>,
/// <c>Connection: close</c>. The header block must fit the connection's receive buffer; body bytes are
/// checked against an expected body (optional) and discarded. No allocation.
/// </summary>
internal struct ResponseParser
{
    private enum State
    {
        Headers,
        Body,
        ChunkSize,
        ChunkExtension,
        ChunkSizeLf,
        ChunkData,
        ChunkDataCr,
        ChunkDataLf,
        TrailerLineStart,
        TrailerLine,
        TrailerEndLf,
        Done,
    }

    private State _state;
    private long _remaining;
    private long _bodyPosition;

    public int Status { get; private set; }

    public bool ConnectionClose { get; private set; }

    /// <summary>False once a body byte differed from the expected body.</summary>
    public bool BodyMatches { get; private set; }

    public void Reset()
    {
        _state = State.Headers;
        _remaining = 0;
        _bodyPosition = 0;
        Status = 0;
        ConnectionClose = false;
        BodyMatches = true;
    }

    /// <summary>
    /// Tries to parse the header block at the start of <paramref name="buffer"/>.
    /// Returns the header length (bytes consumed), 0 if incomplete, -1 if malformed.
    /// </summary>
    public int ParseHeaders(ReadOnlySpan<byte> buffer)
    {
        var end = buffer.IndexOf("\r\n\r\n"u8);
        if (end < 0)
        {
            return 0;
        }

        var block = buffer[..end];
        var lineEnd = block.IndexOf("\r\n"u8);
        var statusLine = lineEnd < 0 ? block : block[..lineEnd];
        if (statusLine.Length < 12 || !statusLine.StartsWith("HTTP/1."u8) || statusLine[8] != (byte)' '
            || !Utf8Parser.TryParse(statusLine.Slice(9, 3), out int status, out var used) || used != 3)
        {
            return -1;
        }

        Status = status;
        long contentLength = -1;
        var chunked = false;
        var rest = lineEnd < 0 ? [] : block[(lineEnd + 2)..];
        while (!rest.IsEmpty)
        {
            var next = rest.IndexOf("\r\n"u8);
            var line = next < 0 ? rest : rest[..next];
            rest = next < 0 ? [] : rest[(next + 2)..];
            var colon = line.IndexOf((byte)':');
            if (colon <= 0)
            {
                return -1;
            }

            var name = line[..colon];
            var value = line[(colon + 1)..].Trim((byte)' ');
            if (Ascii.EqualsIgnoreCase(name, "content-length"u8))
            {
                if (!Utf8Parser.TryParse(value, out contentLength, out used) || used != value.Length || contentLength < 0)
                {
                    return -1;
                }
            }
            else if (Ascii.EqualsIgnoreCase(name, "transfer-encoding"u8))
            {
                chunked = value.IndexOf("chunked"u8) >= 0;
            }
            else if (Ascii.EqualsIgnoreCase(name, "connection"u8))
            {
                ConnectionClose = Ascii.EqualsIgnoreCase(value, "close"u8);
            }
        }

        if (chunked)
        {
            _state = State.ChunkSize;
            _remaining = 0;
        }
        else if (contentLength >= 0)
        {
            _remaining = contentLength;
            _state = contentLength == 0 ? State.Done : State.Body;
        }
        else if (status is 204 or 304 or (>= 100 and < 200))
        {
            _state = State.Done;
        }
        else
        {
            // Read-until-close bodies defeat keep-alive: the harness does not accept them.
            return -1;
        }

        return end + 4;
    }

    public readonly bool IsDone => _state == State.Done;

    /// <summary>Feeds body bytes (all of <paramref name="data"/> belongs to this response or is an error).</summary>
    public ParseResult ParseBody(ReadOnlySpan<byte> data, ReadOnlySpan<byte> expected, bool verify)
    {
        var i = 0;
        while (i < data.Length)
        {
            switch (_state)
            {
                case State.Body:
                case State.ChunkData:
                {
                    var n = (int)Math.Min(_remaining, data.Length - i);
                    if (verify)
                    {
                        Check(data.Slice(i, n), expected);
                    }

                    _bodyPosition += n;
                    _remaining -= n;
                    i += n;
                    if (_remaining == 0)
                    {
                        _state = _state == State.Body ? State.Done : State.ChunkDataCr;
                    }

                    break;
                }

                case State.ChunkSize:
                {
                    var b = data[i++];
                    var digit = HexValue(b);
                    if (digit >= 0)
                    {
                        if (_remaining > (long.MaxValue >> 5))
                        {
                            return ParseResult.Malformed;
                        }

                        _remaining = (_remaining << 4) | (long)digit;
                    }
                    else if (b == (byte)';')
                    {
                        _state = State.ChunkExtension;
                    }
                    else if (b == (byte)'\r')
                    {
                        _state = State.ChunkSizeLf;
                    }
                    else
                    {
                        return ParseResult.Malformed;
                    }

                    break;
                }

                case State.ChunkExtension:
                    if (data[i++] == (byte)'\r')
                    {
                        _state = State.ChunkSizeLf;
                    }

                    break;
                case State.ChunkSizeLf:
                    if (data[i++] != (byte)'\n')
                    {
                        return ParseResult.Malformed;
                    }

                    _state = _remaining == 0 ? State.TrailerLineStart : State.ChunkData;
                    break;
                case State.ChunkDataCr:
                    if (data[i++] != (byte)'\r')
                    {
                        return ParseResult.Malformed;
                    }

                    _state = State.ChunkDataLf;
                    break;
                case State.ChunkDataLf:
                    if (data[i++] != (byte)'\n')
                    {
                        return ParseResult.Malformed;
                    }

                    _state = State.ChunkSize;
                    break;
                case State.TrailerLineStart:
                    _state = data[i++] == (byte)'\r' ? State.TrailerEndLf : State.TrailerLine;
                    break;
                case State.TrailerLine:
                    if (data[i++] == (byte)'\n')
                    {
                        _state = State.TrailerLineStart;
                    }

                    break;
                case State.TrailerEndLf:
                    if (data[i++] != (byte)'\n')
                    {
                        return ParseResult.Malformed;
                    }

                    _state = State.Done;
                    break;
                default:
                    // Bytes after the end of the response: the harness never pipelines, so this is an error.
                    return ParseResult.Malformed;
            }
        }

        if (_state != State.Done)
        {
            return ParseResult.NeedMore;
        }

        if (verify && _bodyPosition != expected.Length)
        {
            BodyMatches = false;
        }

        return ParseResult.Done;
    }

    private void Check(ReadOnlySpan<byte> chunk, ReadOnlySpan<byte> expected)
    {
        if (!BodyMatches)
        {
            return;
        }

        if (_bodyPosition + chunk.Length > expected.Length
            || !chunk.SequenceEqual(expected.Slice((int)_bodyPosition, chunk.Length)))
        {
            BodyMatches = false;
        }
    }

    private static int HexValue(byte b) => b switch
    {
        >= (byte)'0' and <= (byte)'9' => b - '0',
        >= (byte)'a' and <= (byte)'f' => b - 'a' + 10,
        >= (byte)'A' and <= (byte)'F' => b - 'A' + 10,
        _ => -1,
    };
}
