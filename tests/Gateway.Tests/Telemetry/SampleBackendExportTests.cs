using System.Net;
using System.Text;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Telemetry.TelemetrySettings;

namespace Gateway.Tests.Telemetry;

/// <summary>The sample echo process exports its own spans over OTLP, continuing the caller's trace through the gateway.</summary>
public class SampleBackendExportTests
{
    [Fact]
    public async Task EchoProcessWithOtlpEndpoint_ExportsItsHandleSpanInTheCallersTrace()
    {
        using var dir = new TempSocketDirectory();
        var capture = new SpanCapture();
        await using var receiver = OtlpReceiver.Start(capture.TraceId);
        await using var echo = await SampleBackends.StartEchoAsync(
            dir.Socket("echo.sock"),
            "--OTEL_EXPORTER_OTLP_ENDPOINT=" + receiver.Endpoint,
            "--OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
            "--OTEL_SERVICE_NAME=echo-under-test",
            "--OTEL_BSP_SCHEDULE_DELAY=100");
        var settings = Route(dir.Socket("echo.sock"), "echo", "echo");
        settings.Remove("Gateway:Telemetry:Enabled"); // only the backend exports here
        await using var factory = new GatewayFactory(dir, settings);
        using var client = factory.CreateClient();
        using var message = new HttpRequestMessage(HttpMethod.Get, "/api/traced");
        message.Headers.Add("traceparent", capture.CallerTraceParent);

        using var response = await client.SendAsync(message);
        var body = await receiver.TraceExport.WaitAsync(TimeSpan.FromSeconds(60));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.True(body.AsSpan().IndexOf("echo-under-test"u8) >= 0, "service.name of the backend is in the resource");
        Assert.True(body.AsSpan().IndexOf(Encoding.ASCII.GetBytes("gateway.ipc.handle")) >= 0, "the backend's span was exported");
    }
}
