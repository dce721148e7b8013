using System.Globalization;
using Gateway.Configuration;
using Gateway.Forwarding;
using Microsoft.Extensions.Options;

namespace Gateway.Security;

/// <summary>
/// Enforces <c>Gateway:Limits:MaxRequestHeaderCount</c> and <c>MaxRequestHeadersTotalSize</c> with 431 problem
/// details stating the limit and the actual value. Kestrel's own limits (which answer a bare 431 with no body)
/// are set higher as a backstop by the listener.
/// </summary>
internal sealed class RequestHeaderLimitsMiddleware(RequestDelegate next, IOptions<GatewayOptions> options, ILogger<RequestHeaderLimitsMiddleware> logger)
{
    private readonly int _maxCount = options.Value.Limits.MaxRequestHeaderCount;
    private readonly long _maxSize = options.Value.Limits.MaxRequestHeadersTotalSize;

    public Task InvokeAsync(HttpContext context)
    {
        var count = 0;
        long size = 0;
        foreach (var (name, values) in context.Request.Headers)
        {
            if (name.StartsWith(':'))
            {
                continue; // HTTP/2 pseudo-headers are the request line
            }

            foreach (var value in values)
            {
                // As on the wire: "name: value\r\n".
                count++;
                size += name.Length + (value?.Length ?? 0) + 4;
            }
        }

        if (count > _maxCount)
        {
            var detail = string.Create(CultureInfo.InvariantCulture, $"The request has {count} header fields; at most {_maxCount} are accepted (Gateway:Limits:MaxRequestHeaderCount).");
            SecurityLog.RequestHeadersRejected(logger, detail);
            return GatewayProblems.WriteAsync(context, GatewayFailure.TooManyHeaders, detail, [new("limit", _maxCount), new("actual", count)]);
        }

        if (size > _maxSize)
        {
            var detail = string.Create(CultureInfo.InvariantCulture, $"The request's header fields total {size} bytes; at most {_maxSize} are accepted (Gateway:Limits:MaxRequestHeadersTotalSize).");
            SecurityLog.RequestHeadersRejected(logger, detail);
            return GatewayProblems.WriteAsync(context, GatewayFailure.HeadersTooLarge, detail, [new("limit", _maxSize), new("actual", size)]);
        }

        return next(context);
    }
}
