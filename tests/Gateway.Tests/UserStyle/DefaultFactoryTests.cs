using System.Net.Sockets;
using Gateway.Configuration;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.AspNetCore.Mvc.Testing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Options;

namespace Gateway.Tests.UserStyle;

/// <summary>
/// <c>new WebApplicationFactory&lt;Program&gt;()</c> with the gateway's defaults, as a user writes it (issue 19.5): the demo
/// backend's socket must not be the shared default path, so factories run in parallel and beside a running gateway.
/// </summary>
public class DefaultFactoryTests
{
    [Fact]
    public async Task DefaultFactories_RunSideBySide_EachWithAPrivateDemoSocketRemovedOnDispose()
    {
        var first = new WebApplicationFactory<Program>();
        var second = new WebApplicationFactory<Program>();
        string firstSocket, secondSocket;
        try
        {
            var bodies = await Task.WhenAll(
                first.CreateClient().GetStringAsync("/echo/one"),
                second.CreateClient().GetStringAsync("/echo/two"));
            Assert.Equal(["GET /echo/one\n", "GET /echo/two\n"], bodies);

            firstSocket = DemoSocket(first);
            secondSocket = DemoSocket(second);
            Assert.NotEqual(firstSocket, secondSocket);
            foreach (var socket in new[] { firstSocket, secondSocket })
            {
                Assert.Equal("demo-echo.sock", Path.GetFileName(socket));
                Assert.NotEqual(Path.GetDirectoryName(ListenOptions.DefaultSocketPath), Path.GetDirectoryName(socket));
                Assert.Equal(Ipc.Transport.SocketFileState.Live, Ipc.Transport.UnixSocketFile.Probe(socket, SocketType.Dgram));
                Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(Path.GetDirectoryName(socket)!));
            }
        }
        finally
        {
            await first.DisposeAsync();
            await second.DisposeAsync();
        }

        // The host is disposed by Program.Main's own thread once app.Run returns, which can finish after
        // WebApplicationFactory.DisposeAsync has returned: wait (bounded) for the directories to go.
        foreach (var directory in new[] { Path.GetDirectoryName(firstSocket)!, Path.GetDirectoryName(secondSocket)! })
        {
            await Eventually.UntilAsync(() => !Directory.Exists(directory), TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(10));
            Assert.False(Directory.Exists(directory), $"{directory} is left with [{string.Join(", ", Directory.Exists(directory) ? Directory.GetFileSystemEntries(directory) : [])}]");
        }
    }

    [Fact]
    public async Task DefaultFactory_BesideARunningGatewaysDemoSocket_StillServesTheEchoRoute()
    {
        // What a gateway started with `dotnet run` holds: a live demo socket beside its HTTP socket. Here in a temp
        // directory standing for /tmp/gateway, so that the test does not depend on what runs on this machine.
        using var dir = new TempSocketDirectory();
        using var running = Ipc.Transport.UnixSocketFile.Bind(dir.Socket("demo-echo.sock"), SocketType.Dgram);
        await using var factory = new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.UseSetting("Gateway:Listen:UnixSocket", dir.Socket("gateway.sock")));

        Assert.Equal("GET /echo/x\n", await factory.CreateClient().GetStringAsync("/echo/x"));
        Assert.NotEqual(running.Path, DemoSocket(factory));
    }

    [Fact]
    public async Task ConfiguredDemoSocket_HeldByALiveSocket_FailsNamingThePathAndTheKey()
    {
        using var dir = new TempSocketDirectory();
        using var held = Ipc.Transport.UnixSocketFile.Bind(dir.Socket("demo.sock"), SocketType.Dgram);
        await using var factory = new WebApplicationFactory<Program>().WithWebHostBuilder(b => b.UseSetting("Gateway:DemoBackend:SocketPath", held.Path));

        var ex = Assert.ThrowsAny<InvalidOperationException>(() => factory.CreateClient());

        Assert.Contains($"Cannot start the demo backend on {held.Path} (Gateway:DemoBackend:SocketPath)", ex.Message, StringComparison.Ordinal);
        Assert.Contains("is in use (by this or another process)", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task OnKestrel_TheDemoSocketStaysBesideTheHttpSocket()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, new Dictionary<string, string?> { ["Gateway:DemoBackend:Enabled"] = "true" }).StartKestrel();

        Assert.Equal(dir.Socket("demo-echo.sock"), DemoSocket(factory));
        Assert.Equal("GET /echo/k\n", await factory.CreateGatewayClient().GetStringAsync("/echo/k"));
    }

    private static string DemoSocket(WebApplicationFactory<Program> factory) =>
        Assert.Single(factory.Services.GetRequiredService<IOptions<GatewayOptions>>().Value.Backends["echo"].Instances);
}
