using System.Net;
using Gateway.Ipc.Backend;
using Gateway.Resilience;
using Gateway.Routing;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace Gateway.Tests.Routing;

/// <summary>Routes and backends from a configuration file apply without a restart.</summary>
public class ReloadTests
{
    private static string Config(string route, string backendSocket) => $$"""
        { "Gateway": {
            "Backends": { "b": { "Instances": [ "{{backendSocket}}" ] } },
            "Routes": { "r": { "Path": "{{route}}", "Backend": "b" } } } }
        """;

    [Fact]
    public async Task ValidChange_AppliesWithoutRestart_AndTheInFlightRequestCompletes()
    {
        using var dir = new TempSocketDirectory();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var oldBackend = await TestBackend.StartAsync(dir.Socket("old.sock"), async (request, token) =>
        {
            entered.TrySetResult();
            await release.Task.WaitAsync(token); // a failed assertion must not leave the handler (and dispose) hanging
            return BackendResponse.Text("old");
        });
        await using var newBackend = await TestBackend.StartAsync(dir.Socket("new.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("new")));
        var file = Path.Combine(dir.Path, "gateway.json");
        await File.WriteAllTextAsync(file, Config("/v1/{**rest}", oldBackend.SocketPath));
        await using var factory = new GatewayFactory(dir, jsonFile: file);
        using var client = factory.CreateClient();
        var provider = factory.Services.GetRequiredService<RouteTableProvider>();

        var inFlight = client.GetAsync("/v1/x");
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(120));
        await File.WriteAllTextAsync(file, Config("/v2/{**rest}", newBackend.SocketPath));
        // Wait for the table that has the new route: the file watcher may also report a change for the initial write
        // (a reload of the same table), so the first change notification is not necessarily this one.
        await AppliedAsync(provider, "/v2/{**rest}");

        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/v1/x")).StatusCode);
        Assert.Equal("new", await client.GetStringAsync("/v2/x"));
        release.SetResult();
        using var old = await inFlight;
        Assert.Equal("old", await old.Content.ReadAsStringAsync());
    }

    /// <summary>Waits (bounded, on change notifications) until the current route table has <paramref name="path"/>.</summary>
    private static async Task AppliedAsync(RouteTableProvider provider, string path)
    {
        for (var i = 0; i < 100; i++)
        {
            var changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            using var registration = provider.GetChangeToken().RegisterChangeCallback(_ => changed.TrySetResult(), null);
            if (provider.Current.Routes.Any(r => r.PathTemplate == path))
            {
                return;
            }

            await changed.Task.WaitAsync(TimeSpan.FromSeconds(120));
        }

        Assert.Fail($"The route table never got {path}.");
    }

    [Fact]
    public async Task InvalidChange_IsRejectedWithEveryError_AndThePreviousTableStays()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("still here")));
        var file = Path.Combine(dir.Path, "gateway.json");
        await File.WriteAllTextAsync(file, Config("/v1/{**rest}", backend.SocketPath));
        var logs = new CapturingLoggerProvider();
        await using var factory = new GatewayFactory(dir, jsonFile: file, services: s => s.AddSingleton<ILoggerProvider>(logs));
        using var client = factory.CreateClient();
        var version = factory.Services.GetRequiredService<RouteTableProvider>().Current.Version;

        await File.WriteAllTextAsync(file, """
            { "Gateway": { "Backends": { "b": { "Instances": [ "relative.sock" ] } },
                           "Routes": { "r": { "Path": "/v1/{**rest}", "Backend": "missing" } } } }
            """);
        var error = await logs.WaitForAsync(1013);

        Assert.Contains("Gateway:Backends:b:Instances:0: 'relative.sock' must be an absolute path", error, StringComparison.Ordinal);
        Assert.Contains("Gateway:Routes:r:Backend: 'missing' is not a configured backend", error, StringComparison.Ordinal);
        Assert.Equal(version, factory.Services.GetRequiredService<RouteTableProvider>().Current.Version);
        Assert.Equal("still here", await client.GetStringAsync("/v1/x"));
    }

    [Fact]
    public async Task ManyReloads_KeepOnePipelinePerRoute_ReleaseReplacedOnesAfterTheirLastRequest_AndApplyNewSettings()
    {
        using var dir = new TempSocketDirectory();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (request, _) =>
        {
            if (request.Path == "/api/hold")
            {
                entered.TrySetResult();
                await release.Task;
            }

            return BackendResponse.Text("ok");
        });
        var settings = new Dictionary<string, string?>
        {
            ["Gateway:Backends:b:Instances:0"] = backend.SocketPath,
            ["Gateway:Backends:gone:Instances:0"] = dir.Socket("gone.sock"),
            ["Gateway:Backends:gone:Retry:MaxAttempts"] = "1",
            ["Gateway:Backends:gone:Retry:BaseDelay"] = "00:00:00",
            ["Gateway:Backends:gone:Retry:MaxDelay"] = "00:00:00",
            ["Gateway:Routes:api:Path"] = "/api/{**rest}",
            ["Gateway:Routes:api:Backend"] = "b",
            ["Gateway:Routes:flaky:Path"] = "/flaky",
            ["Gateway:Routes:flaky:Backend"] = "gone",
        };
        await using var factory = new GatewayFactory(dir, settings);
        using var client = factory.CreateClient();
        var routes = factory.Services.GetRequiredService<RouteTableProvider>();
        var pipelines = factory.Services.GetRequiredService<ForwardingPipelineProvider>();
        var configuration = factory.Services.GetRequiredService<IConfiguration>();
        var gone = routes.Current.Backends["gone"].Instances[0].Resilience;

        using (var once = await client.GetAsync("/flaky").WaitAsync(TimeSpan.FromSeconds(30)))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, once.StatusCode);
        }

        Assert.Equal(0, gone.Retries); // MaxAttempts 1
        var held = client.GetAsync("/api/hold");
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(30));

        // 40 reloads, each a new table version with a different route timeout; each version's pipeline gets used.
        for (var i = 0; i < 40; i++)
        {
            configuration["Gateway:Routes:api:Timeout"] = $"00:00:{10 + i}";
            routes.OnConfigurationChanged();
            Assert.Equal("ok", await client.GetStringAsync($"/api/{i}").WaitAsync(TimeSpan.FromSeconds(30)));
        }

        // One pipeline per route, plus the replaced one the held request still runs on.
        await Eventually.UntilAsync(() => pipelines.LivePipelines == 3, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(10));
        Assert.False(held.IsCompleted);
        release.SetResult();
        using (var done = await held.WaitAsync(TimeSpan.FromSeconds(30)))
        {
            Assert.Equal(HttpStatusCode.OK, done.StatusCode);
        }

        await Eventually.UntilAsync(() => pipelines.LivePipelines == 2, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(10));

        // A reload's settings apply to the route's (reloaded) pipeline.
        configuration["Gateway:Backends:gone:Retry:MaxAttempts"] = "3";
        routes.OnConfigurationChanged();
        using (var retried = await client.GetAsync("/flaky").WaitAsync(TimeSpan.FromSeconds(30)))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, retried.StatusCode);
        }

        Assert.Equal(2, gone.Retries);
        await Eventually.UntilAsync(() => pipelines.LivePipelines == 2, TimeSpan.FromSeconds(60), TimeSpan.FromMilliseconds(10));
    }
}
