// Echo backend: serves the echo behaviour (ECHO.md) on a Unix datagram socket.
// Socket path: configuration key Backend:SocketPath (--Backend:SocketPath=/tmp/x/echo.sock, or env
// Backend__SocketPath); default /tmp/gateway/echo.sock. Other Backend:* keys bind DatagramBackendOptions.
// Traces: with OTEL_EXPORTER_OTLP_ENDPOINT set, the backend's spans (gateway.ipc.handle, parented by the gateway's
// attempt span through the request's traceparent) are exported over OTLP; OTEL_SERVICE_NAME defaults to "echo".
using EchoBackend;
using Gateway.Ipc.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry;
using OpenTelemetry.Resources;

var builder = Host.CreateApplicationBuilder(args);
builder.Services
    .AddDatagramBackend("echo", builder.Configuration.GetSection("Backend"), o =>
    {
        o.SocketPath = "/tmp/gateway/echo.sock";

        // The echo answers at once (or awaits its delay): start it on the receive thread, no thread-pool hop.
        o.RunHandlersInline = true;
    })
    .Map<EchoHandler>();

if (!string.IsNullOrWhiteSpace(builder.Configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]))
{
    builder.Services.AddOpenTelemetry()
        .ConfigureResource(resource => resource.AddService(
            builder.Configuration["OTEL_SERVICE_NAME"] is { Length: > 0 } name ? name : "echo"))
        .WithTracing(tracing => tracing.AddSource(IpcDiagnostics.ActivitySourceName))
        .WithMetrics(metrics => metrics.AddMeter(IpcDiagnostics.MeterName))
        .UseOtlpExporter();
}

builder.Build().Run();
