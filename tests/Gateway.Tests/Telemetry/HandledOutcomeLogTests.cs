using System.Net;
using System.Net.Sockets;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Gateway.Tests.Telemetry;

/// <summary>
/// A handled outcome (timeout, absent or overloaded backend, busy, open circuit) is the gateway's business as usual: its
/// own events say what happened (1021 forward failed, 1100 retrying, 1104 not retried), and nothing logs a stack trace
/// for it — not Polly's per-attempt and per-event logs either, at any level a user may turn them up to, and whether or not
/// the shipped appsettings.json (which turns Polly down) is there.
/// </summary>
public class HandledOutcomeLogTests
{
    public static TheoryData<string, string, bool> Cases() => new()
    {
        // method, what answers at the backend's path, Idempotency-Key
        { "GET", "nothing", false },         // absent, retried, then 503
        { "GET", "silent", false },          // timeouts, retried, then 504
        { "POST", "silent", false },         // one attempt, 504, not retried
        { "POST", "silent", true },          // retried with the key, 504
        { "POST", "nothing", true },
    };

    [Theory]
    [MemberData(nameof(Cases))]
    public async Task HandledFailure_LogsTheGatewaysOwnEvents_AndNoStackTrace_EvenWithPollyAtTrace(string method, string backend, bool idempotencyKey)
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("b.sock");
        using var silent = backend == "silent" ? BindSilent(path) : null;
        var logs = new CapturingLoggerProvider();
        var settings = new Dictionary<string, string?>
        {
            ["Gateway:Backends:b:Instances:0"] = path,
            ["Gateway:Backends:b:Timeout"] = "00:00:00.600",
            ["Gateway:Backends:b:AttemptTimeout"] = "00:00:00.150",
            ["Gateway:Backends:b:Retry:BaseDelay"] = "00:00:00.001",
            ["Gateway:Backends:b:Retry:MaxDelay"] = "00:00:00.002",
            ["Gateway:Routes:r:Path"] = "/r/{**rest}",
            ["Gateway:Routes:r:Backend"] = "b",
            // Everything a user could turn on: Polly's own logs included.
            ["Logging:LogLevel:Default"] = "Trace",
            ["Logging:LogLevel:Polly"] = "Trace",
        };
        await using var factory = new GatewayFactory(dir, settings, services => services.AddLogging(l => l.AddProvider(logs).SetMinimumLevel(LogLevel.Trace)));
        using var client = factory.CreateClient();
        using var request = new HttpRequestMessage(new HttpMethod(method), "/r/x");
        if (method == "POST")
        {
            request.Content = new StringContent("body");
        }

        if (idempotencyKey)
        {
            request.Headers.Add("Idempotency-Key", "k1");
        }

        using var response = await client.SendAsync(request);

        Assert.Contains(response.StatusCode, new[] { HttpStatusCode.ServiceUnavailable, HttpStatusCode.GatewayTimeout });
        await logs.WaitForAsync(1021); // the gateway's own account of the failure
        var withStack = logs.EntriesWithException.Where(e => IsHandled(e.Exception)).ToList();
        Assert.True(withStack.Count == 0, "Handled outcomes logged with an exception (a stack trace):\n" + string.Join('\n', withStack.Select(e => $"  {e.Level} {e.Category}[{e.EventId}]: {e.Exception.GetType().Name}: {e.Exception.Message}")));
        if (method == "GET" || idempotencyKey)
        {
            Assert.Contains(logs.Entries, e => e.EventId == 1100); // retried, said by the gateway
        }
    }

    private static bool IsHandled(Exception exception) =>
        exception is Gateway.Ipc.Client.DatagramException or Polly.Timeout.TimeoutRejectedException or Polly.CircuitBreaker.BrokenCircuitException
        || exception.GetType().Name == "InstanceBusyException";

    /// <summary>A datagram socket bound at the path that never reads: sends succeed, no reply ever comes.</summary>
    private static Socket BindSilent(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        return socket;
    }
}
