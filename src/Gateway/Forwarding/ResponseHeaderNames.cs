using System.Text;
using Microsoft.Net.Http.Headers;

namespace Gateway.Forwarding;

/// <summary>
/// Header names and values from a backend's RESPONSE as strings, without allocating the common ones: the names
/// Kestrel knows (its known-header fast path matches the constants by reference), and the content types echo-style
/// backends send on every response.
/// </summary>
internal static class ResponseHeaderNames
{
    // Wire names are lower case (protocol.md); the values are the canonical constants.
    private static readonly (byte[] Wire, string Name)[] Known =
    [
        .. new[]
        {
            HeaderNames.ContentType, HeaderNames.CacheControl, HeaderNames.ETag, HeaderNames.Location, HeaderNames.LastModified,
            HeaderNames.ContentEncoding, HeaderNames.ContentLanguage, HeaderNames.ContentDisposition, HeaderNames.Expires,
            HeaderNames.Vary, HeaderNames.SetCookie, HeaderNames.Date, HeaderNames.Server, HeaderNames.RetryAfter,
            HeaderNames.WWWAuthenticate, HeaderNames.AccessControlAllowOrigin, "x-request-id", "x-correlation-id",
        }.Select(n => (Encoding.ASCII.GetBytes(n.ToLowerInvariant()), n)),
    ];

    private static readonly (byte[] Wire, string Value)[] KnownValues =
    [
        .. new[]
        {
            "application/json", "application/json; charset=utf-8", "text/plain", "text/plain; charset=utf-8",
            "application/octet-stream", "text/html; charset=utf-8", "application/problem+json", "no-cache", "no-store",
        }.Select(v => (Encoding.ASCII.GetBytes(v), v)),
    ];

    /// <summary>The name as a string; a shared constant for the common names.</summary>
    public static string GetName(ReadOnlySpan<byte> name)
    {
        foreach (var (wire, known) in Known)
        {
            if (name.SequenceEqual(wire))
            {
                return known;
            }
        }

        return Encoding.ASCII.GetString(name);
    }

    /// <summary>The value as a string (UTF-8); a shared constant for a few common values.</summary>
    public static string GetValue(ReadOnlySpan<byte> value)
    {
        if (value.Length <= 32)
        {
            foreach (var (wire, known) in KnownValues)
            {
                if (value.SequenceEqual(wire))
                {
                    return known;
                }
            }
        }

        return Encoding.UTF8.GetString(value);
    }
}
