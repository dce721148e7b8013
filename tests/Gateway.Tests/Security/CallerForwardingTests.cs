using System.Globalization;
using Gateway.Ipc.Backend;
using Gateway.Testing;
using Gateway.Tests.Forwarding;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Security.ProcessIdentity;

namespace Gateway.Tests.Security;

/// <summary><c>Gateway:ForwardCallerCredentials</c>: the backend learns the real caller; a client cannot forge it.</summary>
public class CallerForwardingTests
{
    private static async Task<BackendRequest> SendSpoofedAsync(bool forward)
    {
        using var dir = new TempSocketDirectory();
        BackendRequest? seen = null;
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) =>
        {
            seen = request;
            return ValueTask.FromResult(BackendResponse.Text("ok"));
        });
        var settings = ForwardingTests.Route(backend.SocketPath);
        settings["Gateway:ForwardCallerCredentials"] = forward ? "true" : "false";
        await using var factory = new GatewayFactory(dir, settings).StartKestrel();
        using var client = factory.CreateGatewayClient();
        using var message = new HttpRequestMessage(HttpMethod.Get, "/api/x");
        message.Headers.Add("X-Gateway-Caller-Uid", "0");
        message.Headers.Add("x-gateway-caller-pid", "1");
        message.Headers.Add("x-gateway-caller-gid", "0");
        message.Headers.Add("x-gateway-caller-groups", "wheel");

        using var response = await client.SendAsync(message);

        response.EnsureSuccessStatusCode();
        return seen!;
    }

    [Fact]
    public async Task Enabled_BackendSeesTheRealCaller_AndSpoofedHeadersAreReplaced()
    {
        var seen = await SendSpoofedAsync(forward: true);

        Assert.Equal([Text(Uid)], seen.Headers.Where(h => h.Key == "x-gateway-caller-uid").Select(h => h.Value));
        Assert.Equal([Text(Gid)], seen.Headers.Where(h => h.Key == "x-gateway-caller-gid").Select(h => h.Value));
        Assert.Equal([Environment.ProcessId.ToString(CultureInfo.InvariantCulture)], seen.Headers.Where(h => h.Key == "x-gateway-caller-pid").Select(h => h.Value));
        Assert.Null(seen.GetHeader("x-gateway-caller-groups"));
    }

    [Fact]
    public async Task Disabled_NoCallerHeadersReachTheBackend_NotEvenSpoofedOnes()
    {
        var seen = await SendSpoofedAsync(forward: false);

        Assert.DoesNotContain(seen.Headers, h => h.Key.StartsWith("x-gateway-caller-", StringComparison.OrdinalIgnoreCase));
    }
}
