using Gateway.Diagnostics;
using Microsoft.AspNetCore.Mvc;

namespace Gateway.Forwarding;

/// <summary>Why the gateway could not return a backend's response. One row of the mapping table each.</summary>
internal enum GatewayFailure
{
    NoRoute,
    MethodNotAllowed,
    BodyTooLarge,
    BackendError,
    BackendNotFound,
    MalformedReply,
    BackendAbsent,
    BackendOverloaded,
    BackendTooLarge,
    Timeout,
    BackendDeadlineExceeded,
    CircuitOpen,
    BackendBusy,
    CallerNotAllowed,
    BadTarget,
    TooManyHeaders,
    HeadersTooLarge,
    RateLimited,
    TooManyConcurrentRequests,
    MalformedRequestBody,
    BadCaptureRequest,
    TooManyCaptures,
}

/// <summary>
/// The one mapping from failure kind to HTTP status and RFC 9457 problem type. Documented in docs/api.md
/// ("Errors").
/// </summary>
internal static class GatewayProblems
{
    public const string TypePrefix = "urn:gateway:problem:";

    /// <summary>Seconds a client should wait before retrying after a 503.</summary>
    public const int RetryAfterSeconds = 1;

    public static (int Status, string Type, string Title) Describe(GatewayFailure failure) => failure switch
    {
        GatewayFailure.BadTarget => (StatusCodes.Status400BadRequest, "bad-target", "The request target is refused by the path rule"),
        GatewayFailure.CallerNotAllowed => (StatusCodes.Status403Forbidden, "caller-not-allowed", "The caller is not allowed"),
        GatewayFailure.TooManyHeaders => (StatusCodes.Status431RequestHeaderFieldsTooLarge, "too-many-headers", "The request has too many header fields"),
        GatewayFailure.HeadersTooLarge => (StatusCodes.Status431RequestHeaderFieldsTooLarge, "headers-too-large", "The request's header fields are too large"),
        GatewayFailure.RateLimited => (StatusCodes.Status429TooManyRequests, "rate-limited", "The caller exceeded its request rate"),
        GatewayFailure.TooManyConcurrentRequests => (StatusCodes.Status429TooManyRequests, "too-many-concurrent-requests", "The caller has too many requests in flight"),
        GatewayFailure.MalformedRequestBody => (StatusCodes.Status400BadRequest, "malformed-request-body", "The request body could not be read"),
        GatewayFailure.BadCaptureRequest => (StatusCodes.Status400BadRequest, "bad-capture-request", "The capture request is invalid"),
        GatewayFailure.TooManyCaptures => (StatusCodes.Status429TooManyRequests, "too-many-captures", "Too many captures are running"),
        GatewayFailure.NoRoute => (StatusCodes.Status404NotFound, "no-route", "No route matches the request"),
        GatewayFailure.MethodNotAllowed => (StatusCodes.Status405MethodNotAllowed, "method-not-allowed", "The route does not allow this method"),
        GatewayFailure.BodyTooLarge => (StatusCodes.Status413PayloadTooLarge, "body-too-large", "The request body is larger than the route allows"),
        GatewayFailure.BackendTooLarge => (StatusCodes.Status413PayloadTooLarge, "backend-too-large", "The backend refused the request as too large"),
        GatewayFailure.BackendError => (StatusCodes.Status502BadGateway, "backend-error", "The backend could not handle the request"),
        GatewayFailure.BackendNotFound => (StatusCodes.Status502BadGateway, "backend-not-found", "The backend has nothing for this method and target"),
        GatewayFailure.MalformedReply => (StatusCodes.Status502BadGateway, "malformed-reply", "The backend's reply is malformed"),
        GatewayFailure.BackendAbsent => (StatusCodes.Status503ServiceUnavailable, "backend-absent", "The backend is not running"),
        GatewayFailure.BackendOverloaded => (StatusCodes.Status503ServiceUnavailable, "backend-overloaded", "The backend is overloaded"),
        GatewayFailure.CircuitOpen => (StatusCodes.Status503ServiceUnavailable, "circuit-open", "The backend is failing; its circuit breaker is open"),
        GatewayFailure.BackendBusy => (StatusCodes.Status503ServiceUnavailable, "backend-busy", "The backend has too many requests in flight"),
        GatewayFailure.Timeout => (StatusCodes.Status504GatewayTimeout, "timeout", "The backend did not reply in time"),
        GatewayFailure.BackendDeadlineExceeded => (StatusCodes.Status504GatewayTimeout, "backend-deadline-exceeded", "The backend ran out of time"),
        _ => (StatusCodes.Status502BadGateway, "backend-error", "The backend could not handle the request"),
    };

    public static ProblemDetails Create(HttpContext context, GatewayFailure failure, string detail, IEnumerable<KeyValuePair<string, object?>>? extensions = null)
    {
        var (status, type, title) = Describe(failure);
        var problem = new ProblemDetails
        {
            Status = status,
            Type = TypePrefix + type,
            Title = title,
            Detail = detail,
            Instance = context.Request.Path,
        };
        problem.Extensions["requestId"] = context.TraceIdentifier;
        foreach (var (key, value) in extensions ?? [])
        {
            problem.Extensions[key] = value;
        }

        if (RequestLogScope.CorrelationIdOf(context) is { } id)
        {
            problem.Extensions["correlationId"] = id;
        }

        return problem;
    }

    public static async Task WriteAsync(HttpContext context, GatewayFailure failure, string detail, IEnumerable<KeyValuePair<string, object?>>? extensions = null)
    {
        var problem = Create(context, failure, detail, extensions);
        var response = context.Response;
        response.StatusCode = problem.Status!.Value;
        if (problem.Status == StatusCodes.Status503ServiceUnavailable)
        {
            response.Headers.RetryAfter = "1";
        }

        var writer = context.RequestServices.GetRequiredService<IProblemDetailsService>();
        await writer.WriteAsync(new ProblemDetailsContext { HttpContext = context, ProblemDetails = problem }).ConfigureAwait(false);
    }
}

internal static class CorrelationItems
{
    public const string CorrelationIdHeader = "X-Correlation-Id";
}
