using System.Globalization;
using Gateway.Ipc.Backend;

namespace EchoBackend;

/// <summary>
/// The echo behaviour shared by every echo backend (ECHO.md): a non-empty body is echoed byte for byte with the
/// request's content type (or <c>application/octet-stream</c>); an empty body yields
/// <c>"{METHOD} {target}\n"</c> as UTF-8 text. <c>x-echo-delay-ms: N</c> (0..60000) waits N ms first, honouring
/// cancellation and the deadline; <c>x-echo-status: N</c> (200..599) replaces the status 200. Header values out of
/// range or not numbers are ignored.
/// </summary>
public sealed class EchoHandler(TimeProvider timeProvider) : IDatagramHandler
{
    public const string DelayHeader = "x-echo-delay-ms";
    public const string StatusHeader = "x-echo-status";
    public const int MaxDelayMs = 60_000;

    public async ValueTask<BackendResponse> HandleAsync(BackendRequest request, CancellationToken cancellationToken)
    {
        var status = ReadInt(request, StatusHeader, 200, 599) ?? 200;
        if (ReadInt(request, DelayHeader, 0, MaxDelayMs) is > 0 and var delay)
        {
            // The token fires at the request's deadline, on CANCEL and on shutdown.
            await Task.Delay(TimeSpan.FromMilliseconds(delay), timeProvider, cancellationToken);
        }

        if (status is 204 or 205 or 304)
        {
            // These statuses have no content (docs/protocol.md section 4.2, "Empty bodies").
            return BackendResponse.Bytes(ReadOnlyMemory<byte>.Empty, "application/octet-stream", status);
        }

        if (!request.Body.IsEmpty)
        {
            return BackendResponse.Bytes(request.Body, request.GetHeader("content-type") ?? "application/octet-stream", status);
        }

        return BackendResponse.Text($"{request.Method} {request.Target}\n", status);
    }

    private static int? ReadInt(BackendRequest request, string header, int min, int max) =>
        int.TryParse(request.GetHeader(header), NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? value
            : null;
}
