using Gateway.Diagnostics;
using Gateway.Ipc.Client;
using Gateway.Routing;
using Polly;
using Polly.CircuitBreaker;
using Polly.Registry;
using Polly.Retry;
using Polly.Timeout;

namespace Gateway.Resilience;

/// <summary>
/// The Polly pipeline of each route: an overall timeout (the route's budget) around retries with exponential
/// backoff and jitter. Pipelines live in the DI <see cref="ResiliencePipelineRegistry{TKey}"/>, keyed by route
/// name and route-table version, so a configuration reload gets new pipelines and in-flight requests keep theirs.
/// The per-attempt timeout and the per-instance circuit breaker are applied inside each attempt
/// (<see cref="ForwardingAttempt"/>), because the instance is chosen per attempt.
/// </summary>
internal sealed class ForwardingPipelineProvider(ResiliencePipelineRegistry<string> registry, TimeProvider timeProvider, GatewayMetrics metrics, ILogger<ForwardingPipelineProvider> logger)
{
    /// <summary>The request being forwarded: whether it may be retried, its budget, its correlation ID (for logs).</summary>
    public static readonly ResiliencePropertyKey<ForwardingAttempt> Attempt = new("gateway.attempt");

    private static readonly TimeSpan MinTimeout = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan MaxTimeout = TimeSpan.FromDays(1);

    /// <summary>
    /// The route's pipeline for this table version. Not generic in the reply: envelope attempts return a
    /// <see cref="DatagramReply"/>, raw ones a <see cref="Gateway.Ipc.Raw.RawReply"/>, through the same strategies
    /// (retries are decided on exceptions only).
    /// </summary>
    public ResiliencePipeline GetPipeline(GatewayRoute route, long tableVersion) =>
        registry.GetOrAddPipeline($"route:{route.Name}@{tableVersion}", builder => Configure(builder, route));

    private void Configure(ResiliencePipelineBuilder builder, GatewayRoute route)
    {
        builder.TimeProvider = timeProvider;
        if (route.Timeout > TimeSpan.Zero && route.Timeout <= MaxTimeout)
        {
            builder.AddTimeout(new TimeoutStrategyOptions { Timeout = route.Timeout < MinTimeout ? MinTimeout : route.Timeout });
        }

        var retry = route.Backend.Retry;
        if (retry.MaxAttempts > 1)
        {
            builder.AddRetry(new RetryStrategyOptions
            {
                MaxRetryAttempts = retry.MaxAttempts - 1,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = retry.BaseDelay,
                MaxDelay = retry.MaxDelay,
                ShouldHandle = args => ValueTask.FromResult(ShouldRetry(args.Outcome.Exception, args.Context)),
                OnRetry = args =>
                {
                    metrics.RecordRetry(route.Name, route.Backend.Name, RetryReason(args.Outcome.Exception));
                    ResilienceLog.Retrying(
                        logger,
                        args.Context.Properties.TryGetValue(Attempt, out var attempt) ? attempt.CorrelationText : string.Empty,
                        route.Name,
                        args.AttemptNumber + 2,
                        args.RetryDelay,
                        args.Outcome.Exception?.Message ?? "failed");
                    return default;
                },
            });
        }
    }

    /// <summary>
    /// Retried: timeouts, an absent, overloaded, busy or open-circuit instance — and only for retryable requests
    /// with budget left (an attempt that ended because the budget ran out is the request's timeout, not a reason to retry).
    /// </summary>
    internal static bool ShouldRetry(Exception? exception, ResilienceContext context) =>
        context.Properties.TryGetValue(Attempt, out var attempt)
        && attempt.Retryable
        && attempt.HasBudgetLeft
        && exception is InstanceBusyException or BrokenCircuitException
            or DatagramException { Failure: DatagramFailure.Timeout or DatagramFailure.BackendAbsent or DatagramFailure.BackendOverloaded };

    /// <summary>The <c>gateway.retry_reason</c> of a retried outcome.</summary>
    internal static string RetryReason(Exception? exception) => exception switch
    {
        DatagramException ex => Gateway.Ipc.Diagnostics.IpcDiagnostics.ErrorType(ex.Failure),
        InstanceBusyException => "backend_busy",
        BrokenCircuitException => "circuit_open",
        _ => "other",
    };
}

/// <summary>An instance stayed at its in-flight limit for the whole queue timeout.</summary>
internal sealed class InstanceBusyException(BackendInstance instance)
    : Exception($"Backend instance {instance.SocketPath} is at its in-flight limit ({instance.Resilience.Settings.MaxInFlight}).")
{
    public BackendInstance Instance { get; } = instance;
}
