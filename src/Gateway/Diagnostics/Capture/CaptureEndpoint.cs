using System.Globalization;
using System.Text.Json;
using Gateway.Forwarding;
using Gateway.Routing;

namespace Gateway.Diagnostics.Capture;

/// <summary>
/// <c>GET /admin/capture</c>: streams the datagrams the gateway sends and receives as NDJSON, live. The first line says
/// the capture is armed (<c>{"started":…}</c>), then one line per datagram, a <c>{"lost":N}</c> line whenever events
/// were dropped because this reader fell behind, and a last line saying why it ended (<c>{"end":"count"|"duration"|
/// "shutdown","events":N,"lost":N}</c>). A caller that goes away ends it too.
/// </summary>
internal static class CaptureEndpoint
{
    public const string ContentType = "application/x-ndjson";

    public static async Task RunAsync(HttpContext context, CaptureHub hub, RouteTableProvider routes, TimeProvider timeProvider, IHostApplicationLifetime lifetime)
    {
        var errors = new List<string>();
        var filter = CaptureFilter.TryParse(context.Request.Query, routes.Current, errors);
        if (filter is null)
        {
            await GatewayProblems.WriteAsync(context, GatewayFailure.BadCaptureRequest, string.Join(" ", errors), [new("errors", errors)]).ConfigureAwait(false);
            return;
        }

        var session = hub.TryStart(filter);
        if (session is null)
        {
            context.Response.Headers.RetryAfter = "1";
            await GatewayProblems.WriteAsync(context, GatewayFailure.TooManyCaptures, $"{CaptureHub.MaxSessions} captures are running; at most {CaptureHub.MaxSessions} may run at once.").ConfigureAwait(false);
            return;
        }

        using var duration = new CancellationTokenSource(filter.Duration, timeProvider);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(duration.Token, context.RequestAborted, lifetime.ApplicationStopping);
        var response = context.Response;
        response.ContentType = ContentType;
        response.Headers.CacheControl = "no-store";
        var writer = response.BodyWriter;
        if (filter.Pcapng)
        {
            await WritePcapngAsync(context, hub, session, filter, stop.Token).ConfigureAwait(false);
            return;
        }

        await using var json = new Utf8JsonWriter(writer);
        long written = 0, reportedLost = 0;
        string? end = null;
        try
        {
            json.WriteStartObject();
            json.WriteString("started"u8, Format(timeProvider.GetUtcNow()));
            json.WriteNumber("count"u8, filter.Count);
            json.WriteNumber("durationSeconds"u8, filter.Duration.TotalSeconds);
            json.WriteNumber("payloadBytes"u8, filter.PayloadBytes);
            json.WriteEndObject();
            await EndLineAsync(json, writer, flush: true, stop.Token).ConfigureAwait(false);

            var reader = session.Reader;
            while (end is null && await reader.WaitToReadAsync(stop.Token).ConfigureAwait(false))
            {
                while (written < filter.Count && reader.TryRead(out var datagram))
                {
                    datagram.WriteTo(json);
                    await EndLineAsync(json, writer, flush: false, stop.Token).ConfigureAwait(false);
                    written++;
                }

                if (session.Lost is var lost && lost > reportedLost)
                {
                    reportedLost = lost;
                    json.WriteStartObject();
                    json.WriteNumber("lost"u8, lost);
                    json.WriteEndObject();
                    await EndLineAsync(json, writer, flush: false, stop.Token).ConfigureAwait(false);
                }

                if (written >= filter.Count)
                {
                    end = "count";
                }

                await writer.FlushAsync(stop.Token).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            end = context.RequestAborted.IsCancellationRequested ? null
                : lifetime.ApplicationStopping.IsCancellationRequested ? "shutdown"
                : "duration";
            if (end is null)
            {
                return; // nobody is reading any more
            }
        }
        finally
        {
            hub.Stop(session);
        }

        json.WriteStartObject();
        json.WriteString("end"u8, end ?? "count");
        json.WriteNumber("events"u8, written);
        json.WriteNumber("lost"u8, session.Lost);
        json.WriteEndObject();
        await EndLineAsync(json, writer, flush: true, context.RequestAborted).ConfigureAwait(false);
    }

    /// <summary>
    /// pcapng: the blocks as the datagrams come; it ends like an NDJSON capture, without the summary lines (a pcapng file
    /// has no place for them: use the NDJSON form to see how many events a slow reader lost).
    /// </summary>
    private static async Task WritePcapngAsync(HttpContext context, CaptureHub hub, CaptureSession session, CaptureFilter filter, CancellationToken stop)
    {
        var response = context.Response;
        response.ContentType = PcapngWriter.ContentType;
        response.Headers.ContentDisposition = "attachment; filename=\"gateway-capture.pcapng\"";
        var writer = response.BodyWriter;
        long written = 0;
        try
        {
            PcapngWriter.WriteHeader(writer);
            await writer.FlushAsync(stop).ConfigureAwait(false);
            var reader = session.Reader;
            while (written < filter.Count && await reader.WaitToReadAsync(stop).ConfigureAwait(false))
            {
                while (written < filter.Count && reader.TryRead(out var datagram))
                {
                    PcapngWriter.WritePacket(writer, datagram);
                    written++;
                }

                await writer.FlushAsync(stop).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stop.IsCancellationRequested)
        {
            // Duration, shutdown or a reader that went away: the blocks written so far are a whole file.
        }
        finally
        {
            hub.Stop(session);
        }
    }

    private static async ValueTask EndLineAsync(Utf8JsonWriter json, System.IO.Pipelines.PipeWriter writer, bool flush, CancellationToken cancellationToken)
    {
        await json.FlushAsync(cancellationToken).ConfigureAwait(false);
        json.Reset();
        writer.GetSpan(1)[0] = (byte)'\n';
        writer.Advance(1);
        if (flush)
        {
            await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        }
    }

    private static string Format(DateTimeOffset time) => time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture);
}
