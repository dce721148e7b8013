using System.Buffers;
using System.Text;
using Gateway.Security;

namespace Gateway.Tests.Security;

/// <summary>
/// The path rule as it was before it was made allocation-free (commit 2966f94, src/Gateway/Security/RequestTargetRule.cs):
/// the oracle that RequestTargetRuleEquivalenceProperties holds the current rule to. Decisions only; the
/// reasons, descriptions and the fold table are the product's.
/// </summary>
internal static class LegacyRequestTargetRule
{
    private static readonly UTF8Encoding StrictUtf8 = new(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true);

    /// <summary>The target's problem, or <see cref="TargetProblem.None"/>; <paramref name="path"/> is the decoded path.</summary>
    public static TargetProblem Check(string rawTarget, out string path)
    {
        path = "";
        rawTarget = OriginForm(rawTarget);
        if (rawTarget.Length == 0 || rawTarget[0] != '/')
        {
            return TargetProblem.NotOriginForm;
        }

        var end = rawTarget.IndexOf('?');
        var rawPath = end < 0 ? rawTarget.AsSpan() : rawTarget.AsSpan(0, end);
        if (rawPath.Contains('#'))
        {
            return TargetProblem.EncodedDelimiter;
        }

        var decoded = new StringBuilder(rawPath.Length);
        var buffer = ArrayPool<byte>.Shared.Rent(rawPath.Length);
        try
        {
            var position = 1; // after the leading '/'
            while (true)
            {
                var next = rawPath[position..].IndexOf('/');
                var segment = next < 0 ? rawPath[position..] : rawPath.Slice(position, next);
                var last = next < 0;
                decoded.Append('/');
                var problem = CheckSegment(segment, last, buffer, decoded);
                if (problem != TargetProblem.None)
                {
                    return problem;
                }

                if (last)
                {
                    break;
                }

                position += next + 1;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }

        path = decoded.ToString();
        return TargetProblem.None;
    }

    /// <summary>
    /// The origin form of an absolute-form target (<c>http://host/p?q</c> → <c>/p?q</c>, RFC 9112 §3.2.2), which
    /// servers must accept; any other target unchanged.
    /// </summary>
    private static string OriginForm(string rawTarget)
    {
        if (rawTarget.Length > 0 && rawTarget[0] != '/')
        {
            var scheme = rawTarget.IndexOf("://", StringComparison.Ordinal);
            if (scheme > 0 && (rawTarget.StartsWith("http://", StringComparison.OrdinalIgnoreCase) || rawTarget.StartsWith("https://", StringComparison.OrdinalIgnoreCase)))
            {
                var start = rawTarget.IndexOfAny(['/', '?'], scheme + 3);
                return start < 0 ? "/" : rawTarget[start] == '?' ? "/" + rawTarget[start..] : rawTarget[start..];
            }
        }

        return rawTarget;
    }

    private static TargetProblem CheckSegment(ReadOnlySpan<char> segment, bool last, byte[] buffer, StringBuilder decoded)
    {
        if (segment.IsEmpty)
        {
            // "/" itself and one trailing slash are fine; "a//b" is not.
            return last ? TargetProblem.None : TargetProblem.EmptySegment;
        }

        var length = 0;
        for (var i = 0; i < segment.Length; i++)
        {
            var c = segment[i];
            byte b;
            if (c == '%')
            {
                if (i + 2 >= segment.Length)
                {
                    return TargetProblem.BadPercentEncoding;
                }

                if (!IsHex(segment[i + 1]) || !IsHex(segment[i + 2]))
                {
                    return TargetProblem.BadPercentEncoding;
                }

                b = (byte)((HexValue(segment[i + 1]) << 4) | HexValue(segment[i + 2]));
                i += 2;
                switch (b)
                {
                    case (byte)'/':
                        return TargetProblem.EncodedSlash;
                    case (byte)'\\':
                        return TargetProblem.Backslash;
                    case (byte)'?' or (byte)'#' or (byte)'%':
                        return TargetProblem.EncodedDelimiter;
                    case (byte)';':
                        return TargetProblem.PathParameter;
                    case 0:
                        return TargetProblem.Nul;
                }
            }
            else
            {
                if (c > 0x7E || c < 0x20)
                {
                    // Kestrel refuses these in the request line; checked anyway for any other server feature.
                    return c == 0 ? TargetProblem.Nul : c < 0x20 || c == 0x7F ? TargetProblem.ControlCharacter : TargetProblem.InvalidUtf8;
                }

                switch (c)
                {
                    case '\\':
                        return TargetProblem.Backslash;
                    case ';':
                        return TargetProblem.PathParameter;
                }

                b = (byte)c;
            }

            if (b < 0x20 || b == 0x7F)
            {
                return TargetProblem.ControlCharacter;
            }

            buffer[length++] = b;
        }

        var bytes = buffer.AsSpan(0, length);
        if (bytes.SequenceEqual("."u8) || bytes.SequenceEqual(".."u8))
        {
            return TargetProblem.DotSegment;
        }

        if (bytes.IndexOfAnyInRange((byte)0x80, (byte)0xFF) >= 0)
        {
            if (HasOverlong(bytes))
            {
                return TargetProblem.OverlongUtf8;
            }

            string text;
            try
            {
                text = StrictUtf8.GetString(bytes);
            }
            catch (DecoderFallbackException)
            {
                return TargetProblem.InvalidUtf8;
            }

            foreach (var rune in text.EnumerateRunes())
            {
                if (Rune.IsControl(rune))
                {
                    return TargetProblem.ControlCharacter; // C1 controls, U+0080..U+009F
                }
            }

            if (IsWhitespace(text[0]) || IsWhitespace(text[^1]))
            {
                return TargetProblem.SegmentWhitespace;
            }

            foreach (var rune in text.EnumerateRunes())
            {
                if (!rune.IsAscii && RequestTargetRule.FoldsToAscii(rune))
                {
                    return TargetProblem.AmbiguousCharacter;
                }
            }

            decoded.Append(text);
            return TargetProblem.None;
        }

        if (bytes[0] == (byte)' ' || bytes[^1] == (byte)' ')
        {
            return TargetProblem.SegmentWhitespace;
        }

        foreach (var b in bytes)
        {
            decoded.Append((char)b);
        }

        return TargetProblem.None;
    }

    private static bool IsWhitespace(char c) => char.IsWhiteSpace(c) || c == '\u200B' || c == '\uFEFF';

    /// <summary>A lead byte C0/C1, or E0 followed by 80–9F, or F0 followed by 80–8F: a shorter form exists.</summary>
    private static bool HasOverlong(ReadOnlySpan<byte> bytes)
    {
        for (var i = 0; i < bytes.Length; i++)
        {
            var b = bytes[i];
            if (b is 0xC0 or 0xC1)
            {
                return true;
            }

            if (i + 1 < bytes.Length && ((b == 0xE0 && bytes[i + 1] < 0xA0 && bytes[i + 1] >= 0x80) || (b == 0xF0 && bytes[i + 1] < 0x90 && bytes[i + 1] >= 0x80)))
            {
                return true;
            }
        }

        return false;
    }

    private static bool IsHex(char c) => char.IsAsciiHexDigit(c);

    private static int HexValue(char c) => c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}
