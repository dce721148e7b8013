using System.Collections.Concurrent;
using Microsoft.Extensions.Logging;

namespace Gateway.Testing;

/// <summary>Collects log entries and lets a test await the first entry with a given event id.</summary>
public sealed class CapturingLoggerProvider : ILoggerProvider
{
    private readonly ConcurrentQueue<(int EventId, LogLevel Level, string Message)> _entries = new();
    private readonly ConcurrentQueue<(string Category, int EventId, LogLevel Level, Exception Exception)> _exceptions = new();
    private readonly ConcurrentDictionary<int, TaskCompletionSource<string>> _waiters = new();

    public IReadOnlyCollection<(int EventId, LogLevel Level, string Message)> Entries => _entries;

    /// <summary>The entries logged with an exception attached (what a console logger prints as a stack trace).</summary>
    public IReadOnlyCollection<(string Category, int EventId, LogLevel Level, Exception Exception)> EntriesWithException => _exceptions;

    /// <summary>Completes with the message of the next (or an earlier) entry with this event id.</summary>
    public Task<string> WaitForAsync(int eventId) => Waiter(eventId).Task.WaitAsync(TimeSpan.FromSeconds(120));

    public ILogger CreateLogger(string categoryName) => new Logger(this, categoryName);

    public void Dispose()
    {
    }

    private TaskCompletionSource<string> Waiter(int eventId) =>
        _waiters.GetOrAdd(eventId, _ => new TaskCompletionSource<string>(TaskCreationOptions.RunContinuationsAsynchronously));

    private sealed class Logger(CapturingLoggerProvider owner, string category) : ILogger
    {
        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            var message = formatter(state, exception);
            owner._entries.Enqueue((eventId.Id, logLevel, message));
            if (exception is not null)
            {
                owner._exceptions.Enqueue((category, eventId.Id, logLevel, exception));
            }

            owner.Waiter(eventId.Id).TrySetResult(message);
        }
    }
}
