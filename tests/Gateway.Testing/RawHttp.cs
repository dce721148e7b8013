using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace Gateway.Testing;

/// <summary>A response read by <see cref="RawHttp"/>: status, header fields (names lower-cased) and body.</summary>
public sealed record RawHttpResponse(int Status, IReadOnlyList<KeyValuePair<string, string>> Headers, byte[] Body)
{
    public string? Header(string name) => Headers.FirstOrDefault(h => string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)).Value;

    public string BodyText => Encoding.UTF8.GetString(Body);
}

/// <summary>
/// HTTP/1.1 over a Unix socket with the request written byte for byte: HttpClient (and curl) normalise the target
/// (dot segments, percent-encoding), so tests of what the gateway does with a raw target need this.
/// </summary>
public static class RawHttp
{
    /// <summary>Sends <c>METHOD target HTTP/1.1</c> with <c>Host</c> and <c>Connection: close</c>, and reads the response.</summary>
    public static Task<RawHttpResponse> SendAsync(string socketPath, string method, string target, CancellationToken cancellationToken = default) =>
        SendAsync(socketPath, Encoding.Latin1.GetBytes($"{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"), method == "HEAD", cancellationToken);

    /// <summary>Writes <paramref name="request"/> as is and reads one response (no body after a HEAD, 1xx, 204 or 304).</summary>
    public static async Task<RawHttpResponse> SendAsync(string socketPath, byte[] request, bool head = false, CancellationToken cancellationToken = default)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cancellationToken);
        await using var stream = new NetworkStream(socket, ownsSocket: false);
        await stream.WriteAsync(request, cancellationToken);
        return await ReadResponseAsync(stream, head, cancellationToken);
    }

    /// <summary>Reads one HTTP/1.1 response, strictly: a malformed status line, header or framing throws.</summary>
    public static async Task<RawHttpResponse> ReadResponseAsync(Stream stream, bool head, CancellationToken cancellationToken = default)
    {
        var reader = new ByteReader(stream);
        var statusLine = await reader.ReadLineAsync(cancellationToken) ?? throw new InvalidDataException("The connection closed before a status line.");
        if (statusLine.Length < 12 || !statusLine.StartsWith("HTTP/1.1 ", StringComparison.Ordinal) || statusLine[12..].Length > 0 && statusLine[12] != ' ')
        {
            throw new InvalidDataException($"Malformed status line '{statusLine}'.");
        }

        var status = int.Parse(statusLine.AsSpan(9, 3), NumberStyles.None, CultureInfo.InvariantCulture);
        var headers = new List<KeyValuePair<string, string>>();
        while (await reader.ReadLineAsync(cancellationToken) is { Length: > 0 } line)
        {
            var colon = line.IndexOf(':', StringComparison.Ordinal);
            if (colon <= 0)
            {
                throw new InvalidDataException($"Malformed header line '{line}'.");
            }

            headers.Add(new(line[..colon].ToLowerInvariant(), line[(colon + 1)..].Trim(' ', '\t')));
        }

        byte[] body;
        var length = headers.Where(h => h.Key == "content-length").Select(h => h.Value).ToList();
        var chunked = headers.Any(h => h.Key == "transfer-encoding" && h.Value.Contains("chunked", StringComparison.OrdinalIgnoreCase));
        if (head || status is (>= 100 and < 200) or 204 or 304)
        {
            body = [];
        }
        else if (chunked)
        {
            var buffer = new MemoryStream();
            while (true)
            {
                var size = await reader.ReadLineAsync(cancellationToken) ?? throw new InvalidDataException("The connection closed inside a chunked body.");
                var n = int.Parse(size.Split(';')[0], NumberStyles.HexNumber, CultureInfo.InvariantCulture);
                if (n == 0)
                {
                    while (await reader.ReadLineAsync(cancellationToken) is { Length: > 0 })
                    {
                    }

                    break;
                }

                buffer.Write(await reader.ReadExactlyAsync(n, cancellationToken));
                if (await reader.ReadLineAsync(cancellationToken) is not { Length: 0 })
                {
                    throw new InvalidDataException("A chunk is not followed by CRLF.");
                }
            }

            body = buffer.ToArray();
        }
        else if (length.Count > 0)
        {
            if (length.Distinct().Count() != 1)
            {
                throw new InvalidDataException("Conflicting Content-Length fields.");
            }

            body = await reader.ReadExactlyAsync(int.Parse(length[0], NumberStyles.None, CultureInfo.InvariantCulture), cancellationToken);
        }
        else
        {
            body = await reader.ReadToEndAsync(cancellationToken);
        }

        return new RawHttpResponse(status, headers, body);
    }

    private sealed class ByteReader(Stream stream)
    {
        private readonly byte[] _buffer = new byte[16 * 1024];
        private int _start;
        private int _end;

        public async Task<string?> ReadLineAsync(CancellationToken cancellationToken)
        {
            var line = new List<byte>();
            while (true)
            {
                if (_start == _end && !await FillAsync(cancellationToken))
                {
                    return line.Count == 0 ? null : throw new InvalidDataException("The connection closed inside a line.");
                }

                var b = _buffer[_start++];
                if (b == '\n')
                {
                    if (line.Count == 0 || line[^1] != '\r')
                    {
                        throw new InvalidDataException("A line ends with LF alone.");
                    }

                    return Encoding.Latin1.GetString(line.ToArray(), 0, line.Count - 1);
                }

                line.Add(b);
            }
        }

        public async Task<byte[]> ReadExactlyAsync(int count, CancellationToken cancellationToken)
        {
            var result = new byte[count];
            var written = 0;
            while (written < count)
            {
                if (_start == _end && !await FillAsync(cancellationToken))
                {
                    throw new InvalidDataException($"The connection closed after {written} of {count} body bytes.");
                }

                var n = Math.Min(count - written, _end - _start);
                Array.Copy(_buffer, _start, result, written, n);
                _start += n;
                written += n;
            }

            return result;
        }

        public async Task<byte[]> ReadToEndAsync(CancellationToken cancellationToken)
        {
            var result = new MemoryStream();
            result.Write(_buffer, _start, _end - _start);
            _start = _end;
            await stream.CopyToAsync(result, cancellationToken);
            return result.ToArray();
        }

        private async Task<bool> FillAsync(CancellationToken cancellationToken)
        {
            _start = 0;
            _end = await stream.ReadAsync(_buffer, cancellationToken);
            return _end > 0;
        }
    }
}
