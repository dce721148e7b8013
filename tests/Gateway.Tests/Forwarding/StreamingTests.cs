using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using System.Net;
using System.Text;
using Gateway.Ipc.Backend;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Gateway.Tests.Forwarding;

/// <summary>Streamed replies (docs/protocol.md §4.5) through a real gateway on Kestrel over its Unix socket.</summary>
public class StreamingTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    private static async Task<string> ReadUntilAsync(Stream body, StringBuilder seen, string expected)
    {
        var buffer = new byte[4096];
        while (!seen.ToString().Contains(expected, StringComparison.Ordinal))
        {
            var n = await body.ReadAsync(buffer).AsTask().WaitAsync(HangGuard);
            if (n == 0)
            {
                break;
            }

            seen.Append(Encoding.UTF8.GetString(buffer, 0, n));
        }

        return seen.ToString();
    }

    [Fact]
    public async Task StreamedReply_IsChunked_AndTheFirstChunkArrivesBeforeTheLastIsProduced()
    {
        using var dir = new TempSocketDirectory();
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) => ValueTask.FromResult(BackendResponse.Stream(
            async (body, ct) =>
            {
                await body.WriteAsync("data: first\n\n"u8.ToArray(), ct);
                await release.Task.WaitAsync(ct);
                await body.WriteAsync("data: last\n\n"u8.ToArray(), ct);
            },
            "text/event-stream")));
        await using var factory = new GatewayFactory(dir, ForwardingTests.Route(backend.SocketPath)).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var response = await client.GetAsync("/api/events", HttpCompletionOption.ResponseHeadersRead).WaitAsync(HangGuard);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(response.Headers.TransferEncodingChunked);
        Assert.Null(response.Content.Headers.ContentLength);
        Assert.Equal("text/event-stream", response.Content.Headers.ContentType?.MediaType);
        await using var body = await response.Content.ReadAsStreamAsync();
        var seen = new StringBuilder();

        // The backend is still waiting for the release: what arrives now was flushed as it was produced.
        Assert.Contains("data: first\n\n", await ReadUntilAsync(body, seen, "data: first\n\n"), StringComparison.Ordinal);
        release.SetResult();
        var all = await ReadUntilAsync(body, seen, "data: last\n\n");
        Assert.Equal(0, await body.ReadAsync(new byte[16]).AsTask().WaitAsync(HangGuard));
        Assert.Equal("data: first\n\ndata: last\n\n", all);
    }

    [Fact]
    public async Task MidStreamError_AbortsTheHttpResponse_NeverACleanEnd()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) => ValueTask.FromResult(BackendResponse.Stream(
            async (body, ct) =>
            {
                await body.WriteAsync("partial"u8.ToArray(), ct);
                throw new IOException("disk gone");
            })));
        await using var factory = new GatewayFactory(dir, ForwardingTests.Route(backend.SocketPath)).StartKestrel();
        using var client = factory.CreateGatewayClient();

        // The abort may overtake the flushed head and first chunk (Kestrel drops unsent output on abort): either way the
        // caller sees a failure, never a response that ends cleanly.
        var failure = await Assert.ThrowsAnyAsync<Exception>(async () =>
        {
            using var response = await client.GetAsync("/api/export", HttpCompletionOption.ResponseHeadersRead).WaitAsync(HangGuard);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            await response.Content.ReadAsByteArrayAsync().WaitAsync(HangGuard);
        });
        Assert.True(failure is HttpRequestException or IOException, failure.ToString());
    }

    [Fact]
    public async Task CallerGoingAway_CancelsTheBackendStream()
    {
        using var dir = new TempSocketDirectory();
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) => ValueTask.FromResult(BackendResponse.Stream(
            async (body, ct) =>
            {
                try
                {
                    while (true)
                    {
                        await body.WriteAsync(new byte[512], ct);
                    }
                }
                catch (OperationCanceledException) when (ct.IsCancellationRequested)
                {
                    cancelled.TrySetResult();
                    throw;
                }
            })));
        await using var factory = new GatewayFactory(dir, ForwardingTests.Route(backend.SocketPath)).StartKestrel();

        using (var client = factory.CreateGatewayClient())
        {
            using var response = await client.GetAsync("/api/tail", HttpCompletionOption.ResponseHeadersRead).WaitAsync(HangGuard);
            await using var body = await response.Content.ReadAsStreamAsync();
            Assert.True(await body.ReadAsync(new byte[512]).AsTask().WaitAsync(HangGuard) > 0);
        }

        // The client and its connection are gone: Kestrel aborts the request, the gateway CANCELs the stream.
        await cancelled.Task.WaitAsync(HangGuard);
        await Eventually.UntilAsync(() => backend.Server.OpenStreamCount == 0, HangGuard, TimeSpan.FromMilliseconds(10));
        Assert.Equal(1, backend.Server.Statistics.StreamsCancelled);
    }

    [Fact]
    public async Task NonStreamingReply_IsUnchanged_WithContentLength_AndTheRequestOffersStreams()
    {
        using var dir = new TempSocketDirectory();
        BackendRequest? seen = null;
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) =>
        {
            seen = request;
            return ValueTask.FromResult(BackendResponse.Text("whole"));
        });
        await using var factory = new GatewayFactory(dir, ForwardingTests.Route(backend.SocketPath)).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var response = await client.GetAsync("/api/x").WaitAsync(HangGuard);

        Assert.Equal("whole", await response.Content.ReadAsStringAsync());
        Assert.Equal(5, response.Content.Headers.ContentLength);
        Assert.NotEqual(true, response.Headers.TransferEncodingChunked);
        Assert.True(seen!.AcceptsStreamedReply);
    }

    [Fact]
    public async Task StreamMetrics_RecordOutcomeChunksBytesAndTimeToFirstChunk()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) => ValueTask.FromResult(BackendResponse.Stream(
            async (body, ct) =>
            {
                foreach (var part in new[] { "ab", "cde", "f" })
                {
                    await body.WriteAsync(Encoding.ASCII.GetBytes(part), ct);
                }

                if (request.Path.EndsWith("/fail", StringComparison.Ordinal))
                {
                    throw new InvalidOperationException("boom");
                }
            })));
        await using var factory = new GatewayFactory(dir, ForwardingTests.Route(backend.SocketPath)).StartKestrel();
        var scope = factory.Services.GetRequiredService<IMeterFactory>();
        var measurements = new ConcurrentQueue<(string Name, double Value, string? Outcome)>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Scope == scope && instrument.Name.StartsWith("gateway.stream.", StringComparison.Ordinal))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => measurements.Enqueue((instrument.Name, value, OutcomeOf(tags))));
        listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => measurements.Enqueue((instrument.Name, value, OutcomeOf(tags))));
        listener.Start();
        using var client = factory.CreateGatewayClient();

        Assert.Equal("abcdef", await client.GetStringAsync("/api/ok").WaitAsync(HangGuard));
        await Assert.ThrowsAnyAsync<Exception>(() => client.GetStringAsync("/api/fail").WaitAsync(HangGuard));

        await Eventually.UntilAsync(() => measurements.Count(m => m.Name == "gateway.stream.count") >= 2, HangGuard, TimeSpan.FromMilliseconds(10));

        // HttpClient may resend the failed GET on a new connection when the abort overtook the head (its own retry of a
        // request that got no response bytes): each is a new stream to the gateway, each aborted.
        var streams = measurements.Count(m => m.Name == "gateway.stream.count");
        Assert.Contains(("gateway.stream.count", 1d, "completed"), measurements);
        Assert.Contains(("gateway.stream.count", 1d, "aborted"), measurements);
        Assert.Contains(("gateway.stream.chunks", 3d, "completed"), measurements);
        Assert.Contains(("gateway.stream.bytes", 6d, "completed"), measurements);
        Assert.Equal(streams, measurements.Count(m => m.Name == "gateway.stream.time_to_first_chunk" && m.Value >= 0));
        Assert.Equal(1, measurements.Count(m => m.Name == "gateway.stream.count" && m.Outcome == "completed"));

        static string? OutcomeOf(ReadOnlySpan<KeyValuePair<string, object?>> tags)
        {
            foreach (var tag in tags)
            {
                if (tag.Key == "gateway.outcome")
                {
                    return (string?)tag.Value;
                }
            }

            return null;
        }
    }
}
