using Gateway.Apis;
using Gateway.Configuration;
using Gateway.Diagnostics;
using Gateway.Forwarding;
using Gateway.Health;
using Gateway.Ipc.Diagnostics;
using Gateway.Routing;
using Gateway.Security;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Gateway.Hosting;

internal static class GatewayServiceCollectionExtensions
{
    /// <summary>
    /// Outside Development, drops the Debug logger provider (the default builder adds it): it writes only to an attached
    /// debugger, yet as a provider without external scopes it adds two objects to every log scope every request begins
    /// (about 100 bytes a held request, bench/README.md). Console, EventSource (dotnet-trace, dotnet-monitor) and, when
    /// configured, OpenTelemetry stay.
    /// </summary>
    private static void RemoveDebugLogger(WebApplicationBuilder builder)
    {
        if (builder.Environment.IsDevelopment())
        {
            return;
        }

        for (var i = builder.Services.Count - 1; i >= 0; i--)
        {
            if (builder.Services[i].ServiceType == typeof(ILoggerProvider) && builder.Services[i].ImplementationType == typeof(Microsoft.Extensions.Logging.Debug.DebugLoggerProvider))
            {
                builder.Services.RemoveAt(i);
            }
        }
    }

    /// <summary>Registers the gateway: options (validated at start), route table, forwarding, listener, health.</summary>
    public static WebApplicationBuilder AddGateway(this WebApplicationBuilder builder)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("The gateway runs on Linux only: it relies on Unix datagram sockets with abstract names, SO_PEERCRED and statx(2).");
        }

        var services = builder.Services;
        services.TryAddSingleton(TimeProvider.System);
        RemoveDebugLogger(builder);

        // Under systemd (NOTIFY_SOCKET, LISTEN_PID or a systemd parent): Type=notify readiness and stopping, journal
        // log format; the watchdog pings when WatchdogSec is set (docs/systemd.md).
        builder.Host.UseSystemd();
        var notifySocket = !string.IsNullOrEmpty(Environment.GetEnvironmentVariable("NOTIFY_SOCKET"));
        if (notifySocket && !Microsoft.Extensions.Hosting.Systemd.SystemdHelpers.IsSystemdService())
        {
            // UseSystemd only looks at the parent process; a NOTIFY_SOCKET from elsewhere (a supervisor, a test) gets the
            // library's notifier and lifetime too.
            services.AddSingleton<Microsoft.Extensions.Hosting.Systemd.ISystemdNotifier, Microsoft.Extensions.Hosting.Systemd.SystemdNotifier>();
            services.AddSingleton<IHostLifetime, Microsoft.Extensions.Hosting.Systemd.SystemdLifetime>();
        }

        if (notifySocket)
        {
            services.AddHostedService<SystemdWatchdog>();
        }

        services.AddGatewayOptions();
        // Read directly (not through IOptions<GatewayOptions>) so that resolving HostOptions while the host is
        // built does not run the gateway's validation early: that belongs to start-up (ValidateOnStart).
        services.AddOptions<HostOptions>().Configure<IConfiguration>((host, configuration) =>
        {
            if (TimeSpan.TryParse(configuration[$"{GatewayOptions.SectionName}:DrainTimeout"], System.Globalization.CultureInfo.InvariantCulture, out var drain) && drain >= TimeSpan.Zero)
            {
                host.ShutdownTimeout = drain;
            }
            else
            {
                host.ShutdownTimeout = new GatewayOptions().DrainTimeout;
            }
        });

        services.AddSingleton<Gateway.Ipc.Diagnostics.DatagramTap>();
        services.AddSingleton<Diagnostics.Capture.CaptureHub>();
        services.AddSingleton<RouteTableProvider>();
        services.AddSingleton<ForwardingHandler>();
        services.AddSingleton<GatewayEndpointDataSource>();

        services.AddSingleton<UnixSocketListener>();
        services.AddHostedService(sp => sp.GetRequiredService<UnixSocketListener>());
        services.AddOptions<KestrelServerOptions>().Configure<UnixSocketListener>((kestrel, listener) => listener.Configure(kestrel));
        services.AddHostedService<StartupSummary>();
        services.AddHostedService<Demo.DemoBackendService>();

        services.AddGatewayJson();
        services.AddProblemDetails();
        services.AddGatewayHealthChecks();
        services.AddGatewayOpenApi();
        services.AddGatewayTelemetry(builder.Configuration);
        services.AddGatewayResilience();
        services.AddGatewayRateLimiting();
        return builder;
    }

    /// <summary>
    /// Adds the middleware and endpoints: request IDs, caller authorization (403), the path rule (400), header limits (431), per-caller
    /// rate limits (429), problem details for 404/405, health, the routes.
    /// </summary>
    public static WebApplication MapGateway(this WebApplication app)
    {
        app.UseMiddleware<RequestIdMiddleware>();
        app.UseMiddleware<CallerAuthorizationMiddleware>(); // first: its log scope (the caller) covers the rest
        app.UseMiddleware<RequestTargetMiddleware>(); // before any endpoint: the path rule (docs/security.md)
        app.UseMiddleware<RequestHeaderLimitsMiddleware>();
        app.UseRateLimiter();

        // Problem details for what routing answers without a body (404 no route, 405). A gateway route's response always
        // has its own body or Content-Length (the backend's reply, a problem; a 499 goes to nobody), so its requests skip
        // the middleware and what it costs each request (a feature, the Items dictionary, a state machine: ~350 bytes).
        app.UseWhen(static context => context.GetEndpoint()?.Metadata.GetMetadata<GatewayRoute>() is null, static branch => branch.UseStatusCodePages(StatusCodeProblems.WriteAsync));
        app.MapGatewayHealthChecks();
        app.MapGatewayOpenApi();
        app.MapAdminApi();
        ((IEndpointRouteBuilder)app).DataSources.Add(app.Services.GetRequiredService<GatewayEndpointDataSource>());
        return app;
    }
}

/// <summary>
/// Adopts a well-formed incoming request ID (header <c>Gateway:RequestIdHeader</c>) as the request's
/// <see cref="HttpContext.TraceIdentifier"/>, and returns it in the same response header.
/// </summary>
internal sealed class RequestIdMiddleware(RequestDelegate next, IOptions<GatewayOptions> options)
{
    private readonly string _header = options.Value.RequestIdHeader;

    public Task InvokeAsync(HttpContext context)
    {
        var incoming = context.Request.Headers[_header];
        if (incoming.Count == 1 && HeaderRules.IsValidRequestId(incoming[0]))
        {
            context.TraceIdentifier = incoming[0]!;
        }

        context.Response.Headers[_header] = context.TraceIdentifier;
        return next(context);
    }
}

/// <summary>Logs the route and backend summary once the host has started, and advises on a short datagram queue.</summary>
internal sealed class StartupSummary(RouteTableProvider provider, ILogger<StartupSummary> logger) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        provider.LogSummary();
        Log.SocketCompletionMode(
            logger,
            SocketCompletions.Inline ? "inline on the socket engine's thread" : "on the thread pool",
            SocketCompletions.Variable,
            Environment.GetEnvironmentVariable(SocketCompletions.Variable) ?? "(unset)",
            SocketCompletions.ThreadCountVariable,
            Environment.GetEnvironmentVariable(SocketCompletions.ThreadCountVariable) ?? "(unset)");
        var queueLength = UnixDatagramQueue.ReadMaxLength();
        if (UnixDatagramQueue.IsBelowRecommended(queueLength))
        {
            Log.SmallDatagramQueue(logger, queueLength!.Value + 1, queueLength.Value, UnixDatagramQueue.RecommendedMinimum);
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
