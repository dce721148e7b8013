using Gateway.Testing;

namespace Gateway.Tests.EndToEnd;

/// <summary>
/// The backends' own healthcheck commands, which docker-compose.yml and deploy/kubernetes/pod.yaml run as container
/// healthchecks / exec probes: <c>EchoBackend --healthcheck</c> (PING → PONG) and
/// <c>echo_server.py --healthcheck</c> (a datagram echoed upper-cased). Exit 0 against a live backend, 1 otherwise.
/// </summary>
public class SampleHealthCheckTests
{
    [Fact]
    public async Task EchoBackendHealthCheck_ExitsZeroWhileTheBackendRuns_AndOneWhenItIsGone()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("echo.sock");

        await using (await SampleBackends.StartEchoAsync(path))
        {
            var (live, liveOutput) = await RunAsync("dotnet", SampleBackends.Dll("EchoBackend"), "--healthcheck", "--Backend:SocketPath=" + path);
            Assert.True(live == 0, liveOutput);
            Assert.Contains("PONG", liveOutput, StringComparison.Ordinal);
        }

        var (gone, goneOutput) = await RunAsync("dotnet", SampleBackends.Dll("EchoBackend"), "--healthcheck", "--Backend:SocketPath=" + path);
        Assert.True(gone == 1, goneOutput);
        Assert.Contains("no PONG", goneOutput, StringComparison.Ordinal);
    }

    [Fact]
    public async Task EchoBackendHealthCheck_FailsAgainstASocketThatIsNotAnEnvelopeBackend()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("raw.sock");
        await using var raw = await RawServers.StartPythonAsync(path); // echoes the PING frame upper-cased: not a PONG

        var (code, output) = await RunAsync("dotnet", SampleBackends.Dll("EchoBackend"), "--healthcheck", "--Backend:SocketPath=" + path);

        Assert.True(code == 1, output);
    }

    [Fact]
    public async Task PythonRawDaemonHealthCheck_ExitsZeroWhileTheDaemonRuns_AndOneWhenItIsGone()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("raw.sock");
        var script = RepoPaths.Combine("samples", "raw", "python", "echo_server.py");

        await using (var daemon = await RawServers.StartPythonAsync(path))
        {
            var (live, liveOutput) = await RunAsync("python3", script, "--socket", path, "--healthcheck");
            Assert.True(live == 0, liveOutput);
            await daemon.SignalAsync(9); // SIGKILL: the socket file stays, nobody receives on it
        }

        Assert.True(Path.Exists(path), "a killed daemon leaves its socket file behind");
        var (stale, staleOutput) = await RunAsync("python3", script, "--socket", path, "--healthcheck");
        Assert.True(stale == 1, staleOutput);

        File.Delete(path);
        var (gone, goneOutput) = await RunAsync("python3", script, "--socket", path, "--healthcheck");
        Assert.True(gone == 1, goneOutput);
    }

    private static async Task<(int ExitCode, string Output)> RunAsync(string fileName, params string[] arguments)
    {
        await using var process = ExternalProcess.Start(fileName, arguments);
        var code = await process.WaitForExitAsync();
        return (code, process.Output);
    }
}
