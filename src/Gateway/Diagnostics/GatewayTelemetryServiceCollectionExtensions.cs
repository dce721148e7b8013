using System.Reflection;
using Gateway.Diagnostics;
using Gateway.Ipc.Diagnostics;
using Microsoft.Extensions.DependencyInjection.Extensions;
using OpenTelemetry;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>Registers the gateway's traces, metrics and logs with OpenTelemetry (docs/observability.md).</summary>
internal static class GatewayTelemetryServiceCollectionExtensions
{
    /// <summary>Configuration key of the console exporter switch (development).</summary>
    public const string ConsoleKey = "Gateway:Telemetry:Console";

    /// <summary>Configuration key that turns the OpenTelemetry SDK on without an exporter (e.g. for tests that add their own).</summary>
    public const string EnabledKey = "Gateway:Telemetry:Enabled";

    /// <summary>The default <c>service.name</c> (overridden by <c>OTEL_SERVICE_NAME</c>).</summary>
    public const string DefaultServiceName = "gateway";

    /// <summary>
    /// Always: the gateway's meter (<see cref="GatewayMetrics"/>), the request-duration middleware, trace and span IDs in
    /// log scopes. The OpenTelemetry SDK (traces: ASP.NET Core + <see cref="IpcDiagnostics.ActivitySourceName"/>; metrics:
    /// ASP.NET Core, <see cref="GatewayMetrics.MeterName"/>, <see cref="IpcDiagnostics.MeterName"/>, <c>Polly</c>; logs with
    /// scopes) when there is somewhere to send them: OTLP when <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set (the other
    /// <c>OTEL_*</c> variables apply as usual), the console when <see cref="ConsoleKey"/> is true, or none but on when
    /// <see cref="EnabledKey"/> is true.
    /// </summary>
    public static IServiceCollection AddGatewayTelemetry(this IServiceCollection services, IConfiguration configuration)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        services.TryAddSingleton<GatewayMetrics>();
        services.AddTransient<IStartupFilter, GatewayTelemetryStartupFilter>();
        services.Configure<LoggerFactoryOptions>(options =>
            options.ActivityTrackingOptions |= ActivityTrackingOptions.TraceId | ActivityTrackingOptions.SpanId | ActivityTrackingOptions.ParentId);

        var otlp = !string.IsNullOrWhiteSpace(configuration["OTEL_EXPORTER_OTLP_ENDPOINT"]);
        // Read before the options exist; a value that is not a boolean counts as false here and fails validation at start.
        var console = bool.TryParse(configuration[ConsoleKey], out var consoleOn) && consoleOn;
        if (!otlp && !console && !(bool.TryParse(configuration[EnabledKey], out var enabled) && enabled))
        {
            return services;
        }

        var version = typeof(GatewayMetrics).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion;
        var builder = services.AddOpenTelemetry()
            .ConfigureResource(resource => resource.AddService(
                serviceName: configuration["OTEL_SERVICE_NAME"] is { Length: > 0 } name ? name : DefaultServiceName,
                serviceVersion: version))
            .WithTracing(tracing =>
            {
                tracing.AddAspNetCoreInstrumentation().AddSource(IpcDiagnostics.ActivitySourceName);
                if (console)
                {
                    tracing.AddConsoleExporter();
                }
            })
            .WithMetrics(metrics =>
            {
                metrics.AddAspNetCoreInstrumentation()
                    .AddMeter(GatewayMetrics.MeterName, IpcDiagnostics.MeterName, "Polly");
                if (console)
                {
                    metrics.AddConsoleExporter();
                }
            })
            .WithLogging(
                logging =>
                {
                    if (console)
                    {
                        logging.AddConsoleExporter();
                    }
                },
                options =>
                {
                    options.IncludeScopes = true;
                    options.IncludeFormattedMessage = true;
                });

        if (otlp)
        {
            builder.UseOtlpExporter();
        }

        return services;
    }
}
