using Gateway.Ipc.Backend;
using Gateway.Testing;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Options;

namespace Gateway.Ipc.Tests.Backend;

public sealed class DatagramBackendHostingTests : IDisposable
{
    private readonly TempSocketDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task AddDatagramBackend_GenericHostStartsAndStopsTheServer()
    {
        var path = _dir.Socket("di.sock");
        var builder = NewBuilder();
        builder.Services.AddDatagramBackend(o => o.SocketPath = path)
            .Map((request, _) => ValueTask.FromResult(BackendResponse.Text("di " + request.Target)));
        using var host = builder.Build();

        await host.StartAsync();
        var server = host.Services.GetRequiredService<DatagramBackendRegistry>().Get();
        using (var client = new TestClient(path))
        {
            client.SendRequest(1, target: "/x");
            Assert.Equal("di /x", (await client.ReceiveAsync()).BodyText);
        }

        Assert.Equal(path, server.SocketPath);
        Assert.Equal(1, server.Statistics.Executed);
        await host.StopAsync();

        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task AddDatagramBackend_SeveralNamedBackends_BoundFromConfiguration_WithClassHandlers()
    {
        var builder = NewBuilder();
        builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
        {
            ["Backends:A:SocketPath"] = _dir.Socket("a.sock"),
            ["Backends:A:MaxConcurrency"] = "7",
            ["Backends:B:SocketPath"] = _dir.Socket("b.sock"),
            ["Backends:B:ReplayCacheTtl"] = "00:00:30",
        });
        builder.Services.AddDatagramBackend("a", builder.Configuration.GetSection("Backends:A"), o => o.MaxConcurrency = 1).Map<NameHandler>();
        builder.Services.AddDatagramBackend("b", builder.Configuration.GetSection("Backends:B"), o => o.FileMode = "0600")
            .Map((_, _) => ValueTask.FromResult(BackendResponse.Text("b")));
        using var host = builder.Build();

        await host.StartAsync();
        var registry = host.Services.GetRequiredService<DatagramBackendRegistry>();
        using var a = new TestClient(_dir.Socket("a.sock"));
        using var b = new TestClient(_dir.Socket("b.sock"));
        a.SendRequest(1);
        b.SendRequest(1);

        Assert.Equal("handled by NameHandler", (await a.ReceiveAsync()).BodyText);
        Assert.Equal("b", (await b.ReceiveAsync()).BodyText);
        Assert.Equal(["a", "b"], registry.Names.Order());
        var options = host.Services.GetRequiredService<IOptionsMonitor<DatagramBackendOptions>>();
        Assert.Equal(7, options.Get("a").MaxConcurrency); // configuration overrides the defaults action
        Assert.Equal(TimeSpan.FromSeconds(30), options.Get("b").ReplayCacheTtl);
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(_dir.Socket("b.sock")));
        await host.StopAsync();
    }

    [Fact]
    public async Task InvalidOptions_FailStartup_NamingTheOptions()
    {
        var builder = NewBuilder();
        builder.Services.AddDatagramBackend("bad", o =>
        {
            o.SocketPath = "";
            o.FileMode = "rw-rw----";
            o.ReplySendTimeout = TimeSpan.Zero;
        }).Map((_, _) => default);
        using var host = builder.Build();

        var ex = await Assert.ThrowsAsync<OptionsValidationException>(() => host.StartAsync());

        Assert.Contains(nameof(DatagramBackendOptions.SocketPath), ex.Message, StringComparison.Ordinal);
        Assert.Contains(nameof(DatagramBackendOptions.FileMode), ex.Message, StringComparison.Ordinal);
        Assert.Contains(nameof(DatagramBackendOptions.ReplySendTimeout), ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Backend_WithoutHandler_FailsStartup_SayingToCallMap()
    {
        var builder = NewBuilder();
        builder.Services.AddDatagramBackend(o => o.SocketPath = _dir.Socket("nohandler.sock"));
        using var host = builder.Build();

        var ex = await Assert.ThrowsAsync<InvalidOperationException>(() => host.StartAsync());

        Assert.Contains("Map", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Options_Defaults_AreTheDocumentedOnes()
    {
        var options = new DatagramBackendOptions();

        Assert.Equal("0660", options.FileMode);
        Assert.Equal(1024, options.MaxConcurrency);
        Assert.Equal(10_000, options.ReplayCacheSize);
        Assert.Equal(TimeSpan.FromSeconds(120), options.ReplayCacheTtl);
        Assert.Equal(64L * 1024 * 1024, options.ReplayCacheMaxBytes);
        Assert.Equal(17 * 1024 * 1024, options.MaxMessageBytes); // a 16 MiB body plus 1 MiB of envelope
        Assert.Equal(64L * 1024 * 1024, options.MaxReassemblyBytes);
        Assert.Equal(TimeSpan.FromSeconds(10), options.ReassemblyTimeout);
        Assert.Equal(TimeSpan.FromSeconds(5), options.DrainTimeout);
        Assert.Equal(TimeSpan.FromSeconds(1), options.ReplySendTimeout);
    }

    [Fact]
    public void SameNameTwice_Throws()
    {
        var services = new ServiceCollection();
        services.AddDatagramBackend("x", o => o.SocketPath = "/tmp/x.sock");

        var ex = Assert.Throws<InvalidOperationException>(() => services.AddDatagramBackend("x", o => o.SocketPath = "/tmp/y.sock"));

        Assert.Contains("'x'", ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Registry_UnknownName_Throws()
    {
        var services = new ServiceCollection();
        services.AddDatagramBackend("x", o => o.SocketPath = "/tmp/x.sock");
        using var provider = services.BuildServiceProvider();

        Assert.Throws<KeyNotFoundException>(() => provider.GetRequiredService<DatagramBackendRegistry>().Get("y"));
    }

    private static HostApplicationBuilder NewBuilder() => Host.CreateEmptyApplicationBuilder(new HostApplicationBuilderSettings());

    private sealed class NameHandler : IDatagramHandler
    {
        public ValueTask<BackendResponse> HandleAsync(BackendRequest request, CancellationToken cancellationToken) =>
            ValueTask.FromResult(BackendResponse.Text("handled by " + nameof(NameHandler)));
    }
}
