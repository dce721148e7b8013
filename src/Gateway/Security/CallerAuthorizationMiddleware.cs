using System.Globalization;
using Gateway.Diagnostics;
using Gateway.Forwarding;
using Gateway.Routing;

namespace Gateway.Security;

/// <summary>Marks an endpoint under <c>/admin</c>: the <c>Gateway:Admin</c> allow-list applies after the global lists.</summary>
internal sealed class AdminEndpointMetadata
{
    public static readonly AdminEndpointMetadata Instance = new();
}

/// <summary>Marks an endpoint that <c>Gateway:Authorization:ExemptHealthEndpoints</c> opens to every caller.</summary>
internal sealed class HealthEndpointMetadata
{
    public static readonly HealthEndpointMetadata Instance = new();
}

/// <summary>
/// Checks the caller's peer credentials against the global allow-lists and then the matched route's (both must
/// pass, so a route can only narrow the global lists). A denied caller gets 403 problem details naming the rule's
/// configuration key, never the lists. Every request's later log entries carry the caller in a scope (the request's
/// <see cref="RequestLogScope"/>, to which forwarding adds its IDs).
/// The lists come from the current route table, so configuration reloads apply.
/// </summary>
internal sealed class CallerAuthorizationMiddleware(RequestDelegate next, RouteTableProvider routes, ILogger<CallerAuthorizationMiddleware> logger)
{
    public async Task InvokeAsync(HttpContext context)
    {
        var caller = context.Features.Get<IPeerCredentialsFeature>();
        using var scope = RequestLogScope.Begin(logger, context, caller);

        if (Denying(context, caller) is { } rule)
        {
            await DenyAsync(context, caller, rule).ConfigureAwait(false);
            return;
        }

        await next(context).ConfigureAwait(false);
    }

    /// <summary>The first rule that the caller fails, or null.</summary>
    private CallerRule? Denying(HttpContext context, IPeerCredentialsFeature? caller)
    {
        var table = routes.Current;
        var metadata = context.GetEndpoint()?.Metadata;
        if (table.ExemptHealthEndpoints && metadata?.GetMetadata<HealthEndpointMetadata>() is not null)
        {
            return null;
        }

        if (table.CallerRule is { } global && !global.Allows(caller))
        {
            return global;
        }

        if (metadata?.GetMetadata<AdminEndpointMetadata>() is not null && !table.AdminRule.Allows(caller))
        {
            return table.AdminRule;
        }

        // The rule of the current table, even when routing still matched on the previous one: a tightened list applies
        // as soon as the reload is in.
        if (metadata?.GetMetadata<GatewayRoute>() is { } matched
            && (table.FindRoute(matched.Name) ?? matched).CallerRule is { } route
            && !route.Allows(caller))
        {
            return route;
        }

        return null;
    }

    private Task DenyAsync(HttpContext context, IPeerCredentialsFeature? caller, CallerRule rule)
    {
        var request = context.Request;
        string detail;
        if (caller is null)
        {
            SecurityLog.UnknownCallerDenied(logger, request.Method, request.Path, rule.Name);
            detail = $"The caller's identity is unknown (the connection is not on the gateway's Unix socket), and {request.Path} is restricted by {rule.Name}.";
        }
        else
        {
            SecurityLog.CallerDenied(logger, caller.Uid, caller.Gid, caller.Pid, request.Method, request.Path, rule.Name);
            detail = string.Create(CultureInfo.InvariantCulture, $"Caller uid {caller.Uid} (gid {caller.Gid}) is not allowed to call {request.Path} by {rule.Name}.");
        }

        return GatewayProblems.WriteAsync(context, GatewayFailure.CallerNotAllowed, detail, [new("rule", rule.Name)]);
    }
}
