using Microsoft.Extensions.Hosting;

namespace Gateway.Ipc.Backend;

/// <summary>Starts and stops one named <see cref="DatagramBackendServer"/> with the host.</summary>
internal sealed class DatagramBackendHostedService(DatagramBackendRegistry registry, string name) : IHostedService
{
    public Task StartAsync(CancellationToken cancellationToken) => registry.Get(name).StartAsync(cancellationToken);

    public Task StopAsync(CancellationToken cancellationToken) => registry.Get(name).StopAsync(cancellationToken);
}
