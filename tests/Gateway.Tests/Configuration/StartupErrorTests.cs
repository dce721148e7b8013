using System.Net;
using System.Net.Sockets;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Configuration;

/// <summary>
/// Start-up failures of the real process: exit code 2 and one line on stderr naming the key and the path or port,
/// and no stack trace before or after it.
/// </summary>
public class StartupErrorTests
{
    [Fact]
    public async Task SocketDirectoryUnderARegularFile_NamesTheKeyAndTheDirectory()
    {
        using var dir = new TempSocketDirectory();
        var file = dir.Socket("plain-file");
        await File.WriteAllTextAsync(file, "not a directory");
        var socket = Path.Combine(file, "sub", "gw.sock");

        var output = await ExpectStartupFailureAsync(GatewayProcess.Start("--Gateway:Listen:UnixSocket=" + socket));

        Assert.Contains($"Gateway: cannot start: Gateway:Listen:UnixSocket: cannot create the directory {Path.Combine(file, "sub")} (at {file}): it exists and is not a directory.", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SocketDirectoryNotWritable_NamesTheKeyTheDirectoryAndTheReason()
    {
        using var dir = new TempSocketDirectory();
        var locked = dir.Socket("locked");
        Directory.CreateDirectory(locked);
        var socket = Path.Combine(locked, "gw.sock");
        ExternalProcess gateway;
        if (Environment.IsPrivilegedProcess)
        {
            // root may write anywhere: run the gateway as nobody, in a directory only root may write.
            File.SetUnixFileMode(dir.Path, (UnixFileMode)0b111_101_101);
            File.SetUnixFileMode(locked, (UnixFileMode)0b111_101_101);
            gateway = StartAsNobody("--Gateway:Listen:UnixSocket=" + socket);
        }
        else
        {
            File.SetUnixFileMode(locked, (UnixFileMode)0b101_101_101);
            gateway = GatewayProcess.Start("--Gateway:Listen:UnixSocket=" + socket);
        }

        var output = await ExpectStartupFailureAsync(gateway);

        Assert.Contains($"Gateway: cannot start: Gateway:Listen:UnixSocket: cannot create sockets in the directory {locked}: Permission denied", output, StringComparison.Ordinal);
        File.SetUnixFileMode(locked, (UnixFileMode)0b111_111_101); // let the cleanup remove it
    }

    [Fact]
    public async Task DemoBackendSocketDirectoryUnderARegularFile_NamesItsOwnKey()
    {
        using var dir = new TempSocketDirectory();
        var file = dir.Socket("plain-file");
        await File.WriteAllTextAsync(file, "not a directory");

        var output = await ExpectStartupFailureAsync(GatewayProcess.Start("--Gateway:Listen:UnixSocket=" + dir.Socket("gw.sock"), "--Gateway:DemoBackend:SocketPath=" + Path.Combine(file, "echo.sock")));

        Assert.Contains($"Gateway:DemoBackend:SocketPath: cannot create the directory {file}: it exists and is not a directory.", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SecondGatewayInTheSameDirectory_DemoBackendSocketInUse_NamesItsKey_WithoutTheHostsStackTrace()
    {
        using var dir = new TempSocketDirectory();
        await using var first = await GatewayProcess.StartHealthyAsync(dir.Socket("first.sock"));

        var output = await ExpectStartupFailureAsync(GatewayProcess.Start("--Gateway:Listen:UnixSocket=" + dir.Socket("second.sock")));

        Assert.Contains($"Cannot start the demo backend on {dir.Socket("demo-echo.sock")} (Gateway:DemoBackend:SocketPath, by default beside Gateway:Listen:UnixSocket): another process is serving on it.", output, StringComparison.Ordinal);
        Assert.DoesNotContain("Hosting failed to start", output, StringComparison.Ordinal);
        Assert.False(first.HasExited);
    }

    [Fact]
    public async Task SocketGroupTheProcessIsNotIn_NamesTheKeyBeforeTheServerStarts()
    {
        using var dir = new TempSocketDirectory();
        var mine = Directory.CreateDirectory(dir.Socket("nobody")).FullName;
        File.SetUnixFileMode(dir.Path, (UnixFileMode)0b111_101_101);
        await using (var chown = ExternalProcess.Start("chown", "65534:65534", mine))
        {
            Assert.Equal(0, await chown.WaitForExitAsync());
        }

        // nobody, without supplementary groups, may not give its files the group daemon (gid 1).
        var output = await ExpectStartupFailureAsync(StartAsNobody("--Gateway:Listen:UnixSocket=" + Path.Combine(mine, "gw.sock"), "--Gateway:Listen:SocketGroup=daemon"));

        Assert.Contains("Gateway: cannot start: Gateway:Listen:SocketGroup: this process (uid 65534) is not a member of the group 'daemon' (gid 1)", output, StringComparison.Ordinal);
        Assert.DoesNotContain("Hosting failed to start", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task TcpPortInUse_NamesTheKeyAndThePort()
    {
        using var dir = new TempSocketDirectory();
        using var occupant = new TcpListener(IPAddress.Loopback, 0);
        occupant.Start();
        var port = ((IPEndPoint)occupant.LocalEndpoint).Port;

        var output = await ExpectStartupFailureAsync(GatewayProcess.Start("--Gateway:Listen:UnixSocket=" + dir.Socket("gw.sock"), "--Gateway:Listen:TcpPort=" + port));

        Assert.Contains($"Gateway: cannot start: Cannot listen on 127.0.0.1:{port} (Gateway:Listen:TcpPort): Address already in use.", output, StringComparison.Ordinal);
        Assert.DoesNotContain("Hosting failed to start", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RegularFileAtTheSocketPath_IsRefused_WithItsAdviceOnce()
    {
        using var dir = new TempSocketDirectory();
        var file = dir.Socket("gw.sock");
        await File.WriteAllTextAsync(file, "keep me");

        var output = await ExpectStartupFailureAsync(GatewayProcess.Start("--Gateway:Listen:UnixSocket=" + file));

        Assert.Contains($"Cannot listen on {file} (Gateway:Listen:UnixSocket): The path '{file}' exists and is not a socket", output, StringComparison.Ordinal);
        Assert.Equal(2, output.Split("Remove it or choose another path.").Length); // the advice, once
    }

    /// <summary>Waits for the exit; asserts code 2, a single "cannot start" line and no stack trace; returns the output.</summary>
    private static async Task<string> ExpectStartupFailureAsync(ExternalProcess gateway)
    {
        await using (gateway)
        {
            var exitCode = await gateway.WaitForExitAsync(TimeSpan.FromSeconds(120));
            var output = gateway.Output;
            Assert.True(exitCode == 2, $"exit code {exitCode}:\n{output}");
            Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
            Assert.DoesNotContain("Exception", output, StringComparison.Ordinal);
            Assert.Single(output.Split('\n'), line => line.StartsWith("Gateway: cannot start:", StringComparison.Ordinal));
            return output;
        }
    }

    /// <summary>
    /// A world-readable copy of the gateway's build output, once per test run: the checkout may sit in a directory only
    /// root can enter (CI clones into <c>mktemp -d</c>, mode 0700), where nobody could not load Gateway.dll.
    /// </summary>
    private static readonly Lazy<string> NobodyReadableDll = new(() =>
    {
        var target = Path.Combine(Path.GetTempPath(), $"gw-nobody-{Environment.ProcessId}");
        var source = AppContext.BaseDirectory;
        foreach (var directory in Directory.GetDirectories(source, "*", SearchOption.AllDirectories).Prepend(source))
        {
            Directory.CreateDirectory(Path.Combine(target, Path.GetRelativePath(source, directory)));
        }

        foreach (var file in Directory.GetFiles(source, "*", SearchOption.AllDirectories))
        {
            File.Copy(file, Path.Combine(target, Path.GetRelativePath(source, file)), overwrite: true);
        }

        foreach (var entry in Directory.GetFileSystemEntries(target, "*", SearchOption.AllDirectories).Prepend(target))
        {
            File.SetUnixFileMode(entry, Directory.Exists(entry) ? (UnixFileMode)0b111_101_101 : (UnixFileMode)0b110_100_100);
        }

        AppDomain.CurrentDomain.ProcessExit += (_, _) =>
        {
            try
            {
                Directory.Delete(target, recursive: true);
            }
            catch (IOException)
            {
            }
        };
        return Path.Combine(target, "Gateway.dll");
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>The gateway as nobody (uid 65534, no groups), from <see cref="NobodyReadableDll"/>.</summary>
    private static ExternalProcess StartAsNobody(params string[] arguments) => ExternalProcess.Start(
        "setpriv",
        new Dictionary<string, string> { ["HOME"] = "/tmp", ["DOTNET_CLI_HOME"] = "/tmp" },
        ["--reuid=65534", "--regid=65534", "--clear-groups", "dotnet", NobodyReadableDll.Value, .. arguments]);
}
