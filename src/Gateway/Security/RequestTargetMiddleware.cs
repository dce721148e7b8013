using Gateway.Forwarding;
using Microsoft.AspNetCore.Http.Features;

namespace Gateway.Security;

/// <summary>
/// Applies <see cref="RequestTargetRule"/> to the raw request target before any endpoint runs: a target that a
/// backend could read as another path than the one routing and caller authorization decided on gets 400
/// <c>urn:gateway:problem:bad-target</c> with the <c>reason</c>. An accepted target decodes to exactly the routed
/// path, and it is what the backend receives (with the query).
/// </summary>
internal sealed class RequestTargetMiddleware(RequestDelegate next, ILogger<RequestTargetMiddleware> logger)
{
    public Task InvokeAsync(HttpContext context)
    {
        var request = context.Request;
        var raw = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        if (string.IsNullOrEmpty(raw))
        {
            raw = request.PathBase.ToUriComponent() + request.Path.ToUriComponent() + request.QueryString.ToUriComponent();
        }

        // Compared with the routed path as it is decoded: an ordinary target costs no allocation.
        var problem = RequestTargetRule.CheckRouted(raw, request.PathBase.Value, request.Path.Value);
        if (problem == TargetProblem.None)
        {
            return next(context);
        }

        var reason = RequestTargetRule.Reason(problem);
        SecurityLog.TargetRejected(logger, request.Method, reason, Truncate(raw));
        return GatewayProblems.WriteAsync(context, GatewayFailure.BadTarget, RequestTargetRule.Describe(problem) + " See docs/security.md, \"The path rule\".", [new("reason", reason)]);
    }

    private static string Truncate(string raw) => raw.Length <= 256 ? raw : raw[..256] + "…";
}
