using System.Globalization;
using Gateway.Ipc.Backend;

namespace EchoBackend;

/// <summary>
/// The echo behaviour shared by every echo backend (ECHO.md): a non-empty body is echoed byte for byte with the
/// request's content type (or <c>application/octet-stream</c>); an empty body yields
/// <c>"{METHOD} {target}\n"</c> as UTF-8 text. <c>x-echo-delay-ms: N</c> (0..60000) waits N ms first, honouring
/// cancellation and the deadline; <c>x-echo-status: N</c> (200..599) replaces the status 200. Header values out of
/// range or not numbers are ignored. <c>x-echo-stream-count: N</c> (with <c>x-echo-stream-interval-ms</c> and
/// <c>x-echo-stream-chunk-bytes</c>) streams N chunks (also as query parameters of the same names); <c>x-echo-stream: 1</c> streams the body back.
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

        if (Setting(request, "x-echo-discard") == "1")
        {
            return await DiscardAsync(request, status, cancellationToken);
        }

        if (request.IsBodyStreamed)
        {
            return await EchoUploadAsync(request, status, cancellationToken);
        }

        if (Streamed(request, status) is { } streamed)
        {
            return streamed;
        }

        if (!request.Body.IsEmpty)
        {
            return BackendResponse.Bytes(request.Body, request.GetHeader("content-type") ?? "application/octet-stream", status);
        }

        return BackendResponse.Text($"{request.Method} {request.Target}\n", status);
    }

    /// <summary>
    /// Streaming on request (docs/protocol.md §4.5): <c>x-echo-stream-count: N</c> answers N chunks
    /// (<c>chunk {i}</c> lines, padded to <c>x-echo-stream-chunk-bytes</c> bytes when given; server-sent events
    /// <c>data: chunk {i}</c> when the caller accepts <c>text/event-stream</c>), <c>x-echo-stream-interval-ms</c> apart;
    /// <c>x-echo-stream: 1</c> with a body streams the body back in chunks. Null when neither header is present.
    /// </summary>
    private BackendResponse? Streamed(BackendRequest request, int status)
    {
        var count = ReadStreamInt(request, "x-echo-stream-count", 1, 1_000_000);
        var echo = Setting(request, "x-echo-stream") == "1";
        if (count is null && !echo)
        {
            return null;
        }

        var interval = TimeSpan.FromMilliseconds(ReadStreamInt(request, "x-echo-stream-interval-ms", 0, 60_000) ?? 0);
        var chunkBytes = ReadStreamInt(request, "x-echo-stream-chunk-bytes", 1, 1 << 20);
        if (count is null)
        {
            var body = request.Body;
            var size = chunkBytes ?? 16 * 1024;
            return BackendResponse.Stream(
                async (stream, ct) =>
                {
                    for (var offset = 0; offset < body.Length; offset += size)
                    {
                        if (offset > 0 && interval > TimeSpan.Zero)
                        {
                            await Task.Delay(interval, timeProvider, ct);
                        }

                        await stream.WriteAsync(body.Slice(offset, Math.Min(size, body.Length - offset)), ct);
                    }
                },
                request.GetHeader("content-type") ?? "application/octet-stream",
                status);
        }

        var events = request.GetHeader("accept")?.Contains("text/event-stream", StringComparison.OrdinalIgnoreCase) == true;
        return BackendResponse.Stream(
            async (stream, ct) =>
            {
                // Fixed-size pieces reuse one buffer (WriteAsync has copied it when it returns).
                var piece = chunkBytes is { } size && !events ? new byte[size] : null;
                for (var i = 1; i <= count; i++)
                {
                    if (i > 1 && interval > TimeSpan.Zero)
                    {
                        await Task.Delay(interval, timeProvider, ct);
                    }

                    await stream.WriteAsync(piece is null ? Chunk(i, events, chunkBytes) : FillChunk(piece, i), ct);
                }
            },
            events ? "text/event-stream" : "text/plain; charset=utf-8",
            status);
    }

    /// <summary>
    /// A streamed upload (docs/protocol.md §4.5.3) is echoed: with <c>x-echo-stream: 1</c> (and a client that accepts
    /// streamed replies) as it arrives, as a streamed reply in chunks of <c>x-echo-stream-chunk-bytes</c> (64 KiB by
    /// default): full duplex, for callers that read while they send, as curl does; else collected into one reply of at
    /// most 16 MiB (ERROR <c>TOO_LARGE</c> beyond), which suits callers that send the whole body before they read
    /// (HttpClient, most libraries): a reply streamed at them while they still send would stall both ways once the
    /// buffers between are full. An empty upload gets the text an empty body gets.
    /// </summary>
    private static async ValueTask<BackendResponse> EchoUploadAsync(BackendRequest request, int status, CancellationToken cancellationToken)
    {
        var contentType = request.GetHeader("content-type") ?? "application/octet-stream";
        var size = ReadStreamInt(request, "x-echo-stream-chunk-bytes", 1, 1 << 20) ?? 64 * 1024;
        var first = new byte[size];
        var read = await request.BodyStream.ReadAsync(first, cancellationToken);
        if (read == 0)
        {
            return BackendResponse.Text($"{request.Method} {request.Target}\n", status);
        }

        if (request.AcceptsStreamedReply && Setting(request, "x-echo-stream") == "1")
        {
            return BackendResponse.Stream(
                async (stream, ct) =>
                {
                    await stream.WriteAsync(first.AsMemory(0, read), ct);
                    await request.BodyStream.CopyToAsync(stream, size, ct);
                },
                contentType,
                status);
        }

        const int limit = 16 * 1024 * 1024;
        using var whole = new MemoryStream();
        whole.Write(first, 0, read);
        var buffer = new byte[64 * 1024];
        while ((read = await request.BodyStream.ReadAsync(buffer, cancellationToken)) > 0)
        {
            if (whole.Length + read > limit)
            {
                return BackendResponse.Error(Gateway.Ipc.Protocol.IpcErrorCode.TooLarge, $"The echo collects at most {limit} bytes into one reply; with x-echo-stream: 1 it streams a larger body back as it arrives.");
            }

            whole.Write(buffer, 0, read);
        }

        return BackendResponse.Bytes(whole.ToArray(), contentType, status);
    }

    /// <summary>
    /// <c>x-echo-discard: 1</c>: reads the whole body (streamed or not) and answers its length in bytes and a newline:
    /// a one-way upload of any size (bench/streaming.sh compares it with nginx, which does not proxy full duplex).
    /// </summary>
    private static async ValueTask<BackendResponse> DiscardAsync(BackendRequest request, int status, CancellationToken cancellationToken)
    {
        var buffer = new byte[64 * 1024];
        long total = 0;
        int read;
        while ((read = await request.BodyStream.ReadAsync(buffer, cancellationToken)) > 0)
        {
            total += read;
        }

        return BackendResponse.Text(string.Create(CultureInfo.InvariantCulture, $"{total}\n"), status);
    }

    /// <summary>A stream setting: the header, else a query parameter of the same name (a browser's EventSource cannot set headers).</summary>
    private static string? Setting(BackendRequest request, string name) =>
        request.GetHeader(name) ?? System.Web.HttpUtility.ParseQueryString(request.Query)[name];

    private static int? ReadStreamInt(BackendRequest request, string name, int min, int max) =>
        int.TryParse(Setting(request, name), NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? value
            : null;

    private static byte[] Chunk(int i, bool events, int? bytes)
    {
        if (events)
        {
            return System.Text.Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"data: chunk {i}\n\n"));
        }

        var line = string.Create(CultureInfo.InvariantCulture, $"chunk {i}");
        if (bytes is not { } size)
        {
            return System.Text.Encoding.ASCII.GetBytes(line + "\n");
        }

        return FillChunk(new byte[size], i);
    }

    /// <summary>Piece <paramref name="i"/> of exactly the buffer's size: "chunk i", dots, a newline (cut short when the buffer is smaller than the line).</summary>
    private static byte[] FillChunk(byte[] chunk, int i)
    {
        Span<byte> text = stackalloc byte[24];
        "chunk "u8.CopyTo(text);
        i.TryFormat(text[6..], out var digits, provider: CultureInfo.InvariantCulture);
        var line = text[..(6 + digits)];
        chunk.AsSpan().Fill((byte)'.');
        line[..Math.Min(line.Length, chunk.Length)].CopyTo(chunk);
        chunk[^1] = (byte)'\n';
        return chunk;
    }

    private static int? ReadInt(BackendRequest request, string header, int min, int max) =>
        int.TryParse(request.GetHeader(header), NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? value
            : null;
}
