// Echo backend: serves the echo behaviour (ECHO.md) on a Unix datagram socket.
// Socket path: configuration key Backend:SocketPath (--Backend:SocketPath=/tmp/x/echo.sock, or env
// Backend__SocketPath); default /tmp/gateway/echo.sock. Other Backend:* keys bind DatagramBackendOptions.
// Traces: with OTEL_EXPORTER_OTLP_ENDPOINT set, the backend's spans (gateway.ipc.handle, parented by the gateway's
// attempt span through the request's traceparent) are exported over OTLP; OTEL_SERVICE_NAME defaults to "echo".
// --healthcheck: PING the configured socket instead of serving, exit 0 on PONG (container healthchecks and probes).
using EchoBackend;
using Gateway.Ipc.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry;
using OpenTelemetry.Resources;

const string DefaultSocketPath = "/tmp/gateway/echo.sock";

var builder = Host.CreateApplicationBuilder(args.Where(a => a != HealthCheckCommand.Switch).ToArray());
if (args.Contains(HealthCheckCommand.Switch))
{
    return await HealthCheckCommand.RunAsync(builder.Configuration, DefaultSocketPath);
}

builder.Services
    .AddDatagramBackend("echo", builder.Configuration.GetSection("Backend"), o =>
    {
        o.SocketPath = DefaultSocketPath;

        // The echo answers at once (or awaits its delay): start it on the receive thread, no thread-pool hop.
        o.RunHandlersInline = true;

        // The echo reads BackendRequest.BodyStream: large uploads come as streams (docs/protocol.md §4.5.3).
        o.AcceptStreamedRequestBodies = true;
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

await builder.Build().RunAsync();
return 0;
