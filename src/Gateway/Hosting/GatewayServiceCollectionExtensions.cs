using Gateway.Configuration;
using Gateway.Forwarding;
using Gateway.Health;
using Gateway.Routing;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection.Extensions;
using Microsoft.Extensions.Options;

namespace Gateway.Hosting;

internal static class GatewayServiceCollectionExtensions
{
    /// <summary>Registers the gateway: options (validated at start), route table, forwarding, listener, health.</summary>
    public static WebApplicationBuilder AddGateway(this WebApplicationBuilder builder)
    {
        var services = builder.Services;
        services.TryAddSingleton(TimeProvider.System);

        services.AddOptions<GatewayOptions>()
            .BindConfiguration(GatewayOptions.SectionName)
            .PostConfigure(DemoDefaults.Apply)
            .ValidateOnStart();
        services.AddSingleton<IValidateOptions<GatewayOptions>, GatewayOptionsValidator>();
        services.AddOptions<HostOptions>().Configure<IOptions<GatewayOptions>>((host, gateway) => host.ShutdownTimeout = gateway.Value.DrainTimeout);

        services.AddSingleton<RouteTableProvider>();
        services.AddSingleton<ForwardingHandler>();
        services.AddSingleton<GatewayEndpointDataSource>();

        services.AddSingleton<UnixSocketListener>();
        services.AddHostedService(sp => sp.GetRequiredService<UnixSocketListener>());
        services.AddOptions<KestrelServerOptions>().Configure<UnixSocketListener>((kestrel, listener) => listener.Configure(kestrel));
        services.AddHostedService<StartupSummary>();

        services.AddProblemDetails();
        services.AddGatewayHealthChecks();
        return builder;
    }

    /// <summary>Adds the middleware and endpoints: request IDs, problem details for 404/405, health, the routes.</summary>
    public static WebApplication MapGateway(this WebApplication app)
    {
        var options = app.Services.GetRequiredService<IOptions<GatewayOptions>>().Value;
        var requestIdHeader = options.RequestIdHeader;
        app.Use((context, next) =>
        {
            var incoming = context.Request.Headers[requestIdHeader];
            if (incoming.Count == 1 && HeaderRules.IsValidRequestId(incoming[0]))
            {
                context.TraceIdentifier = incoming[0]!;
            }

            context.Response.Headers[requestIdHeader] = context.TraceIdentifier;
            return next(context);
        });

        app.UseStatusCodePages(StatusCodeProblems.WriteAsync);
        app.MapGatewayHealthChecks();
        ((IEndpointRouteBuilder)app).DataSources.Add(app.Services.GetRequiredService<GatewayEndpointDataSource>());
        return app;
    }
}

/// <summary>Logs the route and backend summary once the host has started.</summary>
internal sealed class StartupSummary(RouteTableProvider provider) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken)
    {
        provider.LogSummary();
        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
