namespace Gateway.OpenApi;

/// <summary>Paths and names of the OpenAPI document and its gateway-specific extensions.</summary>
internal static class GatewayOpenApi
{
    public const string DocumentName = "v1";

    /// <summary>Route pattern of the document (<c>/openapi/v1.json</c>).</summary>
    public const string DocumentPattern = "/openapi/{documentName}.json";

    /// <summary>Swagger UI lives at <c>/swagger</c> (<c>/swagger/index.html</c>).</summary>
    public const string SwaggerUIPrefix = "swagger";

    public const string RoutesTag = "Routes";

    public const string ProblemSchemaName = "GatewayProblemDetails";

    public const string RouteExtension = "x-gateway-route";
    public const string BackendExtension = "x-gateway-backend";
    public const string ModeExtension = "x-gateway-mode";
    public const string TimeoutExtension = "x-gateway-timeout";
    public const string MaxBodySizeExtension = "x-gateway-max-body-size";
    public const string InstancesExtension = "x-gateway-instances";

    /// <summary>Methods documented for a route that allows every method.</summary>
    public static readonly IReadOnlyList<string> DefaultMethods = ["GET", "POST", "PUT", "DELETE", "PATCH"];

    /// <summary>Swagger UI request interceptor: un-escapes <c>%2F</c> in the path (catch-all parameters).</summary>
    public const string UnescapeSlashesInterceptor =
        "function (req) { var q = req.url.indexOf('?'); var p = q < 0 ? req.url : req.url.substring(0, q); "
        + "req.url = p.replace(/%2F/gi, '/') + (q < 0 ? '' : req.url.substring(q)); return req; }";
}
