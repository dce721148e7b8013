using System.Net;
using System.Text.Json;
using Gateway.Ipc.Backend;
using Gateway.Resilience;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Gateway.Tests.Resilience;

public class HealthProbeTests
{
    [Fact]
    public async Task Readiness_FlipsWhenEveryInstanceIsDown_AndBackWhenAProbeSucceeds()
    {
        using var dir = new TempSocketDirectory();
        var paths = new[] { dir.Socket("b1.sock"), dir.Socket("b2.sock") };
        await using var factory = new GatewayFactory(dir, ResilienceSettings.Route(paths));
        using var client = factory.CreateClient();
        var prober = factory.Services.GetRequiredService<BackendHealthProber>();

        await prober.ProbeAllAsync();
        using (var down = await client.GetAsync("/readyz"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, down.StatusCode);
            var backend = await BackendDetailAsync(down);
            Assert.Equal(0, backend.GetProperty("healthyInstances").GetInt32());
            Assert.Equal("ejected", backend.GetProperty("instances").GetProperty(paths[0]).GetString());
        }

        using (var live = await client.GetAsync("/healthz"))
        {
            Assert.Equal(HttpStatusCode.OK, live.StatusCode); // the process is alive all along
        }

        await using var second = await TestBackend.StartAsync(paths[1], (_, _) => ValueTask.FromResult(BackendResponse.Text("ok")));
        await prober.ProbeAllAsync();
        using var up = await client.GetAsync("/readyz");

        Assert.Equal(HttpStatusCode.OK, up.StatusCode);
        var detail = await BackendDetailAsync(up);
        Assert.Equal(1, detail.GetProperty("healthyInstances").GetInt32());
        Assert.Equal("ejected", detail.GetProperty("instances").GetProperty(paths[0]).GetString());
        Assert.Equal("healthy", detail.GetProperty("instances").GetProperty(paths[1]).GetString());
    }

    [Fact]
    public async Task RawInstance_KilledWithSigkill_LeavesItsSocketFile_AndTheProbeEjectsIt()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("raw.sock");
        await using var daemon = await RawServers.StartPythonAsync(path);
        var settings = ResilienceSettings.Route(path);
        settings["Gateway:Backends:b:Mode"] = "Raw";
        await using var factory = new GatewayFactory(dir, settings);
        using var client = factory.CreateClient();
        var prober = factory.Services.GetRequiredService<BackendHealthProber>();

        await prober.ProbeAllAsync();
        using (var ready = await client.GetAsync("/readyz"))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        }

        await daemon.SignalAsync(9); // SIGKILL: the daemon cannot unlink its socket file
        Assert.True(Path.Exists(path), "a killed daemon leaves its socket file behind");
        await prober.ProbeAllAsync();
        using var down = await client.GetAsync("/readyz");

        Assert.Equal(HttpStatusCode.ServiceUnavailable, down.StatusCode);
        var backend = await BackendDetailAsync(down);
        Assert.Equal("ejected", backend.GetProperty("instances").GetProperty(path).GetString());
    }

    [Fact]
    public async Task EjectedInstance_IsSkipped_UntilAProbeReadmitsIt()
    {
        using var dir = new TempSocketDirectory();
        var seen = new List<string>();
        var a = dir.Socket("a.sock");
        await using var b = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("b")));
        await using var factory = new GatewayFactory(dir, ResilienceSettings.Route(a, b.SocketPath));
        using var client = factory.CreateClient();
        var prober = factory.Services.GetRequiredService<BackendHealthProber>();
        await prober.ProbeAllAsync(); // a is not running: ejected

        for (var i = 0; i < 4; i++)
        {
            seen.Add(await client.GetStringAsync($"/api/{i}"));
        }

        await using var started = await TestBackend.StartAsync(a, (_, _) => ValueTask.FromResult(BackendResponse.Text("a")));
        await prober.ProbeAllAsync();
        var after = new List<string>();
        for (var i = 0; i < 4; i++)
        {
            after.Add(await client.GetStringAsync($"/api/{i}"));
        }

        Assert.All(seen, body => Assert.Equal("b", body));
        Assert.Contains("a", after);
        Assert.Contains("b", after);
    }

    private static async Task<JsonElement> BackendDetailAsync(HttpResponseMessage response)
    {
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return json.RootElement.GetProperty("checks").GetProperty("backends").GetProperty("data").GetProperty("b").Clone();
    }
}
