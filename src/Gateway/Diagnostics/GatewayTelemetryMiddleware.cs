using Gateway.Ipc.Diagnostics;
using Gateway.Routing;
using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Diagnostics;

/// <summary>
/// Records <c>gateway.request.duration</c> for requests that ended on a gateway route, and tags the ASP.NET Core
/// server span with the route, the backend and the correlation ID (so a trace can be found from a log line or an
/// <c>x-correlation-id</c> header). Added first in the pipeline by <see cref="GatewayTelemetryStartupFilter"/>;
/// the endpoint is read after the rest of the pipeline has run.
/// </summary>
internal sealed class GatewayTelemetryMiddleware(RequestDelegate next, GatewayMetrics metrics, TimeProvider timeProvider)
{
    public async Task InvokeAsync(HttpContext context)
    {
        var start = timeProvider.GetTimestamp();
        var failed = false;
        try
        {
            await next(context).ConfigureAwait(false);
        }
        catch
        {
            failed = true;
            throw;
        }
        finally
        {
            if (context.GetEndpoint()?.Metadata.GetMetadata<GatewayRoute>() is { } route)
            {
                var status = failed ? StatusCodes.Status500InternalServerError : context.Response.StatusCode;
                metrics.RecordRequest(route.Name, route.Backend.Name, failed ? "error" : GatewayMetrics.Outcome(status), status, timeProvider.GetElapsedTime(start));
                // Only a span someone records: without a listener, hosting's activity exists for log correlation alone,
                // and its tags would be allocated for nobody.
                if (context.Features.Get<IHttpActivityFeature>()?.Activity is { IsAllDataRequested: true } activity && activity.Source.HasListeners())
                {
                    activity.SetTag(GatewayMetrics.RouteTag, route.Name);
                    activity.SetTag(GatewayMetrics.BackendTag, route.Backend.Name);
                    if (RequestLogScope.CorrelationIdOf(context) is { } correlationId)
                    {
                        activity.SetTag(IpcDiagnostics.CorrelationIdTag, correlationId);
                    }
                }
            }
        }
    }
}

/// <summary>Puts <see cref="GatewayTelemetryMiddleware"/> in front of the application's pipeline.</summary>
internal sealed class GatewayTelemetryStartupFilter : IStartupFilter
{
    public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
    {
        app.UseMiddleware<GatewayTelemetryMiddleware>();
        next(app);
    };
}
