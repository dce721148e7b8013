using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Gateway.Ipc.Backend;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Resilience;

namespace Gateway.Tests.Apis;

public class AdminApiTests
{
    [Fact]
    public async Task AdminBackends_ShowsEachInstance_StateCircuitInFlightLatencyAndCounters()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("ok")));
        var absent = dir.Socket("absent.sock");
        var settings = ResilienceSettings.Route(backend.SocketPath, absent);
        settings["Gateway:Backends:b:LoadBalancing"] = "PowerOfTwoChoices";
        await using var factory = new GatewayFactory(dir, settings).StartKestrel(); // /admin needs the caller's peer credentials
        using var client = factory.CreateGatewayClient();
        for (var i = 0; i < 4; i++)
        {
            Assert.Equal("ok", await client.GetStringAsync($"/api/{i}"));
        }

        using var response = await client.GetAsync("/admin/backends");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        var b = Assert.Single(json.RootElement.EnumerateArray());
        Assert.Equal("b", b.GetProperty("name").GetString());
        Assert.Equal("PowerOfTwoChoices", b.GetProperty("loadBalancing").GetString());
        var instances = b.GetProperty("instances").EnumerateArray().ToDictionary(i => i.GetProperty("socketPath").GetString()!);
        var up = instances[backend.SocketPath];
        Assert.Equal("healthy", up.GetProperty("state").GetString());
        Assert.Equal("Closed", up.GetProperty("circuit").GetString());
        Assert.Equal(0, up.GetProperty("inFlight").GetInt64());
        Assert.Equal(4, up.GetProperty("latencyMs").GetProperty("samples").GetInt32());
        Assert.True(up.GetProperty("latencyMs").GetProperty("p99").GetDouble() >= up.GetProperty("latencyMs").GetProperty("p50").GetDouble());
        var down = instances[absent];
        Assert.Equal(0, down.GetProperty("latencyMs").GetProperty("samples").GetInt32());
        // Any request that went to the absent instance first was retried on the live one.
        Assert.Equal(down.GetProperty("failures").GetInt64(), up.GetProperty("retries").GetInt64());
    }

    [Fact]
    public async Task AdminBackends_ShowsThePendingTable_AndCountsSpoofedDatagramsAtTheReplySocket()
    {
        using var dir = new TempSocketDirectory();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (_, _) =>
        {
            entered.TrySetResult();
            await release.Task;
            return BackendResponse.Text("ok");
        });
        var settings = ResilienceSettings.Route(backend.SocketPath);
        var replies = dir.Socket("replies");
        settings["Gateway:ReplySocketDirectory"] = replies;
        settings["Gateway:Backends:b:HealthCheck:Interval"] = "01:00:00"; // no probe in the pending table
        await using var factory = new GatewayFactory(dir, settings).StartKestrel(); // /admin needs the caller's peer credentials
        using var client = factory.CreateGatewayClient();

        var held = client.GetStringAsync("/api/held");
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(60));
        var during = await InstanceAsync(client, i => i.GetProperty("pending").GetInt32() == 1);
        Assert.Equal(1, during.GetProperty("inFlight").GetInt64());

        // A spoofed reply and garbage, from a socket that is not the backend's.
        var replySocket = Assert.Single(Directory.GetFiles(replies));
        using (var rogue = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified))
        {
            using var writer = new Ipc.Protocol.FrameWriter();
            writer.BeginResponse(42, 1, 200);
            rogue.SendTo(writer.Complete().Span, new UnixDomainSocketEndPoint(replySocket));
            rogue.SendTo("garbage"u8, new UnixDomainSocketEndPoint(replySocket));
        }

        release.SetResult();
        Assert.Equal("ok", await held);
        var after = await InstanceAsync(client, i => i.GetProperty("spoofedReplies").GetInt64() == 2 && i.GetProperty("pending").GetInt32() == 0);
        Assert.Equal(0, after.GetProperty("inFlight").GetInt64());
        Assert.Equal(0, after.GetProperty("malformedDatagrams").GetInt64()); // dropped as spoofed before any parsing
    }

    /// <summary>Polls GET /admin/backends (bounded) until the single instance satisfies <paramref name="condition"/>.</summary>
    private static async Task<JsonElement> InstanceAsync(HttpClient client, Func<JsonElement, bool> condition)
    {
        for (var i = 0; ; i++)
        {
            using var json = JsonDocument.Parse(await client.GetStringAsync("/admin/backends"));
            var instance = Assert.Single(json.RootElement.EnumerateArray().Single().GetProperty("instances").EnumerateArray()).Clone();
            if (condition(instance) || i == 2000)
            {
                Assert.True(condition(instance), instance.ToString());
                return instance;
            }

            await Task.Delay(10); // bounded poll: the reply socket's receive loop counts asynchronously
        }
    }
}
