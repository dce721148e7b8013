using System.Diagnostics.CodeAnalysis;
using System.Globalization;
using System.Runtime.InteropServices;
using Gateway.Ipc.Client;
using Gateway.Ipc.Diagnostics;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Raw;
using Gateway.Routing;
using Polly;
using Polly.CircuitBreaker;
using Polly.Timeout;

namespace Gateway.Resilience;

/// <summary>
/// The state of one forwarded request across its attempts, and the attempt itself: choose an instance, patch
/// the attempt number and remaining budget into the frame (the correlation ID stays), wait for an in-flight
/// slot, send through the instance's circuit breaker with the per-attempt timeout.
/// </summary>
/// <remarks>
/// At most once: the backend's replay cache is keyed by (sender address, correlation ID) and every instance
/// has its own cache, and each instance has its own client (reply socket). A retryable request that is not
/// idempotent (it has an <c>Idempotency-Key</c>) therefore sticks to the instance of its first attempt, whose
/// cache replays the reply; idempotent requests prefer an instance not yet tried. The correlation ID is
/// reused on another instance's client too: each client has its own pending table, and their 64-bit
/// sequences start at random values, so it does not collide there.
/// Raw backends (<see cref="RunRawAsync(ResilienceContext, ForwardingAttempt)"/>) have neither correlation nor replay cache: only idempotent methods are
/// retryable there (an <c>Idempotency-Key</c> cannot make a raw POST safe), and a retry moves to another instance.
/// </remarks>
internal sealed class ForwardingAttempt
{
    private readonly List<BackendInstance> _tried = new(2);
    private readonly ReadOnlyMemory<byte> _frame;
    private readonly TimeProvider _timeProvider;
    private readonly ILogger _logger;

    /// <summary>The instance of the first attempt (its client numbered the request).</summary>
    private readonly BackendInstance _first;

    public ForwardingAttempt(GatewayRoute route, BackendInstance first, ReadOnlyMemory<byte> frame, ulong correlationId, bool idempotent, bool retryable, TimeProvider timeProvider, ILogger logger, CancellationToken callerAborted = default)
    {
        CallerAborted = callerAborted;
        Route = route;
        _first = first;
        _frame = frame;
        CorrelationId = correlationId;
        Idempotent = idempotent;
        Retryable = retryable;
        _timeProvider = timeProvider;
        _logger = logger;
        Deadline = route.Timeout == Timeout.InfiniteTimeSpan ? DateTimeOffset.MaxValue : timeProvider.GetUtcNow() + route.Timeout;
    }

    public GatewayRoute Route { get; }

    /// <summary>The HTTP method, for a raw attempt's span (an envelope attempt's span reads it from the frame).</summary>
    public string? Method { get; init; }

    public ulong CorrelationId { get; }

    public bool Idempotent { get; }

    public bool Retryable { get; }

    public DateTimeOffset Deadline { get; }

    /// <summary>
    /// The caller's cancellation (the HTTP request aborted). The datagram attempt itself watches only this token, not
    /// the pipeline's: the attempt's reply timeout never exceeds the remaining budget, so an attempt cut by the budget
    /// ends as a <c>timeout</c> (span, metrics) instead of being cancelled by Polly's overall timeout at the same instant.
    /// </summary>
    public CancellationToken CallerAborted { get; }

    /// <summary>Whether any of the request's budget is left.</summary>
    public bool HasBudgetLeft => !IsSpent(BudgetLeft());

    /// <summary>Attempts made so far.</summary>
    public int Attempts { get; private set; }

    /// <summary>The instance of the latest attempt.</summary>
    public BackendInstance? Last { get; private set; }

    /// <summary>Whether the latest attempt has sent (or may have sent) the request and not received its reply.</summary>
    public bool LastMayBeRunning { get; private set; }

    /// <summary>
    /// One attempt of an envelope request: the route pipeline's outcome callback (<c>ExecuteOutcomeAsync</c>). Outcome
    /// based at both levels (the route pipeline and the instance's breaker), so Polly adds no state machines of its own
    /// to convert results to outcomes and back: a held request keeps about 750 bytes less (bench/README.md). Never
    /// throws: every failure, also one to start (<see cref="Begin"/>), is the returned outcome.
    /// </summary>
    public static ValueTask<Outcome<DatagramReply>> RunAsync(ResilienceContext context, ForwardingAttempt state) => state.RunEnvelopeAsync(context.CancellationToken);

    /// <summary>
    /// The one attempt of an envelope request that is never retried, without a route pipeline: its reply timeout is the
    /// whole budget already (<see cref="AttemptTimeout"/>), its wait for a slot is cut at the budget too, so the route's
    /// timeout strategy, the only one that would apply, would only duplicate them (and hold ~750 bytes and a timer per
    /// request, bench/README.md). The instance's circuit breaker still applies. Never throws.
    /// </summary>
    public ValueTask<Outcome<DatagramReply>> RunOnceAsync() => RunEnvelopeAsync(CallerAborted);

    /// <summary>Like <see cref="RunOnceAsync"/>, for a raw request that is never retried.</summary>
    public ValueTask<Outcome<RawReply>> RunRawOnceAsync() => RunRawAsync(CallerAborted);

    /// <summary>One attempt of a raw request (the pipeline's outcome callback): the body is the datagram. Never throws.</summary>
    public static ValueTask<Outcome<RawReply>> RunRawAsync(ResilienceContext context, ForwardingAttempt state) => state.RunRawAsync(context.CancellationToken);

    /// <summary>Not async itself (one state machine less per attempt); a failure to start is the returned outcome.</summary>
    private ValueTask<Outcome<DatagramReply>> RunEnvelopeAsync(CancellationToken cancellationToken)
    {
        try
        {
            var (instance, attempt, remaining) = Begin();
            var client = instance.Client ?? throw new InvalidOperationException($"Backend '{Route.Backend.Name}' has no envelope client.");

            // The same correlation ID, the next attempt number; the budget that is left is patched in once the
            // instance has a slot for it (ExecuteOnInstanceAsync), since waiting for one spends budget.
            FrameHeader.PatchAttempt(MemoryMarshal.AsMemory(_frame).Span, (ushort)Math.Min(attempt, ushort.MaxValue));

            return ExecuteOnInstanceAsync(
                instance,
                remaining,
                static (state, left) =>
                {
                    FrameHeader.PatchBudget(state.frame.Span, BudgetMs(left));
                    return SendEnvelopeAsync(state.client, state.frame, state.self.AttemptTimeout(state.attempt, left), state.self._timeProvider, state.self.CallerAborted);
                },
                (self: this, client, frame: MemoryMarshal.AsMemory(_frame), attempt),
                cancellationToken);
        }
        catch (Exception ex)
        {
            return new(Outcome.FromException<DatagramReply>(ex));
        }
    }

    /// <summary>
    /// The breaker's callback for an envelope attempt: one client span per attempt (the frame's traceparent becomes its
    /// context). Traces the send itself (<see cref="IpcDiagnostics.BeginClientAttempt"/>) rather than through
    /// <c>SendTracedAsync</c>: one async method per attempt instead of two.
    /// </summary>
    private static async ValueTask<Outcome<DatagramReply>> SendEnvelopeAsync(DatagramClient client, Memory<byte> frame, TimeSpan attemptTimeout, TimeProvider timeProvider, CancellationToken callerAborted)
    {
        var traced = IpcDiagnostics.BeginClientAttempt(client, frame.Span, timeProvider);
        DatagramReply reply;
        try
        {
            reply = await client.SendAsync(frame, attemptTimeout, callerAborted).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            traced.Complete(ex);
            return Outcome.FromException<DatagramReply>(ex);
        }

        traced.Complete(reply);
        if (reply.Kind == MessageKind.Error && reply.Error.Code == IpcErrorCode.Overloaded)
        {
            // Refused without running the handler: an instance failure, safe to retry.
            var message = reply.Error.GetMessage();
            reply.Dispose();
            return Outcome.FromException<DatagramReply>(new DatagramException(DatagramFailure.BackendOverloaded, client.BackendPath, OverloadedReplyPrefix + message));
        }

        return Outcome.FromResult(reply);
    }

    /// <summary>
    /// The one attempt of a request whose body is streamed (docs/protocol.md §4.5.3), never retried: the body is consumed
    /// as it is sent. As <see cref="RunOnceAsync"/> (in-flight slot, circuit breaker, client span); the client's waits for
    /// the backend (credit, then the reply after END) are each bounded by the route's timeout, while the caller's own
    /// pace of sending is bounded by Kestrel's minimum request body data rate. Never throws.
    /// </summary>
    public ValueTask<Outcome<DatagramReply>> RunUploadAsync(Memory<byte> head, Stream body)
    {
        try
        {
            var (instance, _, remaining) = Begin();
            var client = instance.Client ?? throw new InvalidOperationException($"Backend '{Route.Backend.Name}' has no envelope client.");
            return ExecuteOnInstanceAsync(
                instance,
                remaining,
                static (state, _) => SendUploadAsync(state.client, state.head, state.body, state.timeout, state.timeProvider, state.callerAborted),
                (client, head, body, timeout: Route.Timeout, timeProvider: _timeProvider, callerAborted: CallerAborted),
                CallerAborted);
        }
        catch (Exception ex)
        {
            return new(Outcome.FromException<DatagramReply>(ex));
        }
    }

    private static async ValueTask<Outcome<DatagramReply>> SendUploadAsync(DatagramClient client, Memory<byte> head, Stream body, TimeSpan timeout, TimeProvider timeProvider, CancellationToken callerAborted)
    {
        var traced = IpcDiagnostics.BeginClientAttempt(client, head.Span, timeProvider);
        DatagramReply reply;
        try
        {
            reply = await client.SendStreamedAsync(head, body, timeout, callerAborted).ConfigureAwait(false);
        }
        catch (Exception ex)
        {
            traced.Complete(ex);
            return Outcome.FromException<DatagramReply>(ex);
        }

        traced.Complete(reply);
        if (reply.Kind == MessageKind.Error && reply.Error.Code == IpcErrorCode.Overloaded)
        {
            var message = reply.Error.GetMessage();
            reply.Dispose();
            return Outcome.FromException<DatagramReply>(new DatagramException(DatagramFailure.BackendOverloaded, client.BackendPath, OverloadedReplyPrefix + message));
        }

        return Outcome.FromResult(reply);
    }

    /// <summary>Like <see cref="RunEnvelopeAsync"/>: not async itself; a failure to start is the returned outcome.</summary>
    private ValueTask<Outcome<RawReply>> RunRawAsync(CancellationToken cancellationToken)
    {
        try
        {
            var (instance, attempt, remaining) = Begin();
            var client = instance.RawClient ?? throw new InvalidOperationException($"Backend '{Route.Backend.Name}' has no raw client.");
            return ExecuteOnInstanceAsync(
                instance,
                remaining,
                static (state, left) => ExchangeRawAsync(state.client, state.body, state.attempt, state.self.AttemptTimeout(state.attempt, left), state.self._timeProvider, state.self.Method, state.self.CallerAborted),
                (self: this, client, body: _frame, attempt),
                cancellationToken);
        }
        catch (Exception ex)
        {
            return new(Outcome.FromException<RawReply>(ex));
        }
    }

    /// <summary>The breaker's callback for a raw attempt: one client span per attempt, like an envelope attempt's.</summary>
    private static async ValueTask<Outcome<RawReply>> ExchangeRawAsync(RawDatagramClient client, ReadOnlyMemory<byte> body, int attempt, TimeSpan attemptTimeout, TimeProvider timeProvider, string? method, CancellationToken callerAborted)
    {
        var traced = IpcDiagnostics.BeginRawAttempt(client.ServerPath, attempt, timeProvider, method);
        try
        {
            var reply = await client.ExchangeAsync(body, attemptTimeout, callerAborted).ConfigureAwait(false);
            traced.Complete(reply);
            return Outcome.FromResult(reply);
        }
        catch (Exception ex)
        {
            traced.Complete(ex);
            return Outcome.FromException<RawReply>(ex);
        }
    }

    /// <summary>Starts an attempt: chooses its instance and checks the budget that is left.</summary>
    private (BackendInstance Instance, int Attempt, TimeSpan Remaining) Begin()
    {
        var attempt = ++Attempts;
        var previous = Last;
        var instance = previous is null ? _first
            : !Idempotent ? previous // sticky: only this instance's replay cache knows the request
            : InstanceSelector.Select(Route.Backend, _tried);
        if (previous is not null)
        {
            instance.Resilience.RecordRetry();
            if (!ReferenceEquals(previous, instance) && LastMayBeRunning)
            {
                // Moving on: the previous instance may drop the work.
                previous.Client?.SendCancel(CorrelationId);
            }
        }

        Last = instance;
        LastMayBeRunning = false;
        if (!_tried.Contains(instance))
        {
            _tried.Add(instance);
        }

        var remaining = BudgetLeft();
        if (IsSpent(remaining))
        {
            throw BudgetSpent();
        }

        return (instance, attempt, remaining);
    }

    /// <summary>The budget left now: <see cref="Timeout.InfiniteTimeSpan"/> when the route has no timeout.</summary>
    private TimeSpan BudgetLeft() => Deadline == DateTimeOffset.MaxValue ? Timeout.InfiniteTimeSpan : Deadline - _timeProvider.GetUtcNow();

    private static bool IsSpent(TimeSpan remaining) => remaining != Timeout.InfiniteTimeSpan && remaining <= TimeSpan.Zero;

    private TimeoutRejectedException BudgetSpent() => new("The request's time budget is spent.", Route.Timeout);

    /// <summary>Only a request that may be retried is cut at the attempt timeout; the last chance gets the whole budget.</summary>
    private TimeSpan AttemptTimeout(int attempt, TimeSpan remaining) =>
        Retryable && Route.Backend.AttemptTimeout is { } perAttempt && attempt < Route.Backend.Retry.MaxAttempts
            && (remaining == Timeout.InfiniteTimeSpan || perAttempt < remaining)
            ? perAttempt
            : remaining;

    /// <summary>
    /// Waits for an in-flight slot of the instance, then sends through its circuit breaker; records the outcome for
    /// ejection and <c>/admin/backends</c>. Never throws: failures are the outcome.
    /// </summary>
    /// <remarks>
    /// While the circuit is closed (nearly always) the attempt runs first and its outcome then goes through the breaker
    /// (<see cref="RecordThroughBreaker"/>): Polly's breaker decides and records exactly as if it had wrapped the attempt,
    /// since in the closed state it only samples outcomes, but no breaker state machine, bridge and context are held
    /// for the whole wait for the reply (about 870 bytes a held request, bench/README.md). In any other state the breaker
    /// wraps the attempt as usual: it rejects while open and lets only its probe through while half-open.
    /// </remarks>
    private async ValueTask<Outcome<TReply>> ExecuteOnInstanceAsync<[DynamicallyAccessedMembers(DynamicallyAccessedMemberTypes.All)] TReply, TState>(
        BackendInstance instance, TimeSpan remaining, Func<TState, TimeSpan, ValueTask<Outcome<TReply>>> send, TState state, CancellationToken cancellationToken)
    {
        var resilience = instance.Resilience;
        try
        {
            if (!await resilience.TryEnterAsync(cancellationToken, remaining).ConfigureAwait(false))
            {
                if (!HasBudgetLeft)
                {
                    return Outcome.FromException<TReply>(BudgetSpent());
                }

                ResilienceLog.InstanceBusy(_logger, instance.SocketPath, resilience.Settings.MaxInFlight, Route.Name, resilience.Settings.QueueTimeout);
                return Outcome.FromException<TReply>(new InstanceBusyException(instance));
            }
        }
        catch (OperationCanceledException ex)
        {
            return Outcome.FromException<TReply>(ex);
        }

        // The budget left now, after any wait for the slot: the attempt's timeout and the frame's budget come from it,
        // and a slot that freed up only as the budget ended (the wait's own timeout not yet seen) sends nothing.
        remaining = BudgetLeft();
        if (IsSpent(remaining))
        {
            resilience.Exit();
            return Outcome.FromException<TReply>(BudgetSpent());
        }

        instance.Acquire();
        var started = _timeProvider.GetTimestamp();
        try
        {
            LastMayBeRunning = true;
            var breaker = resilience.GetBreaker<TReply>();
            Outcome<TReply> outcome;
            if (resilience.Circuit.CircuitState == CircuitState.Closed)
            {
                outcome = await send(state, remaining).ConfigureAwait(false);
                RecordThroughBreaker(breaker, outcome, cancellationToken);
            }
            else
            {
                var context = ResilienceContextPool.Shared.Get(cancellationToken);
                try
                {
                    outcome = await breaker.ExecuteOutcomeAsync(static (_, s) => s.send(s.state, s.remaining), context, (send, state, remaining)).ConfigureAwait(false);
                }
                finally
                {
                    ResilienceContextPool.Shared.Return(context);
                }
            }

            switch (outcome.Exception)
            {
                case null:
                    LastMayBeRunning = false;
                    resilience.RecordSuccess(_timeProvider.GetElapsedTime(started));
                    break;
                case DatagramException ex:
                    LastMayBeRunning = ex.Failure == DatagramFailure.Timeout;
                    if (resilience.RecordFailure(ex))
                    {
                        ResilienceLog.InstanceEjected(_logger, instance.SocketPath, resilience.Settings.EjectAfterFailures, ex.Failure);
                    }

                    break;
            }

            return outcome;
        }
        finally
        {
            // Slot first: releasing the last in-flight request of a retired instance disposes it (and its slots).
            resilience.Exit();
            instance.Release();
        }
    }

    /// <summary>
    /// Passes a finished attempt's outcome through the breaker, so that it samples (and may open on) it. Completes at
    /// once: the callback returns the known outcome. If the circuit left the closed state meanwhile, the breaker rejects
    /// the execution without recording it, and the attempt's own outcome still stands.
    /// </summary>
    private static void RecordThroughBreaker<TReply>(ResiliencePipeline<TReply> breaker, Outcome<TReply> outcome, CancellationToken cancellationToken)
    {
        var context = ResilienceContextPool.Shared.Get(cancellationToken);
        var recorded = breaker.ExecuteOutcomeAsync(static (_, o) => new ValueTask<Outcome<TReply>>(o), context, outcome);
        if (recorded.IsCompleted)
        {
            _ = recorded.Result;
            ResilienceContextPool.Shared.Return(context);
        }
        else
        {
            // Not expected (the breaker's own callbacks are synchronous); the context goes back once it is done.
            _ = ReturnWhenDoneAsync(recorded, context);
        }

        static async Task ReturnWhenDoneAsync(ValueTask<Outcome<TReply>> recorded, ResilienceContext context)
        {
            try
            {
                await recorded.ConfigureAwait(false);
            }
            finally
            {
                ResilienceContextPool.Shared.Return(context);
            }
        }
    }

    /// <summary>Starts the message of the exception that stands for an ERROR <c>OVERLOADED</c> reply.</summary>
    public const string OverloadedReplyPrefix = "answered OVERLOADED: ";

    public static uint BudgetMs(TimeSpan budget) =>
        budget == Timeout.InfiniteTimeSpan ? 0u : (uint)Math.Clamp((long)Math.Ceiling(budget.TotalMilliseconds), 1, uint.MaxValue);

    public string CorrelationText => CorrelationId.ToString("x16", CultureInfo.InvariantCulture);
}
