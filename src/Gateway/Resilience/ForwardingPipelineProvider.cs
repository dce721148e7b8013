using System.Diagnostics.CodeAnalysis;
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
/// backoff and jitter. Pipelines live in the DI <see cref="ResiliencePipelineRegistry{TKey}"/>, one per route
/// <b>name</b>, built from the current route table and <b>reloaded</b> by Polly whenever the table is replaced
/// (<see cref="RouteTableProvider.ChangeCancellationToken"/> is the pipeline's reload token). A request keeps the
/// pipeline instance it started with; Polly disposes a replaced instance once its last execution has finished
/// (or after 30 s, which for timeout and retry strategies releases nothing an execution still needs).
/// The per-attempt timeout and the per-instance circuit breaker are applied inside each attempt
/// (<see cref="ForwardingAttempt"/>), because the instance is chosen per attempt. A request that is never retried does
/// not run through the route pipeline (<see cref="ForwardingAttempt.RunOnceAsync"/>).
/// </summary>
/// <remarks>
/// Why not one pipeline per table version: Polly's registry has no way to remove a pipeline, so version-keyed
/// pipelines accumulated with every reload. Keyed by route name, the registry holds at most one pipeline per reply type
/// and route name ever configured (a removed route's pipeline stays, rebuilt empty, and is reused if the name comes back).
/// </remarks>
internal sealed class ForwardingPipelineProvider(
    ResiliencePipelineRegistry<string> registry, RouteTableProvider routes, TimeProvider timeProvider, GatewayMetrics metrics, ILogger<ForwardingPipelineProvider> logger)
{
    /// <summary>The request being forwarded: whether it may be retried, its budget, its correlation ID (for logs).</summary>
    public static readonly ResiliencePropertyKey<ForwardingAttempt> Attempt = new("gateway.attempt");

    private static readonly TimeSpan MinTimeout = TimeSpan.FromMilliseconds(10);
    private static readonly TimeSpan MaxTimeout = TimeSpan.FromDays(1);

    private int _live;
    private Action<ResiliencePipelineBuilder<DatagramReply>, ConfigureBuilderContext<string>>? _configureEnvelope;
    private Action<ResiliencePipelineBuilder<Gateway.Ipc.Raw.RawReply>, ConfigureBuilderContext<string>>? _configureRaw;

    /// <summary>Pipeline instances built and not yet disposed (current ones plus replaced ones still executing).</summary>
    public int LivePipelines => Volatile.Read(ref _live);

    /// <summary>
    /// The route's pipeline (built from the current table), typed in the reply: <see cref="DatagramReply"/> for envelope
    /// backends, <see cref="Gateway.Ipc.Raw.RawReply"/> for raw ones (the registry keeps one per route name and reply
    /// type). Typed, an execution needs no bridging between <see cref="object"/> outcomes and the reply (two fewer
    /// async state machines per request, see bench/README.md); retries are decided on exceptions only.
    /// Only requests that may be retried run through it: one that may not (a POST without <c>Idempotency-Key</c>, a raw
    /// POST) makes its one attempt without it (<see cref="ForwardingAttempt.RunOnceAsync"/>).
    /// </summary>
    public ResiliencePipeline<TReply> GetPipeline<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.All)] TReply>(GatewayRoute route) =>
        registry.GetOrAddPipeline(route.PipelineKey, ConfigureFor<TReply>());

    /// <summary>
    /// The builder callback for <typeparamref name="TReply"/>, made once: a lambda that captured the route allocated two
    /// objects every request (the registry calls it only when it builds). The route is looked up by the key's name.
    /// </summary>
    private Action<ResiliencePipelineBuilder<TReply>, ConfigureBuilderContext<string>> ConfigureFor<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.All)] TReply>()
    {
        if (typeof(TReply) == typeof(DatagramReply))
        {
            return (Action<ResiliencePipelineBuilder<TReply>, ConfigureBuilderContext<string>>)(object)(_configureEnvelope ??= Build<DatagramReply>);
        }

        if (typeof(TReply) == typeof(Gateway.Ipc.Raw.RawReply))
        {
            return (Action<ResiliencePipelineBuilder<TReply>, ConfigureBuilderContext<string>>)(object)(_configureRaw ??= Build<Gateway.Ipc.Raw.RawReply>);
        }

        return Build;
    }

    private void Build<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.All)] TReply>(ResiliencePipelineBuilder<TReply> builder, ConfigureBuilderContext<string> context)
    {
        // The token first, then the table (see ChangeCancellationToken): a reload never goes unnoticed.
        context.AddReloadToken(routes.ChangeCancellationToken);
        Interlocked.Increment(ref _live);
        context.OnPipelineDisposed(() => Interlocked.Decrement(ref _live));
        var current = routes.Current.Routes.FirstOrDefault(r => r.PipelineKey == context.PipelineKey);
        builder.TimeProvider = timeProvider;
        if (current is not null)
        {
            Configure(builder, current);
        }
    }

    private void Configure<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.All)] TReply>(ResiliencePipelineBuilder<TReply> builder, GatewayRoute route)
    {
        if (route.Timeout > TimeSpan.Zero && route.Timeout <= MaxTimeout)
        {
            builder.AddTimeout(new TimeoutStrategyOptions { Timeout = route.Timeout < MinTimeout ? MinTimeout : route.Timeout });
        }

        var retry = route.Backend.Retry;
        if (retry.MaxAttempts > 1)
        {
            builder.AddRetry(new RetryStrategyOptions<TReply>
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
