using Gateway.Testing;

namespace Gateway.Conformance.Tests;

/// <summary>Behaviour of samples/python/backend.py outside the wire protocol: socket-file lifecycle and shutdown.</summary>
public sealed class PythonBackendTests
{
    private static readonly BackendLaunch s_python = BackendLaunch.All["python"];

    [Fact]
    public async Task SigTerm_ExitsCleanly_AndUnlinksItsSocket()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await BackendProcess.StartReadyAsync(s_python, dir.Socket("py.sock"));

        var exited = await backend.TerminateAsync(TimeSpan.FromSeconds(10));

        Assert.True(exited, backend.Output);
        Assert.Equal(0, backend.ExitCode);
        Assert.False(File.Exists(backend.SocketPath), "the socket file is still there");
    }

    [Fact]
    public async Task StaleSocketFile_FromAKilledBackend_IsTakenOver()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("py.sock");
        await using (var crashed = await BackendProcess.StartReadyAsync(s_python, path))
        {
            await crashed.KillAsync();
        }

        Assert.True(File.Exists(path), "SIGKILL should leave the socket file behind");

        await using var backend = await BackendProcess.StartReadyAsync(s_python, path);

        Assert.True(await ConformanceKit.PingAsync(path, TimeSpan.FromSeconds(5)));
        Assert.Contains("stale", backend.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task LiveBackendOnThePath_SecondInstanceRefuses_FirstKeepsServing()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("py.sock");
        await using var first = await BackendProcess.StartReadyAsync(s_python, path);

        await using var second = BackendProcess.Start(s_python, path);
        Assert.True(await second.WaitForExitAsync(TimeSpan.FromSeconds(30)), "the second instance did not exit");

        Assert.NotEqual(0, second.ExitCode);
        Assert.Contains("another backend is live", second.Output, StringComparison.Ordinal);
        Assert.True(await ConformanceKit.PingAsync(path, TimeSpan.FromSeconds(5)), "the first instance stopped answering");
    }

    [Fact]
    public async Task RegularFileOnThePath_IsLeftAlone_AndTheBackendRefuses()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("py.sock");
        await File.WriteAllTextAsync(path, "not a socket");

        await using var backend = BackendProcess.Start(s_python, path);
        Assert.True(await backend.WaitForExitAsync(TimeSpan.FromSeconds(30)), "the backend did not exit");

        Assert.NotEqual(0, backend.ExitCode);
        Assert.Contains("not a socket", backend.Output, StringComparison.Ordinal);
        Assert.Equal("not a socket", await File.ReadAllTextAsync(path));
    }
}
