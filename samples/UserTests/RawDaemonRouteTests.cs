using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Mvc.Testing;

namespace UserTests;

// A route to a raw daemon (recvfrom / sendto, no envelope). Here a tiny one that upper-cases each datagram.
public class RawDaemonRouteTests : IAsyncLifetime
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("upper-test-");
    private readonly Socket _daemon = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly CancellationTokenSource _stop = new();
    private Task _loop = Task.CompletedTask;
    private WebApplicationFactory<Program> _factory = null!;

    public Task InitializeAsync()
    {
        var socket = Path.Combine(_directory.FullName, "upper.sock");
        _daemon.Bind(new UnixDomainSocketEndPoint(socket));
        _loop = Task.Run(async () =>
        {
            var buffer = new byte[65536];
            while (!_stop.IsCancellationRequested)
            {
                var received = await _daemon.ReceiveFromAsync(buffer, new UnixDomainSocketEndPoint(socket), _stop.Token);
                var reply = Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(buffer, 0, received.ReceivedBytes).ToUpperInvariant());
                await _daemon.SendToAsync(reply, received.RemoteEndPoint, _stop.Token);
            }
        });

        _factory = new WebApplicationFactory<Program>().WithWebHostBuilder(builder => builder
            .UseSetting("Gateway:Backends:upper:Mode", "Raw")
            .UseSetting("Gateway:Backends:upper:Instances:0", socket)
            .UseSetting("Gateway:Routes:upper:Path", "/upper")
            .UseSetting("Gateway:Routes:upper:Methods:0", "POST")
            .UseSetting("Gateway:Routes:upper:Backend", "upper")
            .UseSetting("Gateway:Routes:upper:ContentType", "text/plain"));
        return Task.CompletedTask;
    }

    [Fact]
    public async Task Post_is_answered_by_the_daemon()
    {
        var client = _factory.CreateClient();

        var response = await client.PostAsync("/upper", new StringContent("hello"));

        response.EnsureSuccessStatusCode();
        Assert.Equal("HELLO", await response.Content.ReadAsStringAsync());
    }

    public async Task DisposeAsync()
    {
        await _factory.DisposeAsync();
        await _stop.CancelAsync();
        await _loop.ContinueWith(_ => { }, TaskScheduler.Default); // ends with OperationCanceledException
        _daemon.Dispose();
        _directory.Delete(recursive: true);
    }
}
