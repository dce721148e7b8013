using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Gateway.Ipc.Tests.Backend;

/// <summary>Captures log events and lets a test await a given event id (a signal, not a sleep).</summary>
internal sealed class LogCapture : ILoggerFactory, ILoggerProvider
{
    private readonly ConcurrentDictionary<int, TaskCompletionSource<string>> _signals = new();

    public ConcurrentQueue<(int EventId, LogLevel Level, string Message)> Events { get; } = new();

    public Task<string> WaitForAsync(int eventId) =>
        Signal(eventId).Task.WaitAsync(TestClient.ReceiveTimeout);

    public ILogger CreateLogger(string categoryName) => new Logger(this);

    public void AddProvider(ILoggerProvider provider)
    {
    }

    public void Dispose()
    {
    }

    private TaskCompletionSource<string> Signal(int eventId) =>
        _signals.GetOrAdd(eventId, static _ => new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously));

    private sealed class Logger(LogCapture owner) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var message = formatter(state, exception);
            owner.Events.Enqueue((eventId.Id, logLevel, message));
            owner.Signal(eventId.Id).TrySetResult(message);
        }
    }
}
