using System.Buffers;
using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Http.Features;

// The ceiling: the echo of ECHO.md served by Kestrel directly on a Unix socket (no extra hop).
// Usage: DirectEcho --socket /path/to/direct.sock
var builder = WebApplication.CreateSlimBuilder(args);
var socketPath = builder.Configuration["socket"] ?? throw new InvalidOperationException("--socket PATH is required.");
builder.Logging.ClearProviders();
builder.WebHost.ConfigureKestrel(k =>
{
    k.AddServerHeader = false;
    k.Limits.MaxRequestBodySize = null; // bench/streaming.sh streams 1 GiB uploads through it
    k.ListenUnixSocket(socketPath);
});

var app = builder.Build();
app.Run(EchoAsync);
app.Run();

static async Task EchoAsync(HttpContext context)
{
    var request = context.Request;
    var response = context.Response;
    var status = 200;
    if (request.Headers.TryGetValue("x-echo-status", out var statusHeader))
    {
        if (!int.TryParse(statusHeader, NumberStyles.None, CultureInfo.InvariantCulture, out status) || status is < 200 or > 599)
        {
            await BadRequestAsync(response, "x-echo-status must be an integer in 200..599.\n");
            return;
        }
    }

    if (request.Headers.TryGetValue("x-echo-delay-ms", out var delayHeader))
    {
        if (!int.TryParse(delayHeader, NumberStyles.None, CultureInfo.InvariantCulture, out var delay) || delay is < 0 or > 60_000)
        {
            await BadRequestAsync(response, "x-echo-delay-ms must be an integer in 0..60000.\n");
            return;
        }

        try
        {
            await Task.Delay(delay, context.RequestAborted);
        }
        catch (OperationCanceledException)
        {
            return; // the client went away
        }
    }

    response.StatusCode = status;
    if (request.Headers.TryGetValue("x-echo-stream-count", out var countHeader))
    {
        await StreamAsync(context, countHeader.ToString());
        return;
    }

    var reader = request.BodyReader;
    if (request.Headers["x-echo-discard"] == "1")
    {
        // The samples' one-way upload: read the whole body, answer its length.
        long total = 0;
        while (true)
        {
            var read = await reader.ReadAsync();
            total += read.Buffer.Length;
            reader.AdvanceTo(read.Buffer.End);
            if (read.IsCompleted)
            {
                break;
            }
        }

        response.ContentType = "text/plain; charset=utf-8";
        await response.WriteAsync(string.Create(CultureInfo.InvariantCulture, $"{total}\n"));
        return;
    }

    var first = await reader.ReadAsync();
    if (first.Buffer.IsEmpty && first.IsCompleted)
    {
        // Empty body: "{METHOD} {target}\n".
        reader.AdvanceTo(first.Buffer.End);
        var target = context.Features.Get<IHttpRequestFeature>()!.RawTarget;
        response.ContentType = "text/plain; charset=utf-8";
        var length = Encoding.UTF8.GetByteCount(request.Method) + 1 + Encoding.UTF8.GetByteCount(target) + 1;
        response.ContentLength = length;
        var span = response.BodyWriter.GetSpan(length);
        var n = Encoding.UTF8.GetBytes(request.Method, span);
        span[n++] = (byte)' ';
        n += Encoding.UTF8.GetBytes(target, span[n..]);
        span[n++] = (byte)'\n';
        response.BodyWriter.Advance(n);
        return;
    }

    // Non-empty body: the same bytes back, same content-type, streamed.
    response.ContentType = string.IsNullOrEmpty(request.ContentType) ? "application/octet-stream" : request.ContentType;
    if (request.ContentLength is { } contentLength)
    {
        response.ContentLength = contentLength;
    }

    // Copy what each read returned, then flush once per read (not once per segment).
    var writer = response.BodyWriter;
    var result = first;
    while (true)
    {
        foreach (var segment in result.Buffer)
        {
            writer.Write(segment.Span);
        }

        reader.AdvanceTo(result.Buffer.End);

        // Flush every time, including after the last read: observed on ASP.NET Core 10.0.12 — once the response
        // has started (an earlier flush), bytes left unflushed in BodyWriter when the delegate returned were not
        // sent (the client got 4,106 of 4,214 bytes and waited forever).
        await writer.FlushAsync();
        if (result.IsCompleted)
        {
            break;
        }

        result = await reader.ReadAsync();
    }
}

// The samples' stream behaviour (docs/conformance.md, "Streams"): N pieces of B bytes ("chunk i", dots, a newline),
// M ms apart, each flushed as it is written (chunked transfer encoding), for bench/streaming.sh.
static async Task StreamAsync(HttpContext context, string countText)
{
    var request = context.Request;
    var count = int.TryParse(countText, NumberStyles.None, CultureInfo.InvariantCulture, out var c) && c is >= 1 and <= 100_000_000 ? c : 1;
    var size = int.TryParse(request.Headers["x-echo-stream-chunk-bytes"], NumberStyles.None, CultureInfo.InvariantCulture, out var b) && b is >= 1 and <= 1 << 20 ? b : 0;
    var interval = int.TryParse(request.Headers["x-echo-stream-interval-ms"], NumberStyles.None, CultureInfo.InvariantCulture, out var m) && m is >= 0 and <= 60_000 ? m : 0;
    context.Response.ContentType = "text/plain; charset=utf-8";
    var writer = context.Response.BodyWriter;
    try
    {
        for (var i = 1; i <= count; i++)
        {
            if (i > 1 && interval > 0)
            {
                await Task.Delay(interval, context.RequestAborted);
            }

            var line = Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"chunk {i}"));
            var length = size > 0 ? size : line.Length + 1;
            var span = writer.GetSpan(length)[..length];
            span.Fill((byte)'.');
            line.AsSpan(0, Math.Min(line.Length, length)).CopyTo(span);
            span[^1] = (byte)'\n';
            writer.Advance(length);
            var flushed = await writer.FlushAsync(context.RequestAborted);
            if (flushed.IsCanceled || flushed.IsCompleted)
            {
                return;
            }
        }
    }
    catch (OperationCanceledException)
    {
        // The client went away.
    }
}

static Task BadRequestAsync(HttpResponse response, string message)
{
    response.StatusCode = 400;
    response.ContentType = "text/plain; charset=utf-8";
    return response.WriteAsync(message);
}
