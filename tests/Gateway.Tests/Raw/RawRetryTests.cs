using System.Net;
using System.Net.Sockets;
using System.Text;
using Gateway.Routing;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Tests.Raw;

/// <summary>
/// Retries for raw backends: idempotent methods move to another instance; POST/PATCH get one attempt (a raw daemon
/// has no correlation and no replay cache, so nothing can make a second send safe).
/// </summary>
public class RawRetryTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    private static Dictionary<string, string?> TwoInstances(string a, string b) => new()
    {
        ["Gateway:Backends:raw:Mode"] = "Raw",
        ["Gateway:Backends:raw:Instances:0"] = a,
        ["Gateway:Backends:raw:Instances:1"] = b,
        ["Gateway:Backends:raw:Timeout"] = "00:00:30",
        ["Gateway:Backends:raw:Retry:BaseDelay"] = "00:00:00",
        ["Gateway:Backends:raw:Retry:MaxDelay"] = "00:00:00",
        ["Gateway:Routes:upper:Path"] = "/upper",
        ["Gateway:Routes:upper:Backend"] = "raw",
        ["Gateway:Routes:upper:ContentType"] = "text/plain",
    };

    [Fact]
    public async Task Get_OneOfTwoDaemonsKilled_EverySucceedsViaTheOther()
    {
        using var dir = new TempSocketDirectory();
        var python = await RawServers.StartPythonAsync(dir.Socket("py.sock"));
        await using var c = await RawServers.StartCAsync(dir.Socket("c.sock"));
        await using var factory = new GatewayFactory(dir, TwoInstances(dir.Socket("py.sock"), dir.Socket("c.sock")));
        using var client = factory.CreateClient();
        var instances = factory.Services.GetRequiredService<RouteTableProvider>().Current.Backends["raw"].Instances;

        // SIGKILL: the socket file stays behind, a send to it is refused (the daemon is gone, not just slow).
        await python.SignalAsync(9);
        await python.DisposeAsync();
        Assert.True(File.Exists(dir.Socket("py.sock")));

        // Sequential: round robin starts every other request on the dead daemon.
        for (var i = 0; i < 6; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, "/upper") { Content = new StringContent($"get {i}") };
            using var response = await client.SendAsync(request);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal($"GET {i}", await response.Content.ReadAsStringAsync());
        }

        var dead = instances[0].Resilience;
        var alive = instances[1].Resilience;
        Assert.InRange(dead.Failures, 1, 6);
        Assert.Equal(dead.Failures, alive.Retries); // every failure on the dead daemon was retried on the live one
    }

    [Fact]
    public async Task Post_OneDaemonKilled_OtherHoldsIt_DefiniteErrorsAndEachSentAtMostOnce()
    {
        using var dir = new TempSocketDirectory();
        var python = await RawServers.StartPythonAsync(dir.Socket("py.sock"));

        // The second instance: a daemon the test plays by hand (recvfrom; it never answers).
        var heldPath = dir.Socket("held.sock");
        using var held = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        held.Bind(new UnixDomainSocketEndPoint(heldPath));
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new GatewayFactory(dir, TwoInstances(dir.Socket("py.sock"), heldPath), s => s.AddSingleton<TimeProvider>(time));
        using var client = factory.CreateClient();
        await python.SignalAsync(9);
        await python.DisposeAsync();

        // Two sequential POSTs (one starts on each instance), each with an Idempotency-Key, which cannot make a raw
        // POST retryable.
        var statuses = new List<HttpStatusCode>();
        var buffer = new byte[1024];
        Task<int>? receive = null;
        for (var i = 0; i < 2; i++)
        {
            using var request = new HttpRequestMessage(HttpMethod.Post, "/upper") { Content = new StringContent($"post {i}") };
            request.Headers.Add("Idempotency-Key", $"key-{i}");
            var post = client.SendAsync(request);
            receive ??= held.ReceiveAsync(buffer.AsMemory(), SocketFlags.None).AsTask();
            if (await Task.WhenAny(post, receive).WaitAsync(HangGuard) == receive)
            {
                // It reached the held daemon, which never answers: 504 when the budget is spent, and never a second send.
                Assert.Equal($"post {i}", Encoding.UTF8.GetString(buffer, 0, await receive));
                receive = null;
                time.Advance(TimeSpan.FromSeconds(30));
                using var response = await post.WaitAsync(HangGuard);
                statuses.Add(response.StatusCode);
                Assert.Contains("urn:gateway:problem:timeout", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
                Assert.Equal(0, held.Available);
            }
            else
            {
                // It went to the dead daemon: refused (so never executed), and not retried on the held one (a retry
                // would have been sent before this response was written).
                using var response = await post;
                statuses.Add(response.StatusCode);
                Assert.Contains("urn:gateway:problem:backend-absent", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
                Assert.False(receive.IsCompleted);
                Assert.Equal(0, held.Available);
            }
        }

        // Which instance each POST starts on depends on whether a health probe has already ejected the dead daemon
        // (its leftover socket file refuses the probe's connect); either way each gets one definite error.
        Assert.Equal(2, statuses.Count);
        Assert.All(statuses, status => Assert.True(status is HttpStatusCode.ServiceUnavailable or HttpStatusCode.GatewayTimeout, status.ToString()));
    }
}
