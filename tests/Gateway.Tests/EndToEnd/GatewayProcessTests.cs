using System.Net;
using System.Net.Sockets;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.EndToEnd;

/// <summary>The gateway as a process: signals, socket-file lifecycle, start-up errors.</summary>
public class GatewayProcessTests
{
    private const int SigTerm = 15;

    [Fact]
    public async Task Sigterm_StopsAccepting_DrainsTheInFlightRequest_RemovesTheSocket()
    {
        using var dir = new TempSocketDirectory();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (request, _) =>
        {
            entered.TrySetResult();
            await release.Task;
            return Ipc.Backend.BackendResponse.Text("finished");
        });
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartHealthyAsync(socket, "--Gateway:Backends:b:Instances:0=" + backend.SocketPath, "--Gateway:Routes:r:Path=/slow", "--Gateway:Routes:r:Backend=b", "--Gateway:DrainTimeout=00:00:30");
        using var client = UnixHttp.CreateClient(socket);

        var inFlight = client.GetAsync("/slow");
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(120));
        await gateway.SignalAsyncNoWait(SigTerm);

        // New connections are refused once shutdown has begun (bounded readiness poll, not a timing assertion).
        await WaitUntilAsync(() => !CanConnect(socket));
        Assert.False(inFlight.IsCompleted);

        release.SetResult();
        using var response = await inFlight;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("finished", await response.Content.ReadAsStringAsync());
        Assert.Equal(0, await gateway.WaitForExitAsync());
        Assert.False(File.Exists(socket) || Path.Exists(socket), "the socket file is removed on shutdown");
    }

    [Fact]
    public async Task Sigterm_DrainTimeoutExceeded_CancelsTheRequestAtTheBackend()
    {
        using var dir = new TempSocketDirectory();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (request, token) =>
        {
            entered.TrySetResult();
            token.Register(() => cancelled.TrySetResult());
            await Task.Delay(Timeout.Infinite, token);
            return Ipc.Backend.BackendResponse.Text("never");
        });
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartHealthyAsync(socket, "--Gateway:Backends:b:Instances:0=" + backend.SocketPath, "--Gateway:Routes:r:Path=/stuck", "--Gateway:Routes:r:Backend=b", "--Gateway:DrainTimeout=00:00:01");
        using var client = UnixHttp.CreateClient(socket);

        var inFlight = client.GetAsync("/stuck");
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(120));
        await gateway.SignalAsyncNoWait(SigTerm);

        Assert.Equal(0, await gateway.WaitForExitAsync());
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(120)); // the backend got CANCEL for the abandoned request
        await Assert.ThrowsAnyAsync<Exception>(() => inFlight);
    }

    [Fact]
    public async Task SecondGateway_OnALiveSocket_RefusesWithAMessageNamingThePath()
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("gw.sock");
        await using var first = await GatewayProcess.StartHealthyAsync(socket);

        await using var second = GatewayProcess.Start("--Gateway:Listen:UnixSocket=" + socket);
        var exitCode = await second.WaitForExitAsync();

        Assert.Equal(2, exitCode);
        Assert.Contains($"Cannot listen on {socket} (Gateway:Listen:UnixSocket): another process is already serving on it.", second.Output, StringComparison.Ordinal);
        using var client = UnixHttp.CreateClient(socket);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/healthz")).StatusCode);
    }

    [Fact]
    public async Task StaleSocketFile_IsTakenOver()
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("gw.sock");
        // A process that bound the path and died without unlinking it.
        await using (var dead = ExternalProcess.Start("python3", "-c", $"import socket; s = socket.socket(socket.AF_UNIX); s.bind('{socket}')"))
        {
            Assert.Equal(0, await dead.WaitForExitAsync());
        }

        Assert.True(Path.Exists(socket));

        await using var gateway = await GatewayProcess.StartHealthyAsync(socket);

        Assert.Contains("Removed a stale socket file at " + socket, gateway.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SocketFile_GetsTheConfiguredMode_AndTheListenLineSaysSo()
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("gw.sock");

        await using var gateway = await GatewayProcess.StartHealthyAsync(socket, "--Gateway:Listen:SocketMode=0600");

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket));
        Assert.Contains($"Listening on unix:{socket} (mode 0600)", gateway.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SocketFile_GetsTheConfiguredGroup_ByName()
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("gw.sock");
        var gid = File.ReadLines("/etc/group").Select(l => l.Split(':')).First(f => f[0] == "daemon")[2];

        await using var gateway = await GatewayProcess.StartHealthyAsync(socket, "--Gateway:Listen:SocketGroup=daemon");

        await using var stat = ExternalProcess.Start("stat", "-c", "%g", socket);
        Assert.Equal(0, await stat.WaitForExitAsync());
        Assert.Equal(gid, stat.Output.Trim());
        Assert.Contains($"Listening on unix:{socket} (mode 0660, group daemon)", gateway.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task InvalidConfiguration_ExitsWithEveryErrorNamingItsKey_AndNoStackTrace()
    {
        using var dir = new TempSocketDirectory();

        await using var gateway = GatewayProcess.Start("--Gateway:Listen:UnixSocket=" + dir.Socket("gw.sock"), "--Gateway:Routes:r:Path=/x", "--Gateway:Routes:r:Backend=nope", "--Gateway:Listen:SocketMode=abc");
        var exitCode = await gateway.WaitForExitAsync();

        Assert.Equal(2, exitCode);
        Assert.Contains("Gateway: invalid configuration:", gateway.Output, StringComparison.Ordinal);
        Assert.Contains("Gateway:Routes:r:Backend: 'nope' is not a configured backend", gateway.Output, StringComparison.Ordinal);
        Assert.Contains("Gateway:Listen:SocketMode: 'abc' is not an octal file mode", gateway.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", gateway.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task HealthcheckSwitch_ExitsZeroWhenHealthy_OneWhenNotRunning()
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartHealthyAsync(socket);

        await using var healthy = GatewayProcess.Start("--healthcheck", "--Gateway:Listen:UnixSocket=" + socket);
        await using var absent = GatewayProcess.Start("--healthcheck", "--Gateway:Listen:UnixSocket=" + dir.Socket("none.sock"));

        Assert.Equal(0, await healthy.WaitForExitAsync());
        Assert.Equal(1, await absent.WaitForExitAsync());
    }

    private static bool CanConnect(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        for (var i = 0; i < 1000 && !condition(); i++)
        {
            await Task.Delay(10);
        }

        Assert.True(condition());
    }
}
