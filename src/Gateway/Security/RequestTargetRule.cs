using System.Buffers;
using System.Text;
using System.Text.Unicode;

namespace Gateway.Security;

/// <summary>Why a request target is refused (docs/security.md, "The path rule").</summary>
internal enum TargetProblem
{
    None,

    /// <summary>A <c>.</c> or <c>..</c> segment, plain or percent-encoded.</summary>
    DotSegment,

    /// <summary>An empty segment (<c>//</c>) anywhere but at the end.</summary>
    EmptySegment,

    /// <summary><c>%2F</c>: a slash inside a segment.</summary>
    EncodedSlash,

    /// <summary>A backslash, plain or encoded: many servers treat it as a slash.</summary>
    Backslash,

    /// <summary><c>%3F</c>, <c>%23</c> or <c>%25</c>: a backend that decodes before it splits (or decodes twice) reads another path.</summary>
    EncodedDelimiter,

    /// <summary>A <c>;</c>: servers that strip path parameters read another path.</summary>
    PathParameter,

    /// <summary><c>%00</c>.</summary>
    Nul,

    /// <summary>A C0 or C1 control character or DEL, decoded.</summary>
    ControlCharacter,

    /// <summary>A <c>%</c> not followed by two hexadecimal digits.</summary>
    BadPercentEncoding,

    /// <summary>An overlong UTF-8 encoding (e.g. <c>%C0%AF</c> for <c>/</c>).</summary>
    OverlongUtf8,

    /// <summary>Bytes that are not UTF-8.</summary>
    InvalidUtf8,

    /// <summary>A non-ASCII character that case mapping or NFKC normalisation turns into ASCII (<c>ſ</c>, <c>K</c>, fullwidth forms).</summary>
    AmbiguousCharacter,

    /// <summary>Whitespace at the start or end of a segment, which some servers trim.</summary>
    SegmentWhitespace,

    /// <summary>The target is not in origin form (<c>/path?query</c>) or absolute form.</summary>
    NotOriginForm,

    /// <summary>The decoded target differs from the path the server routed on (a reading this rule did not foresee).</summary>
    NotCanonical,
}

/// <summary>
/// The path rule (docs/security.md, "The path rule"): a request target is accepted only when every reading of it
/// gives the same path, the one routing and caller authorization decide on. The raw target the caller sent is
/// checked segment by segment; a target whose decoded, normalised form could differ from what a backend's router
/// reads (dot segments, empty segments, encoded <c>/</c> <c>\</c> <c>?</c> <c>#</c> <c>%</c>, <c>;</c>, control
/// characters, NUL, bad percent-encoding, overlong or invalid UTF-8, non-ASCII characters that fold to ASCII) is
/// refused, so the target forwarded to the backend (the raw one) decodes to exactly the routed path.
/// </summary>
internal static class RequestTargetRule
{
    /// <summary>Paths up to this many characters are checked in stack buffers; longer ones rent from the array pool.</summary>
    private const int StackLimit = 256;

    /// <summary>The target's problem, or <see cref="TargetProblem.None"/>; <paramref name="path"/> is the decoded path.</summary>
    public static TargetProblem Check(string rawTarget, out string path)
    {
        var builder = new PathBuilder(new StringBuilder(rawTarget.Length));
        var problem = Check(rawTarget, ref builder);
        path = problem == TargetProblem.None ? builder.Text.ToString() : "";
        return problem;
    }

    /// <summary>
    /// The target's problem; <see cref="TargetProblem.NotCanonical"/> when the target is fine but decodes to another path
    /// than <paramref name="pathBase"/> + <paramref name="path"/> (what the server routed on). The decoded path is compared
    /// as it is decoded, never built: no allocation for a target of up to <see cref="StackLimit"/> characters in origin form.
    /// </summary>
    public static TargetProblem CheckRouted(string rawTarget, string? pathBase, string? path)
    {
        var comparer = new PathComparer(pathBase ?? "", path ?? "");
        var problem = Check(rawTarget, ref comparer);
        return problem == TargetProblem.None && !comparer.Matches ? TargetProblem.NotCanonical : problem;
    }

    private static TargetProblem Check<TSink>(string rawTarget, ref TSink sink)
        where TSink : struct, IDecodedPathSink
    {
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

        // A segment decodes to at most as many bytes as it has characters, and UTF-8 to at most as many UTF-16 units.
        byte[]? rentedBytes = null;
        char[]? rentedChars = null;
        var bytes = rawPath.Length <= StackLimit ? stackalloc byte[StackLimit] : (rentedBytes = ArrayPool<byte>.Shared.Rent(rawPath.Length));
        var chars = rawPath.Length <= StackLimit ? stackalloc char[StackLimit] : (rentedChars = ArrayPool<char>.Shared.Rent(rawPath.Length));
        try
        {
            var position = 1; // after the leading '/'
            while (true)
            {
                var next = rawPath[position..].IndexOf('/');
                var segment = next < 0 ? rawPath[position..] : rawPath.Slice(position, next);
                var last = next < 0;
                sink.Append("/");
                var problem = CheckSegment(segment, last, bytes, chars, ref sink);
                if (problem != TargetProblem.None)
                {
                    return problem;
                }

                if (last)
                {
                    return TargetProblem.None;
                }

                position += next + 1;
            }
        }
        finally
        {
            if (rentedBytes is not null)
            {
                ArrayPool<byte>.Shared.Return(rentedBytes);
            }

            if (rentedChars is not null)
            {
                ArrayPool<char>.Shared.Return(rentedChars);
            }
        }
    }

    /// <summary>
    /// The origin form of an absolute-form target (<c>http://host/p?q</c> → <c>/p?q</c>, RFC 9112 §3.2.2), which
    /// servers must accept; any other target unchanged.
    /// </summary>
    public static string OriginForm(string rawTarget)
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

    /// <summary>The reason, as the problem's <c>reason</c> member and the log say it.</summary>
    public static string Reason(TargetProblem problem) => problem switch
    {
        TargetProblem.DotSegment => "dot-segment",
        TargetProblem.EmptySegment => "empty-segment",
        TargetProblem.EncodedSlash => "encoded-slash",
        TargetProblem.Backslash => "backslash",
        TargetProblem.EncodedDelimiter => "encoded-delimiter",
        TargetProblem.PathParameter => "path-parameter",
        TargetProblem.Nul => "nul",
        TargetProblem.ControlCharacter => "control-character",
        TargetProblem.BadPercentEncoding => "bad-percent-encoding",
        TargetProblem.OverlongUtf8 => "overlong-utf8",
        TargetProblem.InvalidUtf8 => "invalid-utf8",
        TargetProblem.AmbiguousCharacter => "ambiguous-character",
        TargetProblem.SegmentWhitespace => "segment-whitespace",
        TargetProblem.NotOriginForm => "not-origin-form",
        TargetProblem.NotCanonical => "not-canonical",
        _ => "none",
    };

    /// <summary>A sentence for the problem's <c>detail</c>.</summary>
    public static string Describe(TargetProblem problem) => problem switch
    {
        TargetProblem.DotSegment => "The path has a '.' or '..' segment (plain or percent-encoded).",
        TargetProblem.EmptySegment => "The path has an empty segment ('//').",
        TargetProblem.EncodedSlash => "The path has an encoded slash (%2F) inside a segment.",
        TargetProblem.Backslash => "The path has a backslash (plain or %5C).",
        TargetProblem.EncodedDelimiter => "The path has an encoded '?', '#' or '%' (or a raw '#').",
        TargetProblem.PathParameter => "The path has a ';' (a path parameter).",
        TargetProblem.Nul => "The path has an encoded NUL (%00).",
        TargetProblem.ControlCharacter => "The path has an encoded control character.",
        TargetProblem.BadPercentEncoding => "The path has a '%' that is not followed by two hexadecimal digits.",
        TargetProblem.OverlongUtf8 => "The path has an overlong UTF-8 encoding.",
        TargetProblem.InvalidUtf8 => "The path's percent-encoded bytes are not UTF-8.",
        TargetProblem.AmbiguousCharacter => "The path has a non-ASCII character that case mapping or Unicode normalisation turns into ASCII.",
        TargetProblem.SegmentWhitespace => "A path segment starts or ends with whitespace.",
        TargetProblem.NotOriginForm => "The request target is not in origin form ('/path?query').",
        TargetProblem.NotCanonical => "The decoded path differs from the path the gateway routed on.",
        _ => "",
    };

    private static TargetProblem CheckSegment<TSink>(ReadOnlySpan<char> segment, bool last, Span<byte> buffer, Span<char> chars, ref TSink sink)
        where TSink : struct, IDecodedPathSink
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

        var bytes = buffer[..length];
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

            // Strict: an invalid or incomplete sequence (or an encoded surrogate) is refused, never replaced.
            if (Utf8.ToUtf16(bytes, chars, out _, out var written, replaceInvalidSequences: false) != OperationStatus.Done)
            {
                return TargetProblem.InvalidUtf8;
            }

            ReadOnlySpan<char> text = chars[..written];
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
                if (!rune.IsAscii && FoldsToAscii(rune))
                {
                    return TargetProblem.AmbiguousCharacter;
                }
            }

            sink.Append(text);
            return TargetProblem.None;
        }

        if (bytes[0] == (byte)' ' || bytes[^1] == (byte)' ')
        {
            return TargetProblem.SegmentWhitespace;
        }

        // ASCII: each byte is its character.
        var ascii = chars[..length];
        for (var i = 0; i < length; i++)
        {
            ascii[i] = (char)bytes[i];
        }

        sink.Append(ascii);
        return TargetProblem.None;
    }

    private static bool IsWhitespace(char c) => char.IsWhiteSpace(c) || c == '\u200B' || c == '\uFEFF';

    /// <summary>
    /// Whether a non-ASCII character's upper, lower or case-folded form, or its NFKC form, contains ASCII (ſ → S,
    /// K → k, ß → SS, fullwidth letters, ½ → 1/2, ․ → .). A fixed table (<see cref="FoldsToAsciiRanges"/>), so the
    /// rule does not depend on ICU (the gateway runs with invariant globalization) or on its version.
    /// </summary>
    internal static bool FoldsToAscii(Rune rune)
    {
        var value = rune.Value;
        var ranges = FoldsToAsciiRanges;
        int low = 0, high = (ranges.Length / 2) - 1;
        while (low <= high)
        {
            var middle = (low + high) / 2;
            if (value < ranges[2 * middle])
            {
                high = middle - 1;
            }
            else if (value > ranges[(2 * middle) + 1])
            {
                low = middle + 1;
            }
            else
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>
    /// Inclusive code point ranges whose case mappings or NFKC decomposition contain ASCII, from Unicode 14 data
    /// (Python 3.11 unicodedata; RequestTargetRuleTests checks the table against the machine's Python).
    /// </summary>
    private static ReadOnlySpan<int> FoldsToAsciiRanges =>
    [
        0xA0, 0xA0, 0xA8, 0xA8, 0xAA, 0xAA, 0xAF, 0xAF, 0xB2, 0xB4, 0xB8, 0xBA, 0xBC, 0xBE, 0xDF, 0xDF, 0x130, 0x133,
        0x13F, 0x140, 0x149, 0x149, 0x17F, 0x17F, 0x1C4, 0x1CC, 0x1F0, 0x1F3, 0x2B0, 0x2B0, 0x2B2, 0x2B3,
        0x2B7, 0x2B8, 0x2D8, 0x2DD, 0x2E1, 0x2E3, 0x37A, 0x37A, 0x37E, 0x37E, 0x384, 0x385, 0x1D2C, 0x1D2C,
        0x1D2E, 0x1D2E, 0x1D30, 0x1D31, 0x1D33, 0x1D3A, 0x1D3C, 0x1D3C, 0x1D3E, 0x1D43, 0x1D47, 0x1D49,
        0x1D4D, 0x1D4D, 0x1D4F, 0x1D50, 0x1D52, 0x1D52, 0x1D56, 0x1D58, 0x1D5B, 0x1D5B, 0x1D62, 0x1D65,
        0x1D9C, 0x1D9C, 0x1DA0, 0x1DA0, 0x1DBB, 0x1DBB, 0x1E96, 0x1E9A, 0x1E9E, 0x1E9E, 0x1FBD, 0x1FBD,
        0x1FBF, 0x1FC1, 0x1FCD, 0x1FCF, 0x1FDD, 0x1FDF, 0x1FED, 0x1FEF, 0x1FFD, 0x1FFE, 0x2000, 0x200A,
        0x2017, 0x2017, 0x2024, 0x2026, 0x202F, 0x202F, 0x203C, 0x203C, 0x203E, 0x203E, 0x2047, 0x2049,
        0x205F, 0x205F, 0x2070, 0x2071, 0x2074, 0x207A, 0x207C, 0x208A, 0x208C, 0x208E, 0x2090, 0x2093,
        0x2095, 0x209C, 0x20A8, 0x20A8, 0x2100, 0x2103, 0x2105, 0x2106, 0x2109, 0x210E, 0x2110, 0x2113,
        0x2115, 0x2116, 0x2119, 0x211D, 0x2120, 0x2122, 0x2124, 0x2124, 0x2128, 0x2128, 0x212A, 0x212A,
        0x212C, 0x212D, 0x212F, 0x2131, 0x2133, 0x2134, 0x2139, 0x2139, 0x213B, 0x213B, 0x2145, 0x2149,
        0x2150, 0x217F, 0x2189, 0x2189, 0x2460, 0x24EA, 0x2A74, 0x2A76, 0x2C7C, 0x2C7D, 0x3000, 0x3000,
        0x309B, 0x309C, 0x3200, 0x321E, 0x3220, 0x3243, 0x3250, 0x325F, 0x32B1, 0x32CF, 0x3358, 0x337A,
        0x3380, 0x33FF, 0xA7F2, 0xA7F4, 0xFB00, 0xFB06, 0xFB29, 0xFB29, 0xFC5E, 0xFC63, 0xFDFA, 0xFDFB,
        0xFE10, 0xFE10, 0xFE13, 0xFE16, 0xFE19, 0xFE19, 0xFE30, 0xFE30, 0xFE33, 0xFE38, 0xFE47, 0xFE50,
        0xFE52, 0xFE52, 0xFE54, 0xFE57, 0xFE59, 0xFE5C, 0xFE5F, 0xFE66, 0xFE68, 0xFE6B, 0xFE70, 0xFE70,
        0xFE72, 0xFE72, 0xFE74, 0xFE74, 0xFE76, 0xFE76, 0xFE78, 0xFE78, 0xFE7A, 0xFE7A, 0xFE7C, 0xFE7C,
        0xFE7E, 0xFE7E, 0xFF01, 0xFF5E, 0xFFE3, 0xFFE3, 0x107A5, 0x107A5, 0x1D400, 0x1D454, 0x1D456, 0x1D49C,
        0x1D49E, 0x1D49F, 0x1D4A2, 0x1D4A2, 0x1D4A5, 0x1D4A6, 0x1D4A9, 0x1D4AC, 0x1D4AE, 0x1D4B9, 0x1D4BB, 0x1D4BB,
        0x1D4BD, 0x1D4C3, 0x1D4C5, 0x1D505, 0x1D507, 0x1D50A, 0x1D50D, 0x1D514, 0x1D516, 0x1D51C, 0x1D51E, 0x1D539,
        0x1D53B, 0x1D53E, 0x1D540, 0x1D544, 0x1D546, 0x1D546, 0x1D54A, 0x1D550, 0x1D552, 0x1D6A3, 0x1D7CE, 0x1D7FF,
        0x1F100, 0x1F10A, 0x1F110, 0x1F12E, 0x1F130, 0x1F14F, 0x1F16A, 0x1F16C, 0x1F190, 0x1F190, 0x1FBF0, 0x1FBF9,
    ];

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

    /// <summary>Where the decoded path goes, segment by segment: built (<see cref="PathBuilder"/>) or compared (<see cref="PathComparer"/>).</summary>
    private interface IDecodedPathSink
    {
        void Append(ReadOnlySpan<char> decoded);
    }

    private readonly struct PathBuilder(StringBuilder text) : IDecodedPathSink
    {
        public StringBuilder Text { get; } = text;

        public void Append(ReadOnlySpan<char> decoded) => Text.Append(decoded);
    }

    /// <summary>Compares the decoded path, as it comes, with <c>first + second</c> (path base and path) without joining them.</summary>
    private struct PathComparer(string first, string second) : IDecodedPathSink
    {
        private int _position;
        private bool _differs;

        public readonly bool Matches => !_differs && _position == first.Length + second.Length;

        public void Append(ReadOnlySpan<char> decoded)
        {
            while (!_differs && !decoded.IsEmpty)
            {
                var expected = _position < first.Length ? first.AsSpan(_position) : second.AsSpan(_position - first.Length);
                var n = Math.Min(expected.Length, decoded.Length);
                if (n == 0 || !decoded[..n].SequenceEqual(expected[..n]))
                {
                    _differs = true;
                    return;
                }

                _position += n;
                decoded = decoded[n..];
            }
        }
    }
}
