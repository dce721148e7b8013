using System.Net;
using System.Net.Sockets;
using System.Text;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Hosting;

/// <summary>
/// systemd integration without systemd as PID 1 (docs/systemd.md): socket activation under
/// <c>systemd-socket-activate</c>, Type=notify readiness, stopping and watchdog against a fake NOTIFY_SOCKET, and
/// <c>systemd-analyze verify</c> on the shipped unit files. CI installs the Debian package <c>systemd</c>.
/// </summary>
public class SystemdTests
{
    [Fact]
    public async Task SocketActivation_ServesOnTheInheritedSocket_AndLeavesItsFileInPlace()
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("activated.sock");
        await using var process = ExternalProcess.Start(
            "systemd-socket-activate",
            ["-l", socket, "--fdname=gateway", "dotnet", GatewayProcess.Dll, "--Gateway:Listen:UnixSocket=" + socket, "--Logging:LogLevel:Default=Information"]);
        await process.WaitForFileAsync(socket);
        var mode = File.GetUnixFileMode(socket);

        // The first connection starts the gateway (systemd-socket-activate execs it with the listening socket as fd 3).
        using var client = UnixHttp.CreateClient(socket);
        using var response = await client.GetAsync("/healthz");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await process.SignalAsyncNoWait(15);
        Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(60)));
        Assert.Contains("a socket passed by systemd", process.Output, StringComparison.Ordinal);
        Assert.True(Path.Exists(socket), "the gateway removed the socket file that systemd owns");
        Assert.Equal(mode, File.GetUnixFileMode(socket)); // systemd's mode, not Gateway:Listen:SocketMode
    }

    [Fact]
    public async Task NotifySocket_GetsReadyOnceServing_WatchdogPings_AndStoppingOnDrain()
    {
        using var dir = new TempSocketDirectory();
        var notifyPath = dir.Socket("notify");
        using var notify = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        notify.Bind(new UnixDomainSocketEndPoint(notifyPath));
        var socket = dir.Socket("gw.sock");
        await using var process = ExternalProcess.Start(
            "dotnet",
            new Dictionary<string, string> { ["NOTIFY_SOCKET"] = notifyPath, ["WATCHDOG_USEC"] = "400000" },
            [GatewayProcess.Dll, "--Gateway:Listen:UnixSocket=" + socket]);

        Assert.Contains("READY=1", await ReceiveUntilAsync(notify, "READY=1"), StringComparison.Ordinal);

        // READY=1 means serving: the socket answers at once, no retry.
        using (var client = UnixHttp.CreateClient(socket))
        using (var response = await client.GetAsync("/readyz"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        Assert.Contains("WATCHDOG=1", await ReceiveUntilAsync(notify, "WATCHDOG=1"), StringComparison.Ordinal);
        await process.SignalAsyncNoWait(15);
        Assert.Contains("STOPPING=1", await ReceiveUntilAsync(notify, "STOPPING=1"), StringComparison.Ordinal);
        Assert.Equal(0, await process.WaitForExitAsync(TimeSpan.FromSeconds(60)));
    }

    [Fact]
    public async Task ShippedUnitFiles_PassSystemdAnalyzeVerify()
    {
        var unitDirectory = RepoPaths.Combine("deploy", "systemd");
        await using var verify = ExternalProcess.Start(
            "systemd-analyze",
            ["verify", "--man=no", Path.Combine(unitDirectory, "gateway.socket"), Path.Combine(unitDirectory, "gateway.service")]);

        var exitCode = await verify.WaitForExitAsync(TimeSpan.FromSeconds(60));

        Assert.True(exitCode == 0, verify.Output);
        Assert.DoesNotContain("gateway.", verify.Output, StringComparison.Ordinal); // no warning about our units
    }

    private static async Task<string> ReceiveAsync(Socket socket)
    {
        var buffer = new byte[4096];
        var n = await socket.ReceiveAsync(buffer).WaitAsync(TimeSpan.FromSeconds(120));
        return Encoding.UTF8.GetString(buffer, 0, n);
    }

    private static async Task<string> ReceiveUntilAsync(Socket socket, string state)
    {
        while (true)
        {
            var message = await ReceiveAsync(socket);
            if (message.Contains(state, StringComparison.Ordinal))
            {
                return message;
            }
        }
    }
}
