using System.Globalization;
using System.Text;

namespace Gateway.Tests.Forwarding;

/// <summary>One HTTP/1.1 response as it came off the wire.</summary>
internal sealed record Http11Response(int Status, IReadOnlyList<(string Name, string Value)> Headers, byte[] Body)
{
    public IEnumerable<string> GetAll(string name) =>
        Headers.Where(h => h.Name.Equals(name, StringComparison.OrdinalIgnoreCase)).Select(h => h.Value);

    public string? Get(string name) => GetAll(name).FirstOrDefault();
}

/// <summary>
/// A strict parser of exactly one HTTP/1.1 response (RFC 9112) from the bytes of a connection read to its end: status
/// line, header fields whose names are tokens and whose values are visible ASCII, space and tab (no obs-fold, no
/// obs-text, CRLF only), and framing that accounts for every byte: no content for 1xx/204/304 or a HEAD request, no
/// Content-Length on 204, never both Content-Length and Transfer-Encoding, Transfer-Encoding only <c>chunked</c>, a
/// valid chunked body, and nothing after the response. Throws <see cref="FormatException"/> with the reason.
/// </summary>
internal static class Http11ResponseParser
{
    private const string TChars = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    public static Http11Response Parse(ReadOnlySpan<byte> data, bool headRequest)
    {
        var position = 0;
        var statusLine = ReadLine(data, ref position, "status line");
        if (statusLine.Length < 13 || !statusLine.StartsWith("HTTP/1.1 "u8) || statusLine[12] != (byte)' ')
        {
            throw new FormatException($"bad status line \"{Show(statusLine)}\"");
        }

        var code = statusLine[9..12];
        foreach (var digit in code)
        {
            if (digit is < (byte)'0' or > (byte)'9')
            {
                throw new FormatException($"bad status code in \"{Show(statusLine)}\"");
            }
        }

        var status = int.Parse(Encoding.ASCII.GetString(code), CultureInfo.InvariantCulture);
        if (status is < 200 or > 599)
        {
            throw new FormatException($"status {status}: a final response is 200–599 here (the gateway sends no 1xx)");
        }

        foreach (var b in statusLine[13..])
        {
            if (!IsFieldByte(b))
            {
                throw new FormatException($"byte 0x{b:x2} in the reason phrase");
            }
        }

        var headers = new List<(string, string)>();
        while (true)
        {
            var line = ReadLine(data, ref position, "header field");
            if (line.IsEmpty)
            {
                break;
            }

            if (line[0] is (byte)' ' or (byte)'\t')
            {
                throw new FormatException("obs-fold (a line starting with whitespace)");
            }

            var colon = line.IndexOf((byte)':');
            if (colon <= 0)
            {
                throw new FormatException($"header line without a name: \"{Show(line)}\"");
            }

            foreach (var b in line[..colon])
            {
                if (b >= 0x80 || !TChars.Contains((char)b, StringComparison.Ordinal))
                {
                    throw new FormatException($"byte 0x{b:x2} in header name \"{Show(line[..colon])}\"");
                }
            }

            foreach (var b in line[(colon + 1)..])
            {
                if (!IsFieldByte(b))
                {
                    throw new FormatException($"byte 0x{b:x2} in the value of {Show(line[..colon])}");
                }
            }

            headers.Add((Encoding.ASCII.GetString(line[..colon]), Encoding.ASCII.GetString(line[(colon + 1)..]).Trim(' ', '\t')));
        }

        var response = new Http11Response(status, headers, []);
        var lengths = response.GetAll("Content-Length").ToList();
        var encodings = response.GetAll("Transfer-Encoding").ToList();
        var content = data[position..];
        if (lengths.Count > 0 && encodings.Count > 0)
        {
            throw new FormatException("both Content-Length and Transfer-Encoding");
        }

        if (lengths.Count > 1)
        {
            throw new FormatException($"{lengths.Count} Content-Length fields");
        }

        long? length = null;
        if (lengths.Count == 1)
        {
            if (lengths[0].Length is 0 or > 18 || lengths[0].Any(c => c is < '0' or > '9'))
            {
                throw new FormatException($"bad Content-Length \"{lengths[0]}\"");
            }

            length = long.Parse(lengths[0], CultureInfo.InvariantCulture);
        }

        var noContent = status is 204 or 304;
        if (status == 204 && length is not null)
        {
            throw new FormatException("Content-Length on a 204 (RFC 9110 section 8.6)");
        }

        if (status == 205 && (length is not (null or 0) || encodings.Count > 0))
        {
            throw new FormatException("a 205 with content (RFC 9110 section 15.3.6)");
        }

        if (noContent && encodings.Count > 0)
        {
            throw new FormatException($"Transfer-Encoding on a {status}");
        }

        if (noContent || headRequest)
        {
            return content.IsEmpty ? response : throw new FormatException($"{content.Length} bytes of content after a {(headRequest ? "response to HEAD" : status.ToString(CultureInfo.InvariantCulture))}");
        }

        if (encodings.Count > 0)
        {
            if (encodings.Count != 1 || !encodings[0].Equals("chunked", StringComparison.OrdinalIgnoreCase))
            {
                throw new FormatException($"Transfer-Encoding \"{string.Join(", ", encodings)}\"; only chunked is expected");
            }

            return response with { Body = ReadChunked(content) };
        }

        if (length is null)
        {
            throw new FormatException("neither Content-Length nor chunked: the body would end only with the connection");
        }

        return content.Length == length
            ? response with { Body = content.ToArray() }
            : throw new FormatException($"Content-Length {length} but {content.Length} bytes of content (truncated or extra)");
    }

    private static byte[] ReadChunked(ReadOnlySpan<byte> content)
    {
        var body = new List<byte>();
        var position = 0;
        while (true)
        {
            var line = ReadLine(content, ref position, "chunk size");
            var end = line.IndexOf((byte)';');
            var hex = Encoding.ASCII.GetString(end < 0 ? line : line[..end]);
            if (hex.Length is 0 or > 8 || !int.TryParse(hex, NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out var size))
            {
                throw new FormatException($"bad chunk size \"{hex}\"");
            }

            if (size == 0)
            {
                while (!ReadLine(content, ref position, "trailer").IsEmpty)
                {
                }

                return position == content.Length ? [.. body] : throw new FormatException($"{content.Length - position} bytes after the last chunk");
            }

            if (content.Length - position < size + 2 || content[position + size] != '\r' || content[position + size + 1] != '\n')
            {
                throw new FormatException("a chunk is truncated or not followed by CRLF");
            }

            body.AddRange(content.Slice(position, size));
            position += size + 2;
        }
    }

    private static ReadOnlySpan<byte> ReadLine(ReadOnlySpan<byte> data, ref int position, string what)
    {
        var lf = data[position..].IndexOf((byte)'\n');
        if (lf < 0)
        {
            throw new FormatException($"the connection ended inside the {what}");
        }

        if (lf == 0 || data[position + lf - 1] != '\r')
        {
            throw new FormatException($"bare LF in the {what}");
        }

        var line = data.Slice(position, lf - 1);
        if (line.IndexOf((byte)'\r') >= 0)
        {
            throw new FormatException($"bare CR in the {what}");
        }

        position += lf + 1;
        return line;
    }

    private static bool IsFieldByte(byte b) => b is (byte)'\t' or (>= 0x20 and <= 0x7e);

    private static string Show(ReadOnlySpan<byte> bytes) =>
        new([.. bytes.ToArray().Select(b => b is >= 0x20 and < 0x7f ? (char)b : '?')]);
}
