using System.Net;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Protocol;
using Gateway.Testing;
using Gateway.Tests.Forwarding;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Tests.Resilience;

/// <summary>Retries keep the correlation ID and bump the attempt, so the backend's replay cache answers them.</summary>
public class AtMostOnceTests
{
    [Fact]
    public async Task PostWithIdempotencyKey_FirstReplyLost_HandlerRunsOnce_ClientGetsTheReply()
    {
        using var dir = new TempSocketDirectory();
        var executions = 0;
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) =>
        {
            Interlocked.Increment(ref executions);
            return ValueTask.FromResult(BackendResponse.Text("created #" + request.CorrelationId.ToString("x16", System.Globalization.CultureInfo.InvariantCulture), 201));
        });
        await using var proxy = new DatagramFaultProxy(dir.Socket("proxy.sock"), dir.Socket("proxy-up.sock"), backend.SocketPath);
        proxy.DropReplies(1);
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new GatewayFactory(dir, ResilienceSettings.Route(proxy.SocketPath), s => s.AddSingleton<TimeProvider>(time));
        using var client = factory.CreateClient();
        using var message = new HttpRequestMessage(HttpMethod.Post, "/api/orders") { Content = new StringContent("{}") };
        message.Headers.Add("Idempotency-Key", "order-1");

        var pending = client.SendAsync(message);
        await proxy.ReplyDropped.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(pending.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(1)); // the attempt timeout: attempt 2 goes out
        using var response = await pending.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var correlation = response.Headers.GetValues("X-Correlation-Id").Single();
        Assert.Equal("created #" + correlation, await response.Content.ReadAsStringAsync());
        Assert.Equal(1, Volatile.Read(ref executions));
        var requests = proxy.Requests;
        Assert.Equal(2, requests.Count);
        Assert.Equal(requests[0].CorrelationId, requests[1].CorrelationId);
        Assert.Equal([(ushort)1, (ushort)2], requests.Select(r => r.Attempt));
        Assert.True(requests[1].BudgetMs < requests[0].BudgetMs); // the remaining budget travels
        var reply = Assert.Single(proxy.Replies);
        Assert.True((reply.Flags & MessageFlags.Replay) != 0);
        Assert.Equal(2, reply.Attempt);
    }

    /// <summary>
    /// The seam between the gateway's retry decision and the backend's replay cache (docs/protocol.md §5, NO_RETRY):
    /// exactly the requests the gateway will not retry reach the backend marked so, and only their replies are not kept.
    /// </summary>
    [Theory]
    [InlineData("GET", false, false)]
    [InlineData("PUT", false, false)]
    [InlineData("DELETE", false, false)]
    [InlineData("POST", true, false)]
    [InlineData("PATCH", true, false)]
    [InlineData("POST", false, true)]
    public async Task NoRetry_IsSetExactlyOnRequestsTheGatewayWillNotRetry(string method, bool expectNoRetry, bool withKey)
    {
        using var dir = new TempSocketDirectory();
        var seen = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) =>
        {
            seen.TrySetResult(request.WillNotBeRetried);
            return ValueTask.FromResult(BackendResponse.Text("ok"));
        });
        await using var factory = new GatewayFactory(dir, ResilienceSettings.Route(backend.SocketPath));
        using var client = factory.CreateClient();
        using var message = new HttpRequestMessage(new HttpMethod(method), "/api/things") { Content = method is "GET" or "DELETE" ? null : new StringContent("{}") };
        if (withKey)
        {
            message.Headers.Add("Idempotency-Key", "k-1");
        }

        using var response = await client.SendAsync(message).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(expectNoRetry, await seen.Task);
        Assert.Equal(expectNoRetry ? 0 : 1, backend.Server.ReplayCacheCount);
    }

    [Fact]
    public async Task PostWithoutIdempotencyKey_ReplyLost_IsA504_NeverSentTwice()
    {
        using var dir = new TempSocketDirectory();
        var executions = 0;
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) =>
        {
            Interlocked.Increment(ref executions);
            return ValueTask.FromResult(BackendResponse.Text("created", 201));
        });
        await using var proxy = new DatagramFaultProxy(dir.Socket("proxy.sock"), dir.Socket("proxy-up.sock"), backend.SocketPath);
        proxy.DropReplies(1);
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new GatewayFactory(dir, ResilienceSettings.Route(proxy.SocketPath), s => s.AddSingleton<TimeProvider>(time));
        using var client = factory.CreateClient();

        var pending = client.PostAsync("/api/orders", new StringContent("{}"));
        await proxy.ReplyDropped.Task.WaitAsync(TimeSpan.FromSeconds(30));
        time.Advance(TimeSpan.FromSeconds(1)); // an attempt timeout does not cut a request that cannot be retried
        Assert.False(pending.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(9)); // the whole budget
        using var response = await pending.WaitAsync(TimeSpan.FromSeconds(30));

        await ForwardingTests.ReadProblemAsync(response, HttpStatusCode.GatewayTimeout, "timeout");
        Assert.Equal(1, Volatile.Read(ref executions));
        var request = Assert.Single(proxy.Requests);
        Assert.Equal(1, request.Attempt);
    }

    [Fact]
    public async Task DuplicatedReplies_TheFirstIsUsed_TheHandlerRunsOncePerRequest()
    {
        using var dir = new TempSocketDirectory();
        var executions = 0;
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) =>
        {
            var n = Interlocked.Increment(ref executions);
            return ValueTask.FromResult(BackendResponse.Text($"reply {n} to {request.Target}"));
        });
        await using var proxy = new DatagramFaultProxy(dir.Socket("proxy.sock"), dir.Socket("proxy-up.sock"), backend.SocketPath) { DuplicateReplies = true };
        await using var factory = new GatewayFactory(dir, ResilienceSettings.Route(proxy.SocketPath));
        using var client = factory.CreateClient();

        var first = await client.GetStringAsync("/api/one");
        var second = await client.GetStringAsync("/api/two");

        Assert.Equal("reply 1 to /api/one", first);
        Assert.Equal("reply 2 to /api/two", second);
        Assert.Equal(2, Volatile.Read(ref executions));
        // Each reply really was delivered twice (the proxy records the duplicate after the gateway may have answered).
        await Eventually.UntilAsync(() => proxy.Replies.Count >= 4, TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(10));
        Assert.Equal(4, proxy.Replies.Count);
    }
}
