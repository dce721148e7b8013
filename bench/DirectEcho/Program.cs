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
    var reader = request.BodyReader;
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

static Task BadRequestAsync(HttpResponse response, string message)
{
    response.StatusCode = 400;
    response.ContentType = "text/plain; charset=utf-8";
    return response.WriteAsync(message);
}
