using Gateway.OpenApi;

namespace Microsoft.Extensions.DependencyInjection;

/// <summary>
/// The OpenAPI document (<c>/openapi/v1.json</c>) and Swagger UI (<c>/swagger</c>). Both are always served: they
/// only describe what the socket already exposes, and they are useful over the Unix socket with curl too.
/// </summary>
internal static class GatewayOpenApiExtensions
{
    public static IServiceCollection AddGatewayOpenApi(this IServiceCollection services)
    {
        services.AddOpenApi(GatewayOpenApi.DocumentName, options =>
        {
            // Read at every generation (the document is not cached), so route reloads show up without a restart.
            options.AddDocumentTransformer<GatewayDocumentTransformer>();
        });
        return services;
    }

    public static WebApplication MapGatewayOpenApi(this WebApplication app)
    {
        // Only requests under the prefix go through Swagger UI's middleware: a forwarded request does not pay for it
        // (an async frame held for the request's whole life, see bench/README.md).
        var prefix = new PathString("/" + GatewayOpenApi.SwaggerUIPrefix);
        app.UseWhen(context => context.Request.Path.StartsWithSegments(prefix), branch => branch.UseSwaggerUI(ui =>
        {
            ui.RoutePrefix = GatewayOpenApi.SwaggerUIPrefix;
            ui.DocumentTitle = "Gateway — Swagger UI";
            // Relative to /swagger/index.html, so it also works under a path base.
            ui.SwaggerEndpoint("../openapi/" + GatewayOpenApi.DocumentName + ".json", "Gateway " + GatewayOpenApi.DocumentName);
            ui.DisplayOperationId();
            ui.DisplayRequestDuration();
            // A catch-all parameter ({**rest}) spans segments: send "a/b" as a/b, not a%2Fb (Swagger UI escapes
            // every path parameter with encodeURIComponent). Only the path part is touched, never the query.
            ui.UseRequestInterceptor(GatewayOpenApi.UnescapeSlashesInterceptor);
        }));
        app.MapOpenApi(GatewayOpenApi.DocumentPattern);
        return app;
    }
}
