using System.Diagnostics;
using Gateway.Testing;

namespace Gateway.Conformance.Tests;

/// <summary>The kit as a command (Gateway.Conformance.dll, built next to the tests): exit codes and output.</summary>
public sealed class KitCommandLineTests
{
    [Fact]
    public async Task Kit_WithoutBackendArgument_ExitsWith2_AndPrintsUsage()
    {
        var (exitCode, _, stderr) = await RunKitAsync([]);

        Assert.Equal(2, exitCode);
        Assert.Contains("--backend is required", stderr, StringComparison.Ordinal);
        Assert.Contains("vector-8.1", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Kit_AgainstAMissingSocket_ExitsWith2()
    {
        using var dir = new TempSocketDirectory();

        var (exitCode, _, stderr) = await RunKitAsync(["--backend", dir.Socket("nobody.sock"), "--timeout", "0.5"]);

        Assert.Equal(2, exitCode);
        Assert.Contains("does not answer PING", stderr, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Kit_WhenACheckFails_ExitsWith1_AndPrintsTheTable()
    {
        using var dir = new TempSocketDirectory();
        await using var fake = FakeBackend.PingOnly(dir.Socket("fake.sock"));

        // The timeout bounds the PING's wait too: 0.5 s failed it about once in six runs (a fresh kit process and the
        // fake's first datagram both JIT-compile their paths), so the failing check waits 3 s instead.
        var (exitCode, stdout, _) = await RunKitAsync(["--backend", fake.Path, "--timeout", "3", "--check", "ping", "--check", "vector-8.1"]);

        Assert.Equal(1, exitCode);
        Assert.Contains("| vector-8.1 | FAIL |", stdout, StringComparison.Ordinal);
        Assert.Contains("| ping | PASS |", stdout, StringComparison.Ordinal);
        Assert.Contains("1 passed, 1 failed, 0 skipped", stdout, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Kit_WhenEveryCheckPasses_ExitsWith0()
    {
        using var dir = new TempSocketDirectory();
        await using var fake = FakeBackend.PingOnly(dir.Socket("fake.sock"));

        var (exitCode, stdout, _) = await RunKitAsync(["--backend", fake.Path, "--check", "ping", "--check", "malformed-garbage"]);

        Assert.Equal(0, exitCode);
        Assert.Contains("2 passed, 0 failed, 0 skipped", stdout, StringComparison.Ordinal);
    }

    private static async Task<(int ExitCode, string Stdout, string Stderr)> RunKitAsync(string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        start.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, "Gateway.Conformance.dll"));
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(60));
        await process.WaitForExitAsync(cts.Token);
        return (process.ExitCode, await stdout, await stderr);
    }
}
