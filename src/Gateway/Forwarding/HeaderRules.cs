using System.Buffers;
using System.Text;

namespace Gateway.Forwarding;

/// <summary>Which header fields cross the gateway.</summary>
internal static class HeaderRules
{
    // RFC 9110 7.6.1 hop-by-hop fields, plus fields the gateway sets itself.
    private static readonly HashSet<string> HopByHop = new(StringComparer.OrdinalIgnoreCase)
    {
        "Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization",
        "TE", "Trailer", "Transfer-Encoding", "Upgrade",
    };

    private static readonly SearchValues<char> RequestIdChars =
        SearchValues.Create("-._~:0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");

    /// <summary>Prefix of the headers carrying the caller's credentials (<c>Gateway:ForwardCallerCredentials</c>).</summary>
    public const string CallerHeaderPrefix = "x-gateway-caller-";

    public const string CallerUidHeader = CallerHeaderPrefix + "uid";

    public const string CallerGidHeader = CallerHeaderPrefix + "gid";

    public const string CallerPidHeader = CallerHeaderPrefix + "pid";

    /// <summary>
    /// Whether a request header is forwarded to the backend. Never the caller-credential headers a client sent:
    /// only the gateway sets those, so a backend can trust them.
    /// </summary>
    public static bool ForwardRequestHeader(string name) =>
        !HopByHop.Contains(name)
        && !name.StartsWith(CallerHeaderPrefix, StringComparison.OrdinalIgnoreCase)
        && !name.Equals("Content-Length", StringComparison.OrdinalIgnoreCase)
        && !name.Equals("traceparent", StringComparison.OrdinalIgnoreCase)
        && !name.Equals("tracestate", StringComparison.OrdinalIgnoreCase)
        && !name.StartsWith(':');

    /// <summary>Whether a response header from the backend is copied to the HTTP response.</summary>
    public static bool CopyResponseHeader(ReadOnlySpan<byte> name) =>
        !name.IsEmpty
        && !Ascii.EqualsIgnoreCase(name, "content-length"u8)
        && !Ascii.EqualsIgnoreCase(name, "connection"u8)
        && !Ascii.EqualsIgnoreCase(name, "keep-alive"u8)
        && !Ascii.EqualsIgnoreCase(name, "proxy-connection"u8)
        && !Ascii.EqualsIgnoreCase(name, "transfer-encoding"u8)
        && !Ascii.EqualsIgnoreCase(name, "te"u8)
        && !Ascii.EqualsIgnoreCase(name, "trailer"u8)
        && !Ascii.EqualsIgnoreCase(name, "upgrade"u8)
        && !(name.Length > 6 && Ascii.EqualsIgnoreCase(name[..6], "proxy-"u8));

    /// <summary>An incoming request ID is used only if it is short and plain.</summary>
    public static bool IsValidRequestId(string? value) =>
        !string.IsNullOrEmpty(value) && value.Length <= 128 && !value.AsSpan().ContainsAnyExcept(RequestIdChars);
}
