using Gateway.Ipc.Client;
using Polly.CircuitBreaker;
using Polly.Timeout;

namespace Gateway.Resilience;

/// <summary>
/// The logger factory of Polly's telemetry (<see cref="Polly.Telemetry.TelemetryOptions.LoggerFactory"/>): Polly logs
/// every execution attempt and resilience event with the outcome's exception attached, which a console logger prints as
/// a stack trace — for a backend timeout, an absent or overloaded backend, a busy instance or an open circuit, which are
/// outcomes the gateway handles and describes itself (events 1021, 1100, 1104, 1105, 1107). This factory keeps Polly's
/// entries (level, message, event id) and detaches only those exceptions; anything else (a bug) keeps its stack trace.
/// Done in code, not by a log level in appsettings.json, so that it holds for every host of the gateway (a
/// WebApplicationFactory test, a configuration given with --config) and at any level a user turns Polly's category to.
/// </summary>
internal sealed class HandledOutcomeLoggerFactory(ILoggerFactory inner) : ILoggerFactory
{
    /// <summary>The outcomes the gateway handles: it retries them or answers them with a definite status.</summary>
    internal static bool IsHandledOutcome(Exception? exception) =>
        exception is DatagramException or InstanceBusyException or BrokenCircuitException or TimeoutRejectedException;

    public ILogger CreateLogger(string categoryName) => new Logger(inner.CreateLogger(categoryName));

    public void AddProvider(ILoggerProvider provider) => inner.AddProvider(provider);

    public void Dispose()
    {
        // The inner factory belongs to the host.
    }

    private sealed class Logger(ILogger inner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => inner.BeginScope(state);

        public bool IsEnabled(LogLevel logLevel) => inner.IsEnabled(logLevel);

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter) =>
            inner.Log(logLevel, eventId, state, IsHandledOutcome(exception) ? null : exception, formatter);
    }
}
