using System.Collections.Concurrent;
using System.Net;
using Gateway.Testing;
using Gateway.Tests.Forwarding;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Gateway.Tests.Security;

/// <summary>Log entries written while a request is handled carry the caller (CallerUid, CallerGid, CallerPid).</summary>
public class CallerLogScopeTests
{
    [Fact]
    public async Task ForwardFailureLog_CarriesTheCallersUidAndPid()
    {
        using var dir = new TempSocketDirectory();
        var logs = new ScopeCapturingLoggerProvider();

        // No backend is bound at the path: the request fails with 503 and a warning (event 1021) is logged.
        await using var factory = new GatewayFactory(dir, ForwardingTests.Route(dir.Socket("absent.sock")), services: s => s.AddSingleton<ILoggerProvider>(logs)).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var response = await client.GetAsync("/api/x");

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        var scope = logs.Entries.First(e => e.EventId == 1021).Scope;
        Assert.Equal(ProcessIdentity.Uid, scope["CallerUid"]);
        Assert.Equal(ProcessIdentity.Gid, scope["CallerGid"]);
        Assert.Equal(Environment.ProcessId, scope["CallerPid"]);

        // One scope carries the caller and, once forwarding has numbered the request, its IDs.
        Assert.Equal(Assert.Single(response.Headers.GetValues("X-Correlation-Id")), scope["CorrelationId"]);
        Assert.Equal("api", scope["Route"]);
    }

    private sealed class ScopeCapturingLoggerProvider : ILoggerProvider, ISupportExternalScope
    {
        private IExternalScopeProvider _scopes = new LoggerExternalScopeProvider();

        public ConcurrentQueue<(int EventId, Dictionary<string, object?> Scope)> Entries { get; } = new();

        public ILogger CreateLogger(string categoryName) => new Logger(this);

        public void SetScopeProvider(IExternalScopeProvider scopeProvider) => _scopes = scopeProvider;

        public void Dispose()
        {
        }

        private sealed class Logger(ScopeCapturingLoggerProvider owner) : ILogger
        {
            public IDisposable? BeginScope<TState>(TState state)
                where TState : notnull => owner._scopes.Push(state);

            public bool IsEnabled(LogLevel logLevel) => true;

            public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
            {
                var scope = new Dictionary<string, object?>();
                owner._scopes.ForEachScope(
                    (value, values) =>
                    {
                        if (value is IEnumerable<KeyValuePair<string, object?>> pairs)
                        {
                            foreach (var (key, item) in pairs)
                            {
                                values[key] = item;
                            }
                        }
                    },
                    scope);
                owner.Entries.Enqueue((eventId.Id, scope));
            }
        }
    }
}
