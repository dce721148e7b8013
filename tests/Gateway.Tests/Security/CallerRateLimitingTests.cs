using System.Net;
using Gateway.Ipc.Backend;
using Gateway.Testing;
using Gateway.Tests.Forwarding;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Security;

/// <summary>Per-caller-uid limits (ASP.NET Core rate limiting) answer 429 problem details.</summary>
public class CallerRateLimitingTests
{
    [Fact]
    public async Task ConcurrentRequestsPerCaller_OneMoreThanTheLimit_Gets429_TheHeldOnesComplete()
    {
        using var dir = new TempSocketDirectory();
        var inFlight = 0;
        var twoInFlight = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (request, _) =>
        {
            if (request.Target == "/api/hold")
            {
                if (Interlocked.Increment(ref inFlight) == 2)
                {
                    twoInFlight.TrySetResult();
                }

                await release.Task;
            }

            return BackendResponse.Text("ok");
        });
        var settings = ForwardingTests.Route(backend.SocketPath);
        settings["Gateway:RateLimiting:ConcurrentRequestsPerCaller"] = "2";
        await using var factory = new GatewayFactory(dir, settings).StartKestrel();
        using var client = factory.CreateGatewayClient();

        var first = client.GetAsync("/api/hold");
        var second = client.GetAsync("/api/hold");
        await twoInFlight.Task.WaitAsync(TimeSpan.FromSeconds(120));
        using var third = await client.GetAsync("/api/x");
        using var health = await client.GetAsync("/healthz");
        release.SetResult();
        using var firstResponse = await first;
        using var secondResponse = await second;

        Assert.Equal(HttpStatusCode.TooManyRequests, third.StatusCode);
        var problem = await CallerAuthorizationTests.ProblemAsync(third);
        Assert.Equal("urn:gateway:problem:too-many-concurrent-requests", problem.GetProperty("type").GetString());
        Assert.Equal("Gateway:RateLimiting:ConcurrentRequestsPerCaller", problem.GetProperty("rule").GetString());
        Assert.Contains($"uid {ProcessIdentity.Uid} already has 2 requests in flight", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
        Assert.Equal(HttpStatusCode.OK, firstResponse.StatusCode);
        Assert.Equal(HttpStatusCode.OK, secondResponse.StatusCode);
    }

    [Fact]
    public async Task PermitsPerSecond_BurstSpent_Gets429WithRetryAfter()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await CallerAuthorizationTests.StartOkBackend(dir);
        var settings = ForwardingTests.Route(backend.SocketPath);

        // One token per 1000 s: nothing refills while the test runs, whatever the machine's speed.
        settings["Gateway:RateLimiting:PermitsPerSecond"] = "0.001";
        settings["Gateway:RateLimiting:Burst"] = "2";
        await using var factory = new GatewayFactory(dir, settings).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var one = await client.GetAsync("/api/x");
        using var two = await client.GetAsync("/api/x");
        using var three = await client.GetAsync("/api/x");
        using var health = await client.GetAsync("/healthz");

        Assert.Equal(HttpStatusCode.OK, one.StatusCode);
        Assert.Equal(HttpStatusCode.OK, two.StatusCode);
        Assert.Equal(HttpStatusCode.TooManyRequests, three.StatusCode);
        var retryAfter = three.Headers.RetryAfter?.Delta;
        Assert.NotNull(retryAfter);
        Assert.InRange(retryAfter.Value.TotalSeconds, 1, 1000);
        var problem = await CallerAuthorizationTests.ProblemAsync(three);
        Assert.Equal("urn:gateway:problem:rate-limited", problem.GetProperty("type").GetString());
        Assert.Equal("Gateway:RateLimiting:PermitsPerSecond", problem.GetProperty("rule").GetString());
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact]
    public async Task NotConfigured_ManyRequestsPass()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await CallerAuthorizationTests.StartOkBackend(dir);
        await using var factory = new GatewayFactory(dir, ForwardingTests.Route(backend.SocketPath)).StartKestrel();
        using var client = factory.CreateGatewayClient();

        var responses = await Task.WhenAll(Enumerable.Range(0, 50).Select(_ => client.GetAsync("/api/x")));

        Assert.All(responses, r => Assert.Equal(HttpStatusCode.OK, r.StatusCode));
        foreach (var response in responses)
        {
            response.Dispose();
        }
    }

    [Theory]
    [InlineData(1000, 100, 100, 100)]
    [InlineData(15, 15, 1, 66.666)]
    [InlineData(0.5, 1, 1, 2000)]
    [InlineData(1000, 10, 10, 10)]
    public void TokenBucket_RefillsAtExactlyTheRate(double rate, int burst, int tokensPerPeriod, double periodMs)
    {
        var options = Gateway.Security.CallerRateLimiting.TokenBucket(rate, burst);

        Assert.Equal(burst, options.TokenLimit);
        Assert.Equal(tokensPerPeriod, options.TokensPerPeriod);
        Assert.Equal(periodMs, options.ReplenishmentPeriod.TotalMilliseconds, 0.01);
        Assert.Equal(rate, options.TokensPerPeriod / options.ReplenishmentPeriod.TotalSeconds, 0.001);
    }
}
