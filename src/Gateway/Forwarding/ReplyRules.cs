using System.Buffers;
using System.Globalization;
using System.Text;
using Gateway.Ipc.Protocol;

namespace Gateway.Forwarding;

/// <summary>
/// What a backend's RESPONSE must satisfy before the gateway maps it to HTTP (docs/protocol.md section 4.2,
/// "Header fields" and "Empty bodies"). Checked on the whole head before anything of it is applied, so a rejected reply
/// leaves nothing behind in the HTTP response.
/// </summary>
internal static class ReplyRules
{
    // Visible ASCII, space and horizontal tab: RFC 9110 field-vchar without obs-text.
    private static readonly SearchValues<byte> ValueBytes = SearchValues.Create(ValueAlphabet());

    /// <summary>
    /// Why the reply's header values cannot be sent as HTTP/1.1 field values, or null when they can: every value is
    /// visible ASCII, space or tab. (The status and the names are checked when the payload is read,
    /// <see cref="ResponseView.Read"/>: 200–599, RFC 9110 tokens.)
    /// </summary>
    public static string? FindHeaderViolation(ResponseView view)
    {
        foreach (var field in view.Headers)
        {
            var bad = field.Value.IndexOfAnyExcept(ValueBytes);
            if (bad >= 0)
            {
                return string.Create(CultureInfo.InvariantCulture, $"the value of header field '{Encoding.ASCII.GetString(field.Name)}' has byte 0x{field.Value[bad]:x2} at offset {bad}; values are visible ASCII, space and tab");
            }
        }

        return null;
    }

    /// <summary>
    /// Statuses whose responses have no content (RFC 9110 sections 15.3.5, 15.3.6, 15.4.5): a body the backend sends
    /// with them is dropped, and no Content-Length is set.
    /// </summary>
    public static bool StatusHasNoContent(int status) =>
        status is StatusCodes.Status204NoContent or StatusCodes.Status205ResetContent or StatusCodes.Status304NotModified;

    private static byte[] ValueAlphabet()
    {
        var bytes = new List<byte> { (byte)'\t' };
        for (var b = 0x20; b <= 0x7e; b++)
        {
            bytes.Add((byte)b);
        }

        return [.. bytes];
    }
}
