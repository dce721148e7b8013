using System.Globalization;
using System.Threading.RateLimiting;
using Gateway.Configuration;
using Gateway.Forwarding;
using Microsoft.AspNetCore.RateLimiting;
using Microsoft.Extensions.Options;

namespace Gateway.Security;

/// <summary>
/// Per-caller limits with ASP.NET Core rate limiting: a global limiter partitioned by the caller's uid (callers of
/// unknown identity share one partition). <c>Gateway:RateLimiting:ConcurrentRequestsPerCaller</c> is a concurrency
/// limiter; <c>PermitsPerSecond</c>/<c>Burst</c> a token bucket. Rejections are 429 problem details, with
/// <c>Retry-After</c> when the token bucket knows when a token comes back. Read at start-up.
/// </summary>
internal static class CallerRateLimiting
{
    /// <summary>The partition of callers without peer credentials (uids are 32-bit, so no uid maps to it).</summary>
    private const long UnknownCaller = -1;

    public static IServiceCollection AddGatewayRateLimiting(this IServiceCollection services)
    {
        services.AddRateLimiter(_ => { });
        services.AddOptions<RateLimiterOptions>().Configure<IOptions<GatewayOptions>>((limiter, gateway) => Configure(limiter, gateway.Value.RateLimiting));
        return services;
    }

    private static void Configure(RateLimiterOptions options, CallerRateLimitOptions settings)
    {
        if (!settings.Enabled)
        {
            return;
        }

        var limiters = new List<PartitionedRateLimiter<HttpContext>>(2);

        // Concurrency first: a request refused for concurrency then spends no token.
        if (settings.ConcurrentRequestsPerCaller is { } concurrent)
        {
            var concurrency = new ConcurrencyLimiterOptions { PermitLimit = concurrent, QueueLimit = 0 };
            limiters.Add(PartitionedRateLimiter.Create<HttpContext, long>(context => RateLimitPartition.GetConcurrencyLimiter(CallerKey(context), _ => concurrency)));
        }

        if (settings.PermitsPerSecond is { } rate)
        {
            var bucket = TokenBucket(rate, settings.EffectiveBurst);
            limiters.Add(PartitionedRateLimiter.Create<HttpContext, long>(context => RateLimitPartition.GetTokenBucketLimiter(CallerKey(context), _ => bucket)));
        }

        options.GlobalLimiter = limiters.Count == 1 ? limiters[0] : PartitionedRateLimiter.CreateChained([.. limiters]);
        options.RejectionStatusCode = StatusCodes.Status429TooManyRequests;
        options.OnRejected = (context, _) => new ValueTask(RejectAsync(context, settings));
    }

    /// <summary>
    /// A bucket of <paramref name="burst"/> tokens refilled at exactly <paramref name="rate"/> per second, in steps
    /// of at least 100 ms (no timer firing every millisecond at high rates).
    /// </summary>
    internal static TokenBucketRateLimiterOptions TokenBucket(double rate, int burst)
    {
        var tokensPerPeriod = (int)Math.Clamp(Math.Floor(rate / 10), 1, burst);
        return new TokenBucketRateLimiterOptions
        {
            TokenLimit = burst,
            TokensPerPeriod = tokensPerPeriod,
            ReplenishmentPeriod = TimeSpan.FromSeconds(tokensPerPeriod / rate),
            QueueLimit = 0,
            AutoReplenishment = true,
        };
    }

    private static long CallerKey(HttpContext context) => context.Features.Get<IPeerCredentialsFeature>() is { } caller ? caller.Uid : UnknownCaller;

    private static Task RejectAsync(OnRejectedContext rejected, CallerRateLimitOptions settings)
    {
        var context = rejected.HttpContext;
        var who = context.Features.Get<IPeerCredentialsFeature>() is { } caller
            ? string.Create(CultureInfo.InvariantCulture, $"Caller uid {caller.Uid}")
            : "The caller of unknown identity (not on the Unix socket)";
        GatewayFailure failure;
        string detail;
        List<KeyValuePair<string, object?>> extensions;

        // Only the token bucket's refusals carry a retry-after: that tells the two limiters apart.
        if (rejected.Lease.TryGetMetadata(MetadataName.RetryAfter, out var retryAfter))
        {
            var seconds = (long)Math.Max(1, Math.Ceiling(retryAfter.TotalSeconds));
            context.Response.Headers.RetryAfter = seconds.ToString(CultureInfo.InvariantCulture);
            failure = GatewayFailure.RateLimited;
            detail = string.Create(CultureInfo.InvariantCulture, $"{who} exceeded {settings.PermitsPerSecond} requests per second (burst {settings.EffectiveBurst}; Gateway:RateLimiting:PermitsPerSecond). Retry after {seconds} s.");
            extensions = [new("rule", "Gateway:RateLimiting:PermitsPerSecond"), new("retryAfterSeconds", seconds)];
        }
        else
        {
            failure = GatewayFailure.TooManyConcurrentRequests;
            detail = string.Create(CultureInfo.InvariantCulture, $"{who} already has {settings.ConcurrentRequestsPerCaller} requests in flight, the most allowed (Gateway:RateLimiting:ConcurrentRequestsPerCaller).");
            extensions = [new("rule", "Gateway:RateLimiting:ConcurrentRequestsPerCaller")];
        }

        var logger = context.RequestServices.GetRequiredService<ILoggerFactory>().CreateLogger(typeof(CallerRateLimiting).FullName!);
        SecurityLog.RateLimited(logger, context.Request.Method, context.Request.Path, detail);
        return GatewayProblems.WriteAsync(context, failure, detail, extensions);
    }
}
