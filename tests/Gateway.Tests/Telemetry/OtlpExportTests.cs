using System.Diagnostics;
using System.Net;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Trace;
using static Gateway.Tests.Telemetry.TelemetrySettings;

namespace Gateway.Tests.Telemetry;

public class OtlpExportTests
{
    [Fact]
    public async Task OtlpEndpointConfigured_SpansArePostedToTheReceiver_OverHttpProtobuf()
    {
        using var dir = new TempSocketDirectory();
        var capture = new SpanCapture();
        await using var receiver = OtlpReceiver.Start(capture.TraceId);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(Ok()));
        var settings = Route(backend.SocketPath, "exported", "xb");
        settings.Remove("Gateway:Telemetry:Enabled"); // the endpoint alone turns the SDK on
        settings["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint;
        settings["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf";
        settings["OTEL_SERVICE_NAME"] = "gateway-under-test";
        await using var factory = new GatewayFactory(dir, settings, capture.Register);
        using var client = factory.CreateClient();
        using var message = new HttpRequestMessage(HttpMethod.Get, "/api/x");
        message.Headers.Add("traceparent", capture.CallerTraceParent);

        using var response = await client.SendAsync(message);
        await capture.WaitForAsync(s => s.Any(a => a.Source.Name == "Microsoft.AspNetCore") && s.Any(a => IsIpc(a, ActivityKind.Server)));
        Assert.True(factory.Services.GetRequiredService<TracerProvider>().ForceFlush(30_000));
        var body = await receiver.TraceExport.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/x-protobuf", receiver.ContentType);
        Assert.True(Contains(body, System.Text.Encoding.ASCII.GetBytes("gateway-under-test")), "service.name is in the resource");
        Assert.True(Contains(body, System.Text.Encoding.ASCII.GetBytes("gateway.ipc.request")), "the attempt span was exported");
    }

    private static bool Contains(byte[] haystack, byte[] needle) => haystack.AsSpan().IndexOf(needle) >= 0;
}
