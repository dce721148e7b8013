using System.Net;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Diagnostics;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Telemetry;

/// <summary>
/// The gateway as users run it (a real process, configured by the standard <c>OTEL_*</c> environment variables)
/// exporting to a collector stand-in that decodes the OTLP protobuf, over HTTP and over gRPC. Metrics must keep
/// arriving with their histograms for several export intervals: with the OpenTelemetry packages on mixed versions,
/// every metric batch after the first histogram measurement was dropped while in-memory exporter tests stayed green.
/// </summary>
public class OtlpEndToEndTests
{
    private static readonly string[] Histograms = ["gateway.request.duration", "gateway.ipc.client.attempt.duration"];

    [Theory]
    [InlineData("http/protobuf")]
    [InlineData("grpc")]
    public async Task RealProcess_ExportsMetricsWithSecondScaleHistogramsAndSpans_OverSeveralIntervals(string protocol)
    {
        using var dir = new TempSocketDirectory();
        await using var receiver = await OtlpWireReceiver.StartAsync();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("ok")));
        var environment = new Dictionary<string, string>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = protocol == "grpc" ? receiver.GrpcEndpoint : receiver.HttpEndpoint,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = protocol,
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "200",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
            ["OTEL_SERVICE_NAME"] = "gateway-otlp-e2e",
        };
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartHealthyAsync(
            socket,
            environment,
            "--Gateway:DemoBackend:Enabled=false",
            "--Gateway:Backends:b:Instances:0=" + backend.SocketPath,
            "--Gateway:Routes:api:Path=/api/{**rest}",
            "--Gateway:Routes:api:Backend=b");
        using var client = UnixHttp.CreateClient(socket);
        for (var i = 0; i < 5; i++)
        {
            using var response = await client.GetAsync($"/api/{i}");
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        // Three exports, each with every histogram populated (cumulative temporality: every export carries them).
        var arrived = await receiver.WaitUntilAsync(r => ExportsWithHistograms(r) >= 3 && r.SpanNames.Any(n => n.StartsWith("gateway.ipc.request ", StringComparison.Ordinal)), TimeSpan.FromSeconds(60));

        Assert.True(arrived, $"{ExportsWithHistograms(receiver)} metric exports with the histograms, spans [{string.Join(", ", receiver.SpanNames.Distinct())}], of {receiver.MetricsExports.Count} exports; gateway output:\n{gateway.Output}");
        Assert.Empty(receiver.Errors);
        Assert.All(receiver.MetricsExports, e => Assert.Equal(protocol, e.Protocol));
        var points = receiver.MetricsExports.SelectMany(e => e.Histograms).Where(h => Histograms.Contains(h.Name) && h.Count > 0).ToList();
        Assert.All(points, h =>
        {
            Assert.Equal("s", h.Unit);
            Assert.Equal(IpcDiagnostics.DurationBucketBoundaries, h.Bounds);
            Assert.Equal(h.Bounds.Count + 1, h.BucketCounts.Count);
            Assert.Equal(h.Count, (ulong)h.BucketCounts.Sum(c => (decimal)c));

            // Second-scale buckets: local requests land below 1 s, not all in the first bucket of a millisecond scale.
            Assert.True(h.Sum < h.Count * 1.0, $"{h.Name}: sum {h.Sum} s for {h.Count} requests");
        });
        Assert.Contains(points, h => h.Name == "gateway.request.duration" && h.Count >= 5);
        Assert.Contains(receiver.SpanNames, n => n == "gateway.ipc.handle GET" || n.StartsWith("gateway.ipc.request ", StringComparison.Ordinal));
    }

    private static int ExportsWithHistograms(OtlpWireReceiver receiver) =>
        receiver.MetricsExports.Count(e => Histograms.All(name => e.Histograms.Any(h => h.Name == name && h.Count > 0)));
}
