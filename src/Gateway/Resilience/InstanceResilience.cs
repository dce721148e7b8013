using System.Diagnostics.CodeAnalysis;
using Gateway.Configuration;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;
using Polly;
using Polly.CircuitBreaker;

namespace Gateway.Resilience;

/// <summary>The per-instance resilience settings; part of an instance's identity, so a change makes a new instance.</summary>
internal sealed record InstanceResilienceSettings(
    int MaxInFlight,
    TimeSpan QueueTimeout,
    double FailureRatio,
    int MinimumThroughput,
    TimeSpan SamplingDuration,
    TimeSpan BreakDuration,
    int EjectAfterFailures)
{
    public static InstanceResilienceSettings Default { get; } = From(new BackendOptions());

    public static InstanceResilienceSettings From(BackendOptions backend) => new(
        backend.MaxInFlightPerInstance,
        backend.QueueTimeout,
        backend.CircuitBreaker.FailureRatio,
        backend.CircuitBreaker.MinimumThroughput,
        backend.CircuitBreaker.SamplingDuration,
        backend.CircuitBreaker.BreakDuration,
        backend.HealthCheck.EjectAfterFailures);
}

/// <summary>
/// The resilience state of one backend instance: its Polly circuit breaker, its in-flight cap (bounded wait),
/// ejection (passive: consecutive failures; active: PING probes) and the counters shown by <c>/admin/backends</c>.
/// </summary>
internal sealed class InstanceResilience : IDisposable
{
    private readonly TimeProvider _timeProvider;
    private readonly SemaphoreSlim _slots;
    private readonly LatencyWindow _latencies = new(256);
    private readonly Lock _breakerLock = new();
    private readonly string _socketPath;
    private readonly ILogger _logger;
    private object? _breaker;
    private int _consecutiveFailures;
    private int _ejected;
    private int _failedProbes;
    private long _timeouts;
    private long _retries;
    private long _rejected;
    private long _failures;

    public InstanceResilience(InstanceResilienceSettings settings, TimeProvider timeProvider, string socketPath = "", ILogger? logger = null)
    {
        Settings = settings;
        _timeProvider = timeProvider;
        logger ??= Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance;
        _slots = new SemaphoreSlim(settings.MaxInFlight, settings.MaxInFlight);
        _socketPath = socketPath;
        _logger = logger;
    }

    public InstanceResilienceSettings Settings { get; }

    /// <summary>
    /// The instance's circuit breaker (Polly), typed by the replies the instance gives (<see cref="DatagramReply"/> for an
    /// envelope backend, the raw reply for a raw one); it samples each attempt's outcome, wrapping the attempt only while
    /// the circuit is not closed (see <c>ForwardingAttempt.ExecuteOnInstanceAsync</c>). Typed, so that Polly
    /// runs it without bridging every call through <see cref="object"/> (three fewer state machines per held request).
    /// Built on first use; an instance only ever answers one kind of reply.
    /// </summary>
    /// <typeparam name="TReply">The reply type.</typeparam>
    /// <returns>The breaker.</returns>
    public ResiliencePipeline<TReply> GetBreaker<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.All)] TReply>()
    {
        if (Volatile.Read(ref _breaker) is ResiliencePipeline<TReply> breaker)
        {
            return breaker;
        }

        lock (_breakerLock)
        {
            if (_breaker is ResiliencePipeline<TReply> built)
            {
                return built;
            }

            if (_breaker is not null)
            {
                throw new InvalidOperationException($"Instance {_socketPath} already has a circuit breaker for another reply type.");
            }

            built = BuildBreaker<TReply>();
            Volatile.Write(ref _breaker, built);
            return built;
        }
    }

    private ResiliencePipeline<TReply> BuildBreaker<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.All)] TReply>()
    {
        var logger = _logger;
        var socketPath = _socketPath;
        return new ResiliencePipelineBuilder<TReply> { TimeProvider = _timeProvider }
            .AddCircuitBreaker(new CircuitBreakerStrategyOptions<TReply>
            {
                FailureRatio = Settings.FailureRatio,
                MinimumThroughput = Settings.MinimumThroughput,
                SamplingDuration = Settings.SamplingDuration,
                BreakDuration = Settings.BreakDuration,
                StateProvider = Circuit,
                ShouldHandle = args => ValueTask.FromResult(IsInstanceFailure(args.Outcome.Exception) || IsServerErrorReply(args.Outcome.Result)),
                OnOpened = args =>
                {
                    ResilienceLog.CircuitOpened(logger, socketPath, args.BreakDuration);
                    return default;
                },
                OnHalfOpened = _ =>
                {
                    ResilienceLog.CircuitHalfOpened(logger, socketPath);
                    return default;
                },
                OnClosed = _ =>
                {
                    ResilienceLog.CircuitClosed(logger, socketPath);
                    return default;
                },
            })
            .Build();
    }

    public CircuitBreakerStateProvider Circuit { get; } = new();

    /// <summary>Circuit state as the gauge <c>gateway.circuit.state</c> reports it.</summary>
    public const int CircuitClosed = 0;

    /// <inheritdoc cref="CircuitClosed"/>
    public const int CircuitHalfOpen = 1;

    /// <inheritdoc cref="CircuitClosed"/>
    public const int CircuitOpen = 2;

    /// <summary>
    /// The circuit state for metrics (<see cref="CircuitClosed"/>, <see cref="CircuitHalfOpen"/>, <see cref="CircuitOpen"/>),
    /// read from the breaker's state provider: the state is changed under the breaker's lock before the attempt's outcome
    /// is returned (its OnOpened / OnHalfOpened / OnClosed callbacks, which only log, may run a little later).
    /// </summary>
    public int CircuitGaugeValue => Circuit.CircuitState switch
    {
        CircuitState.Closed => CircuitClosed,
        CircuitState.HalfOpen => CircuitHalfOpen,
        _ => CircuitOpen, // Open or Isolated
    };

    /// <summary>Ejected: too many consecutive failures or a failed probe; only a successful probe readmits it.</summary>
    public bool IsEjected => Volatile.Read(ref _ejected) != 0;

    /// <summary>Eligible for new requests: not ejected and the circuit is not open.</summary>
    public bool IsAvailable => !IsEjected && Circuit.CircuitState is CircuitState.Closed or CircuitState.HalfOpen;

    public long Timeouts => Interlocked.Read(ref _timeouts);

    public long Retries => Interlocked.Read(ref _retries);

    public long Rejected => Interlocked.Read(ref _rejected);

    public long Failures => Interlocked.Read(ref _failures);

    public DateTimeOffset? LastProbe { get; private set; }

    public bool? LastProbeSucceeded { get; private set; }

    /// <summary>Probes that failed in a row (0 after a successful one).</summary>
    public int ConsecutiveFailedProbes => Volatile.Read(ref _failedProbes);

    /// <summary>The first re-probe of an instance that is ejected or did not answer its last probe comes this long after it.</summary>
    public static readonly TimeSpan FirstReprobeDelay = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// When the instance is due for its next probe. A healthy instance: <paramref name="interval"/> after its last
    /// probe. One that is ejected or failed its last probe (e.g. a backend still starting next to the gateway): sooner,
    /// with backoff: 0.5 s after the last probe, then 1 s, 2 s, … doubling per failed probe, never later than
    /// <paramref name="interval"/>; so a backend that comes up a moment after the gateway is taken in within about a
    /// second, not after a whole interval. Never probed: now.
    /// </summary>
    /// <param name="interval">The backend's <c>HealthCheck:Interval</c>.</param>
    /// <returns>The time of the next probe.</returns>
    public DateTimeOffset NextProbeDue(TimeSpan interval)
    {
        if (LastProbe is not { } last)
        {
            return DateTimeOffset.MinValue;
        }

        if (!IsEjected && LastProbeSucceeded != false)
        {
            return last + interval;
        }

        var failed = Math.Max(ConsecutiveFailedProbes, 1);
        var backoff = failed >= 31 ? interval : FirstReprobeDelay * (1L << Math.Min(failed - 1, 30));
        return last + (backoff < interval ? backoff : interval);
    }

    /// <summary>Failures that say something about the instance (not about the request or the caller).</summary>
    public static bool IsInstanceFailure(Exception? exception) => exception is DatagramException
    {
        Failure: DatagramFailure.Timeout or DatagramFailure.BackendAbsent or DatagramFailure.BackendOverloaded,
    };

    /// <summary>
    /// For the circuit breaker only: an ERROR reply of the 5xx class (<c>INTERNAL</c>, <c>DEADLINE_EXCEEDED</c>, codes the
    /// gateway does not know) says the instance is failing, while the 4xx class (<c>MALFORMED</c>, <c>NOT_FOUND</c>,
    /// <c>TOO_LARGE</c>) is about the request. (<c>OVERLOADED</c> arrives as an exception.) Such replies are still
    /// returned to the caller as they are, never retried (the handler ran), and do not count towards ejection.
    /// </summary>
    public static bool IsServerErrorReply(object? result) =>
        result is DatagramReply { Kind: MessageKind.Error } reply
        && reply.Error.Code is not (IpcErrorCode.Malformed or IpcErrorCode.NotFound or IpcErrorCode.TooLarge or IpcErrorCode.Overloaded);

    /// <summary>
    /// Waits up to the queue timeout, and at most <paramref name="maxWait"/> (what is left of the request's budget), for
    /// an in-flight slot; false when none freed up in time. Only a wait that ran for the whole queue timeout counts as
    /// rejected (busy); one cut short by the budget is the request's timeout.
    /// </summary>
    public async ValueTask<bool> TryEnterAsync(CancellationToken cancellationToken, TimeSpan maxWait = default)
    {
        if (_slots.Wait(0, CancellationToken.None))
        {
            return true;
        }

        var budgetBound = maxWait > TimeSpan.Zero && maxWait < Settings.QueueTimeout;
        var wait = budgetBound ? maxWait : Settings.QueueTimeout;
        if (wait <= TimeSpan.Zero)
        {
            Interlocked.Increment(ref _rejected);
            return false;
        }

        using var timeout = new CancellationTokenSource(wait, _timeProvider);
        OnQueued?.Invoke();
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(timeout.Token, cancellationToken);
        try
        {
            await _slots.WaitAsync(linked.Token).ConfigureAwait(false);
            return true;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            if (!budgetBound)
            {
                Interlocked.Increment(ref _rejected);
            }

            return false;
        }
    }

    public void Exit() => _slots.Release();

    /// <summary>Test hook: called when a request starts waiting for a slot (its queue timeout is running).</summary>
    internal Action? OnQueued { get; set; }

    public void RecordSuccess(TimeSpan latency)
    {
        _latencies.Add(latency.TotalMilliseconds);
        Volatile.Write(ref _consecutiveFailures, 0);
    }

    /// <summary>Counts a failed attempt; returns true when this failure ejected the instance.</summary>
    public bool RecordFailure(Exception exception)
    {
        if (!IsInstanceFailure(exception))
        {
            return false;
        }

        Interlocked.Increment(ref _failures);
        if (exception is DatagramException { Failure: DatagramFailure.Timeout })
        {
            Interlocked.Increment(ref _timeouts);
        }

        return Interlocked.Increment(ref _consecutiveFailures) >= Settings.EjectAfterFailures
            && Interlocked.Exchange(ref _ejected, 1) == 0;
    }

    public void RecordRetry() => Interlocked.Increment(ref _retries);

    /// <summary>Records a probe; returns the change of ejection state, if any (true = readmitted, false = ejected).</summary>
    public bool? RecordProbe(bool healthy)
    {
        LastProbe = _timeProvider.GetUtcNow();
        LastProbeSucceeded = healthy;
        if (healthy)
        {
            Volatile.Write(ref _failedProbes, 0);
            Volatile.Write(ref _consecutiveFailures, 0);
            return Interlocked.Exchange(ref _ejected, 0) != 0 ? true : null;
        }

        Interlocked.Increment(ref _failedProbes);
        return Interlocked.Exchange(ref _ejected, 1) == 0 ? false : null;
    }

    public (double P50, double P90, double P99, int Samples) LatencyPercentiles() => _latencies.Percentiles();

    public void Dispose() => _slots.Dispose();
}

/// <summary>The most recent latencies of an instance (a ring), for percentiles.</summary>
internal sealed class LatencyWindow(int capacity)
{
    private readonly double[] _samples = new double[capacity];
    private readonly Lock _gate = new();
    private int _count;
    private int _next;

    public void Add(double milliseconds)
    {
        lock (_gate)
        {
            _samples[_next] = milliseconds;
            _next = (_next + 1) % _samples.Length;
            _count = Math.Min(_count + 1, _samples.Length);
        }
    }

    public (double P50, double P90, double P99, int Samples) Percentiles()
    {
        double[] copy;
        lock (_gate)
        {
            copy = _samples[.._count];
        }

        if (copy.Length == 0)
        {
            return (0, 0, 0, 0);
        }

        Array.Sort(copy);
        return (At(copy, 0.50), At(copy, 0.90), At(copy, 0.99), copy.Length);

        static double At(double[] sorted, double q) => sorted[Math.Min(sorted.Length - 1, (int)Math.Ceiling(q * sorted.Length) - 1)];
    }
}
