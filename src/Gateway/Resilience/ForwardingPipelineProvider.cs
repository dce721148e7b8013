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
internal sealed class ForwardingPipelineProvider(ResiliencePipelineRegistry<string> registry, TimeProvider timeProvider, ILogger<ForwardingPipelineProvider> logger)
{
    /// <summary>Whether the request may be retried (idempotent method or <c>Idempotency-Key</c>).</summary>
    public static readonly ResiliencePropertyKey<bool> Retryable = new("gateway.retryable");

    /// <summary>The correlation ID (hex) of the request, for logs.</summary>
    public static readonly ResiliencePropertyKey<string> CorrelationId = new("gateway.correlation-id");

    private static readonly TimeSpan MinTimeout = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan MaxTimeout = TimeSpan.FromDays(1);

    public ResiliencePipeline<DatagramReply> GetPipeline(GatewayRoute route, long tableVersion) =>
        registry.GetOrAddPipeline<DatagramReply>($"route:{route.Name}@{tableVersion}", builder => Configure(builder, route));

    private void Configure(ResiliencePipelineBuilder<DatagramReply> builder, GatewayRoute route)
    {
        builder.TimeProvider = timeProvider;
        if (route.Timeout > TimeSpan.Zero && route.Timeout <= MaxTimeout)
        {
            builder.AddTimeout(new TimeoutStrategyOptions { Timeout = route.Timeout < MinTimeout ? MinTimeout : route.Timeout });
        }

        var retry = route.Backend.Retry;
        if (retry.MaxAttempts > 1)
        {
            builder.AddRetry(new RetryStrategyOptions<DatagramReply>
            {
                MaxRetryAttempts = retry.MaxAttempts - 1,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                Delay = retry.BaseDelay,
                MaxDelay = retry.MaxDelay,
                ShouldHandle = args => ValueTask.FromResult(ShouldRetry(args.Outcome.Exception, args.Context)),
                OnRetry = args =>
                {
                    ResilienceLog.Retrying(
                        logger,
                        args.Context.Properties.GetValue(CorrelationId, string.Empty),
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
    /// Retried: timeouts, an absent, overloaded, busy or open-circuit instance — and only for retryable requests.
    /// </summary>
    internal static bool ShouldRetry(Exception? exception, ResilienceContext context) =>
        context.Properties.GetValue(Retryable, false)
        && exception is InstanceBusyException or BrokenCircuitException
            or DatagramException { Failure: DatagramFailure.Timeout or DatagramFailure.BackendAbsent or DatagramFailure.BackendOverloaded };
}

/// <summary>An instance stayed at its in-flight limit for the whole queue timeout.</summary>
internal sealed class InstanceBusyException(BackendInstance instance)
    : Exception($"Backend instance {instance.SocketPath} is at its in-flight limit ({instance.Resilience.Settings.MaxInFlight}).")
{
    public BackendInstance Instance { get; } = instance;
}
