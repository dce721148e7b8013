using System.Net;
using System.Text.Json;
using Gateway.Ipc.Backend;
using Gateway.Routing;
using Gateway.Testing;
using Gateway.Tests.Forwarding;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using static Gateway.Tests.Security.ProcessIdentity;

namespace Gateway.Tests.Security;

/// <summary>Who may call: uid/gid allow-lists checked against SO_PEERCRED of the real Unix socket connection.</summary>
public class CallerAuthorizationTests
{
    internal static Task<TestBackend> StartOkBackend(TempSocketDirectory dir) =>
        TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("ok")));

    internal static async Task<JsonElement> ProblemAsync(HttpResponseMessage response)
    {
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        using var document = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return document.RootElement.Clone();
    }

    private static Dictionary<string, string?> With(Dictionary<string, string?> settings, params (string Key, string Value)[] more)
    {
        foreach (var (key, value) in more)
        {
            settings[key] = value;
        }

        return settings;
    }

    [Fact]
    public async Task GlobalUidList_ContainingTheCaller_Allows()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await StartOkBackend(dir);
        await using var factory = new GatewayFactory(dir, With(ForwardingTests.Route(backend.SocketPath), ("Gateway:Authorization:AllowedUids:0", Text(OtherUid)), ("Gateway:Authorization:AllowedUids:1", Text(Uid)))).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var response = await client.GetAsync("/api/x");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("ok", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task GlobalLists_WithoutTheCaller_Return403NamingTheRuleButNotTheList()
    {
        using var dir = new TempSocketDirectory();
        var reached = false;
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) =>
        {
            reached = true;
            return ValueTask.FromResult(BackendResponse.Text("ok"));
        });
        var logs = new CapturingLoggerProvider();
        await using var factory = new GatewayFactory(
            dir,
            With(ForwardingTests.Route(backend.SocketPath), ("Gateway:Authorization:AllowedUids:0", Text(OtherUid)), ("Gateway:Authorization:AllowedGids:0", Text(OtherGid))),
            services: s => s.AddSingleton<ILoggerProvider>(logs)).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var response = await client.GetAsync("/api/x");

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        var body = await response.Content.ReadAsStringAsync();
        var problem = await ProblemAsync(response);
        Assert.Equal("urn:gateway:problem:caller-not-allowed", problem.GetProperty("type").GetString());
        Assert.Equal("Gateway:Authorization:AllowedUids / Gateway:Authorization:AllowedGids", problem.GetProperty("rule").GetString());
        Assert.Contains($"Caller uid {Uid} (gid {Gid})", problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.DoesNotContain(Text(OtherUid), body, StringComparison.Ordinal);
        Assert.DoesNotContain(Text(OtherGid), body, StringComparison.Ordinal);
        Assert.False(reached);

        // The denial is logged with the caller's uid and pid.
        var log = await logs.WaitForAsync(1201);
        Assert.Contains($"uid {Uid} gid {Gid} pid {Environment.ProcessId}", log, StringComparison.Ordinal);
    }

    [Fact]
    public async Task UnmatchedPath_ForADeniedCaller_Is403Not404()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await StartOkBackend(dir);
        await using var factory = new GatewayFactory(dir, With(ForwardingTests.Route(backend.SocketPath), ("Gateway:Authorization:AllowedUids:0", Text(OtherUid)))).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var response = await client.GetAsync("/no/such/route");

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal("Gateway:Authorization:AllowedUids", (await ProblemAsync(response)).GetProperty("rule").GetString());
    }

    [Fact]
    public async Task GidList_WithTheCallersPrimaryGroup_Allows()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await StartOkBackend(dir);
        await using var factory = new GatewayFactory(dir, With(ForwardingTests.Route(backend.SocketPath), ("Gateway:Authorization:AllowedUids:0", Text(OtherUid)), ("Gateway:Authorization:AllowedGids:0", Text(Gid)))).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var response = await client.GetAsync("/api/x");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task RouteList_NarrowsTheGlobalOne_OtherRoutesUnaffected()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await StartOkBackend(dir);
        await using var factory = new GatewayFactory(dir, With(
            ForwardingTests.Route(backend.SocketPath),
            ("Gateway:Authorization:AllowedUids:0", Text(Uid)),
            ("Gateway:Routes:secret:Path", "/secret/{**rest}"),
            ("Gateway:Routes:secret:Backend", "b"),
            ("Gateway:Routes:secret:AllowedUids:0", Text(OtherUid)))).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var open = await client.GetAsync("/api/x");
        using var secret = await client.GetAsync("/secret/x");

        Assert.Equal(HttpStatusCode.OK, open.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, secret.StatusCode);
        Assert.Equal("Gateway:Routes:secret:AllowedUids", (await ProblemAsync(secret)).GetProperty("rule").GetString());
    }

    [Fact]
    public async Task RouteList_CannotWidenTheGlobalOne()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await StartOkBackend(dir);
        await using var factory = new GatewayFactory(dir, With(
            ForwardingTests.Route(backend.SocketPath),
            ("Gateway:Authorization:AllowedUids:0", Text(OtherUid)),
            ("Gateway:Routes:api:AllowedUids:0", Text(Uid)))).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var response = await client.GetAsync("/api/x");

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Equal("Gateway:Authorization:AllowedUids", (await ProblemAsync(response)).GetProperty("rule").GetString());
    }

    [Fact]
    public async Task RouteGidList_WithTheCallersGroup_Allows()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await StartOkBackend(dir);
        await using var factory = new GatewayFactory(dir, With(ForwardingTests.Route(backend.SocketPath), ("Gateway:Routes:api:AllowedGids:0", Text(OtherGid)), ("Gateway:Routes:api:AllowedGids:1", Text(Gid)))).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var response = await client.GetAsync("/api/x");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
    }

    [Fact]
    public async Task HealthEndpoints_AnswerADeniedCaller_UnlessExemptionIsOff()
    {
        using var dir = new TempSocketDirectory();
        await using var exempt = new GatewayFactory(dir, new Dictionary<string, string?> { ["Gateway:Authorization:AllowedUids:0"] = Text(OtherUid) }).StartKestrel();
        using var client = exempt.CreateGatewayClient();

        using var healthz = await client.GetAsync("/healthz");
        using var readyz = await client.GetAsync("/readyz");
        using var openapi = await client.GetAsync("/openapi/v1.json");

        Assert.Equal(HttpStatusCode.OK, healthz.StatusCode);
        Assert.Equal(HttpStatusCode.OK, readyz.StatusCode);
        Assert.Equal(HttpStatusCode.Forbidden, openapi.StatusCode);

        using var dir2 = new TempSocketDirectory();
        await using var strict = new GatewayFactory(dir2, new Dictionary<string, string?>
        {
            ["Gateway:Authorization:AllowedUids:0"] = Text(OtherUid),
            ["Gateway:Authorization:ExemptHealthEndpoints"] = "false",
        }).StartKestrel();
        using var strictClient = strict.CreateGatewayClient();

        using var denied = await strictClient.GetAsync("/healthz");

        Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
    }

    [Fact]
    public async Task UnknownCaller_WithoutPeerCredentials_IsDeniedWhereAListApplies()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await StartOkBackend(dir);

        // TestServer: no socket, so no peer credentials: even the process's own uid cannot be recognised.
        await using var factory = new GatewayFactory(dir, With(ForwardingTests.Route(backend.SocketPath), ("Gateway:Authorization:AllowedUids:0", Text(Uid))));
        using var client = factory.CreateClient();

        using var response = await client.GetAsync("/api/x");
        using var health = await client.GetAsync("/healthz");

        Assert.Equal(HttpStatusCode.Forbidden, response.StatusCode);
        Assert.Contains("identity is unknown", (await ProblemAsync(response)).GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.OK, health.StatusCode);
    }

    [Fact]
    public async Task RouteListChange_InTheConfigurationFile_AppliesWithoutRestart()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await StartOkBackend(dir);
        var file = Path.Combine(dir.Path, "gateway.json");
        string Config(uint uid) => $$"""
            { "Gateway": {
                "Backends": { "b": { "Instances": [ "{{backend.SocketPath}}" ] } },
                "Routes": { "r": { "Path": "/r/{**rest}", "Backend": "b", "AllowedUids": [ "{{uid}}" ] } } } }
            """;
        await File.WriteAllTextAsync(file, Config(OtherUid));
        await using var factory = new GatewayFactory(dir, jsonFile: file).StartKestrel();
        using var client = factory.CreateGatewayClient();
        var provider = factory.Services.GetRequiredService<RouteTableProvider>();

        using var before = await client.GetAsync("/r/x");
        var changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var registration = provider.GetChangeToken().RegisterChangeCallback(_ => changed.TrySetResult(), null);
        await File.WriteAllTextAsync(file, Config(Uid));
        await changed.Task.WaitAsync(TimeSpan.FromSeconds(120));
        using var after = await client.GetAsync("/r/x");

        Assert.Equal(HttpStatusCode.Forbidden, before.StatusCode);
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }
}
