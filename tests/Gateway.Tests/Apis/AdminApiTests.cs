using System.Net;
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
        await using var factory = new GatewayFactory(dir, settings);
        using var client = factory.CreateClient();
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
}
