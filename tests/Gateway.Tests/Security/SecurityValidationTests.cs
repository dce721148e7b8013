using System.Text.Json.Nodes;
using Gateway.Testing;
using Gateway.Tests.Forwarding;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.Options;

namespace Gateway.Tests.Security;

/// <summary>Start-up validation of the authorization and limit keys, and what the OpenAPI document says about them.</summary>
public class SecurityValidationTests
{
    [Fact]
    public void Start_WithBadAllowListsAndLimits_ReportsEveryErrorNamingItsKey()
    {
        using var dir = new TempSocketDirectory();
        var settings = ForwardingTests.Route(dir.Socket("b.sock"));
        settings["Gateway:Authorization:AllowedUids:0"] = "0";
        settings["Gateway:Authorization:AllowedUids:1"] = "no-such-user-xyz";
        settings["Gateway:Authorization:AllowedGids:0"] = "12x";
        settings["Gateway:Routes:api:AllowedUids:0"] = "-5";
        settings["Gateway:Routes:api:AllowedGids:0"] = "no-such-group-xyz";
        settings["Gateway:Limits:MaxRequestHeaderCount"] = "0";
        settings["Gateway:Limits:MaxRequestHeadersTotalSize"] = "100";
        settings["Gateway:RateLimiting:PermitsPerSecond"] = "0";
        settings["Gateway:RateLimiting:ConcurrentRequestsPerCaller"] = "0";
        using var factory = new GatewayFactory(dir, settings);

        var ex = Assert.Throws<OptionsValidationException>(() => factory.CreateClient());

        var failures = string.Join("\n", ex.Failures);
        Assert.Contains("Gateway:Authorization:AllowedUids:1: 'no-such-user-xyz' is not a uid (a number or a user name from /etc/passwd).", failures, StringComparison.Ordinal);
        Assert.Contains("Gateway:Authorization:AllowedGids:0: '12x' is not a gid", failures, StringComparison.Ordinal);
        Assert.Contains("Gateway:Routes:api:AllowedUids:0: '-5' is not a uid", failures, StringComparison.Ordinal);
        Assert.Contains("Gateway:Routes:api:AllowedGids:0: 'no-such-group-xyz' is not a gid", failures, StringComparison.Ordinal);
        Assert.Contains("Gateway:Limits:MaxRequestHeaderCount: 0 is out of range", failures, StringComparison.Ordinal);
        Assert.Contains("Gateway:Limits:MaxRequestHeadersTotalSize: 100 is out of range", failures, StringComparison.Ordinal);
        Assert.Contains("Gateway:RateLimiting:PermitsPerSecond: 0 is out of range", failures, StringComparison.Ordinal);
        Assert.Contains("Gateway:RateLimiting:ConcurrentRequestsPerCaller: 0 is out of range", failures, StringComparison.Ordinal);
        Assert.Equal(8, ex.Failures.Count());
    }

    [Fact]
    public void Start_WithBurstButNoRate_NamesBothKeys()
    {
        using var dir = new TempSocketDirectory();
        using var factory = new GatewayFactory(dir, new Dictionary<string, string?> { ["Gateway:RateLimiting:Burst"] = "5" });

        var ex = Assert.Throws<OptionsValidationException>(() => factory.CreateClient());

        Assert.Equal(["Gateway:RateLimiting:Burst: has no effect without Gateway:RateLimiting:PermitsPerSecond."], ex.Failures);
    }

    [Fact]
    public async Task OpenApi_ListsTheSecurityErrors_WhereTheyApply()
    {
        using var dir = new TempSocketDirectory();
        var settings = ForwardingTests.Route(dir.Socket("b.sock"), "/api/{**rest}", null, "GET");
        settings["Gateway:Routes:open:Path"] = "/open";
        settings["Gateway:Routes:open:Backend"] = "b";
        settings["Gateway:Routes:open:Methods:0"] = "GET";
        settings["Gateway:Routes:api:AllowedUids:0"] = "0";
        settings["Gateway:RateLimiting:ConcurrentRequestsPerCaller"] = "5";
        await using var factory = new GatewayFactory(dir, settings);
        using var client = factory.CreateClient();

        var document = JsonNode.Parse(await client.GetStringAsync("/openapi/v1.json"))!;

        var restricted = document["paths"]!["/api/{rest}"]!["get"]!["responses"]!.AsObject();
        var open = document["paths"]!["/open"]!["get"]!["responses"]!.AsObject();
        Assert.Contains("Gateway:Routes:api:AllowedUids", restricted["403"]!["description"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.False(open.ContainsKey("403"));
        Assert.True(restricted.ContainsKey("429"));
        Assert.True(open.ContainsKey("429"));
        Assert.True(open.ContainsKey("431"));
    }
}
