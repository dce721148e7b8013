using Gateway.Configuration;

namespace Gateway.Tests.Resilience;

public class ResilienceOptionsValidationTests
{
    [Fact]
    public void InvalidResilienceSettings_AreAllReported_EachNamingItsKey()
    {
        var backend = new BackendOptions
        {
            Instances = ["/tmp/x.sock"],
            Timeout = TimeSpan.FromSeconds(5),
            AttemptTimeout = TimeSpan.FromSeconds(6),
            Retry = new BackendRetryOptions { MaxAttempts = 0, BaseDelay = TimeSpan.FromSeconds(2), MaxDelay = TimeSpan.FromSeconds(1) },
            MaxInFlightPerInstance = 0,
            QueueTimeout = TimeSpan.FromSeconds(-1),
            CircuitBreaker = new BackendCircuitBreakerOptions { FailureRatio = 1.5, MinimumThroughput = 1, BreakDuration = TimeSpan.Zero },
            HealthCheck = new BackendHealthCheckOptions { Interval = TimeSpan.Zero, Timeout = TimeSpan.Zero, EjectAfterFailures = 0 },
        };
        var options = new GatewayOptions { Backends = { ["b"] = backend } };

        var errors = GatewayOptionsValidator.Validate(options);

        foreach (var key in new[]
        {
            "AttemptTimeout", "Retry:MaxAttempts", "Retry:MaxDelay", "MaxInFlightPerInstance", "QueueTimeout",
            "CircuitBreaker:FailureRatio", "CircuitBreaker:MinimumThroughput", "CircuitBreaker:BreakDuration",
            "HealthCheck:Interval", "HealthCheck:Timeout", "HealthCheck:EjectAfterFailures",
        })
        {
            Assert.Contains(errors, e => e.StartsWith($"Gateway:Backends:b:{key}:", StringComparison.Ordinal));
        }
    }

    [Fact]
    public void Defaults_AreValid()
    {
        var options = new GatewayOptions { Backends = { ["b"] = new BackendOptions { Instances = ["/tmp/x.sock"] } } };

        Assert.Empty(GatewayOptionsValidator.Validate(options));
    }
}
