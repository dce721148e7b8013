using System.Net;
using Gateway.Ipc.Backend;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Tests.Forwarding;

public class TimeoutAndCancellationTests
{
    [Fact]
    public async Task NoReplyWithinTheRouteTimeout_Is504_AndTheBackendIsToldToCancel()
    {
        using var dir = new TempSocketDirectory();
        var entered = new TaskCompletionSource<DateTimeOffset?>(TaskCreationOptions.RunContinuationsAsynchronously);
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (request, token) =>
        {
            token.Register(() => cancelled.TrySetResult());
            entered.TrySetResult(request.Deadline);
            await Task.Delay(Timeout.Infinite, token);
            return BackendResponse.Text("never");
        }, timeProvider: new FakeTimeProvider(DateTimeOffset.UtcNow)); // stands still: only the gateway's budget can end the request, not the backend's real-time deadline on a slow machine
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var settings = ForwardingTests.Route(backend.SocketPath);
        settings["Gateway:Routes:api:Timeout"] = "00:00:03";
        await using var factory = new GatewayFactory(dir, settings, s => s.AddSingleton<TimeProvider>(time));
        using var client = factory.CreateClient();

        var pending = client.GetAsync("/api/slow");
        var deadline = await entered.Task.WaitAsync(TimeSpan.FromSeconds(120));
        Assert.False(pending.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(3));
        using var response = await pending;

        var problem = await ForwardingTests.ReadProblemAsync(response, HttpStatusCode.GatewayTimeout, "timeout");
        Assert.Contains("did not reply within 3 s", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(120));
        Assert.NotNull(deadline); // the 3 s budget travelled in the datagram
    }

    [Fact]
    public async Task ClientDisconnect_CancelsTheBackendWork_NotATimeout()
    {
        using var dir = new TempSocketDirectory();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (request, token) =>
        {
            token.Register(() => cancelled.TrySetResult());
            entered.TrySetResult();
            await Task.Delay(Timeout.Infinite, token);
            return BackendResponse.Text("never");
        });
        var logs = new CapturingLoggerProvider();
        // Real Kestrel on the Unix socket: a disconnect is a closed connection (TestServer does not abort).
        var settings = ForwardingTests.Route(backend.SocketPath);
        settings["Logging:LogLevel:Gateway"] = "Information";
        await using var factory = new GatewayFactory(dir, settings, s => s.AddSingleton<Microsoft.Extensions.Logging.ILoggerProvider>(logs)).StartKestrel();
        using var client = factory.CreateGatewayClient();
        using var abort = new CancellationTokenSource();

        var pending = client.GetAsync("/api/slow", abort.Token);
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(120));
        await abort.CancelAsync();

        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => pending);
        var message = await logs.WaitForAsync(1020);
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(120));
        Assert.Contains("Client disconnected", message, StringComparison.Ordinal);
        Assert.DoesNotContain(logs.Entries, e => e.EventId == 1021); // not logged as a forwarding failure/timeout
    }
}
