using System.Text;
using Gateway.Ipc.Backend;
using Microsoft.AspNetCore.Mvc.Testing;

namespace UserTests;

// A route to a backend the test starts: the C# hosting helper (Gateway.Ipc), on a socket in a temp directory.
public class BackendRouteTests : IAsyncLifetime
{
    private readonly DirectoryInfo _directory = Directory.CreateTempSubdirectory("orders-test-");
    private DatagramBackendServer _backend = null!;
    private WebApplicationFactory<Program> _factory = null!;

    public async Task InitializeAsync()
    {
        var socket = Path.Combine(_directory.FullName, "orders.sock");
        _backend = new DatagramBackendServer(
            new DatagramBackendOptions { SocketPath = socket },
            (request, cancellationToken) => ValueTask.FromResult(
                BackendResponse.Text($"order {request.Target} ({Encoding.UTF8.GetString(request.Body.Span)})", status: 201)));
        await _backend.StartAsync();

        _factory = new WebApplicationFactory<Program>().WithWebHostBuilder(builder => builder
            .UseSetting("Gateway:Backends:orders:Instances:0", socket)
            .UseSetting("Gateway:Routes:orders:Path", "/orders/{**rest}")
            .UseSetting("Gateway:Routes:orders:Backend", "orders"));
    }

    [Fact]
    public async Task Post_reaches_the_backend()
    {
        var client = _factory.CreateClient();

        var response = await client.PostAsync("/orders/42", new StringContent("2 apples"));

        Assert.Equal(System.Net.HttpStatusCode.Created, response.StatusCode);
        Assert.Equal("order /orders/42 (2 apples)", await response.Content.ReadAsStringAsync());
    }

    public async Task DisposeAsync()
    {
        await _factory.DisposeAsync();
        await _backend.DisposeAsync();
        _directory.Delete(recursive: true);
    }
}
