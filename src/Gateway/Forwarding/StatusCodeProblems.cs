using Microsoft.AspNetCore.Diagnostics;

namespace Gateway.Forwarding;

/// <summary>Problem details for responses that routing produced without a body (404 no route, 405 method).</summary>
internal static class StatusCodeProblems
{
    public static Task WriteAsync(StatusCodeContext statusCodeContext)
    {
        var context = statusCodeContext.HttpContext;
        var request = context.Request;
        switch (context.Response.StatusCode)
        {
            case StatusCodes.Status404NotFound:
                return GatewayProblems.WriteAsync(context, GatewayFailure.NoRoute, $"No route matches {request.Method} {request.Path}.");
            case StatusCodes.Status405MethodNotAllowed:
                var allowed = context.Response.Headers.Allow.ToString();
                return GatewayProblems.WriteAsync(context, GatewayFailure.MethodNotAllowed, $"{request.Path} does not allow {request.Method}; allowed: {allowed}.");
            default:
                var problems = context.RequestServices.GetRequiredService<IProblemDetailsService>();
                return problems.WriteAsync(new ProblemDetailsContext { HttpContext = context }).AsTask();
        }
    }
}
