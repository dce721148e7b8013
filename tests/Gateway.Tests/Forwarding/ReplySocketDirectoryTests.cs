using System.Net;
using Gateway.Ipc.Backend;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// Gateway:ReplySocketDirectory: reply sockets bound as files (for backends in other network namespaces, e.g.
/// other containers sharing only the socket volume, where the default abstract names do not exist).
/// </summary>
public class ReplySocketDirectoryTests
{
    private const UnixFileMode OwnerAndGroupReadWrite = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite;

    [Fact]
    public async Task EnvelopeAndRawReplies_ComeBackToSocketFilesInTheDirectory()
    {
        using var dir = new TempSocketDirectory();
        var replies = Directory.CreateDirectory(dir.Socket("replies")).FullName;
        await using var envelope = await TestBackend.StartAsync(dir.Socket("env.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("from envelope")));
        await using var raw = await RawServers.StartPythonAsync(dir.Socket("raw.sock"));
        var factory = new GatewayFactory(dir, new Dictionary<string, string?>
        {
            ["Gateway:ReplySocketDirectory"] = replies,
            ["Gateway:Listen:SocketMode"] = "0660",
            ["Gateway:Backends:env:Instances:0"] = envelope.SocketPath,
            ["Gateway:Backends:raw:Instances:0"] = dir.Socket("raw.sock"),
            ["Gateway:Backends:raw:Mode"] = "Raw",
            ["Gateway:Routes:env:Path"] = "/env",
            ["Gateway:Routes:env:Backend"] = "env",
            ["Gateway:Routes:raw:Path"] = "/raw",
            ["Gateway:Routes:raw:Backend"] = "raw",
        });
        await using (factory)
        {
            using var client = factory.CreateClient();

            using var fromEnvelope = await client.GetAsync("/env");
            using var fromRaw = await client.PostAsync("/raw", new StringContent("via a file"));

            Assert.Equal(HttpStatusCode.OK, fromEnvelope.StatusCode);
            Assert.Equal("from envelope", await fromEnvelope.Content.ReadAsStringAsync());
            Assert.Equal(HttpStatusCode.OK, fromRaw.StatusCode);
            Assert.Equal("VIA A FILE", await fromRaw.Content.ReadAsStringAsync());
            var files = Directory.GetFiles(replies).Select(Path.GetFileName).ToList();
            Assert.Single(files, f => f!.StartsWith("gw-reply-", StringComparison.Ordinal));
            Assert.Contains(files, f => f!.StartsWith("gw-raw-", StringComparison.Ordinal));
            Assert.All(Directory.GetFiles(replies), f => Assert.Equal(OwnerAndGroupReadWrite, File.GetUnixFileMode(f)));
        }
    }

    /// <summary>
    /// Shutdown of the real process (SIGTERM) removes every reply socket file. A process, not the factory: disposing a
    /// WebApplicationFactory did not always dispose the app's singletons before returning under a parallel test run.
    /// </summary>
    [Fact]
    public async Task GatewayProcess_Sigterm_RemovesItsReplySocketFiles()
    {
        using var dir = new TempSocketDirectory();
        var replies = Directory.CreateDirectory(dir.Socket("replies")).FullName;
        await using var envelope = await TestBackend.StartAsync(dir.Socket("env.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("from envelope")));
        await using var raw = await RawServers.StartPythonAsync(dir.Socket("raw.sock"));
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartHealthyAsync(
            socket,
            "--Gateway:DemoBackend:Enabled=false",
            "--Gateway:ReplySocketDirectory=" + replies,
            "--Gateway:Backends:env:Instances:0=" + envelope.SocketPath,
            "--Gateway:Backends:raw:Instances:0=" + dir.Socket("raw.sock"),
            "--Gateway:Backends:raw:Mode=Raw",
            "--Gateway:Routes:env:Path=/env",
            "--Gateway:Routes:env:Backend=env",
            "--Gateway:Routes:raw:Path=/raw",
            "--Gateway:Routes:raw:Backend=raw");
        using (var client = UnixHttp.CreateClient(socket))
        {
            using var fromEnvelope = await client.GetAsync("/env");
            using var fromRaw = await client.PostAsync("/raw", new StringContent("via a file"));
            Assert.Equal(HttpStatusCode.OK, fromEnvelope.StatusCode);
            Assert.Equal(HttpStatusCode.OK, fromRaw.StatusCode);
            Assert.NotEmpty(Directory.GetFiles(replies));
        }

        await gateway.SignalAsyncNoWait(15); // SIGTERM
        Assert.Equal(0, await gateway.WaitForExitAsync());

        Assert.Empty(Directory.GetFiles(replies));
    }

    [Fact]
    public async Task MissingDirectory_IsCreatedPrivate_0710ForSocketMode0660_0700For0600()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("env.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("ok")));
        foreach (var (socketMode, expected) in new[] { ("0660", "0710"), ("0600", "0700") })
        {
            var replies = dir.Socket("r" + socketMode);
            var factory = new GatewayFactory(dir, new Dictionary<string, string?>
            {
                ["Gateway:Listen:UnixSocket"] = dir.Socket("gw" + socketMode + ".sock"),
                ["Gateway:ReplySocketDirectory"] = replies,
                ["Gateway:Listen:SocketMode"] = socketMode,
                ["Gateway:Backends:env:Instances:0"] = backend.SocketPath,
                ["Gateway:Routes:env:Path"] = "/env",
                ["Gateway:Routes:env:Backend"] = "env",
            });
            await using (factory)
            {
                using var client = factory.CreateClient();
                using var response = await client.GetAsync("/env");

                Assert.Equal(HttpStatusCode.OK, response.StatusCode);
                Assert.Equal(expected, Convert.ToString((int)File.GetUnixFileMode(replies), 8).PadLeft(4, '0'));
            }
        }
    }

    [Fact]
    public async Task ExistingDirectory_KeepsItsMode()
    {
        using var dir = new TempSocketDirectory();
        var shared = Directory.CreateDirectory(dir.Socket("shared")).FullName;
        const UnixFileMode Shared = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute | UnixFileMode.GroupRead | UnixFileMode.GroupWrite | UnixFileMode.GroupExecute | UnixFileMode.SetGroup;
        File.SetUnixFileMode(shared, Shared);
        await using var backend = await TestBackend.StartAsync(dir.Socket("env.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("ok")));
        await using var factory = new GatewayFactory(dir, new Dictionary<string, string?>
        {
            ["Gateway:ReplySocketDirectory"] = shared,
            ["Gateway:Backends:env:Instances:0"] = backend.SocketPath,
            ["Gateway:Routes:env:Path"] = "/env",
            ["Gateway:Routes:env:Backend"] = "env",
        });
        using var client = factory.CreateClient();

        using var response = await client.GetAsync("/env");

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(Shared, File.GetUnixFileMode(shared));
    }
}
