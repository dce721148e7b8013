using System.Globalization;
using Gateway.Configuration;
using Gateway.Diagnostics;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Transport;
using Microsoft.Extensions.Options;

namespace Gateway.Demo;

/// <summary>
/// The zero-configuration demo: when enabled (by default when no backend is configured) an in-process echo
/// backend listens on a datagram socket beside the HTTP socket, behind the route <c>/echo/{**rest}</c>.
/// It is an ordinary <see cref="DatagramBackendServer"/>: requests still cross a real datagram socket.
/// </summary>
internal sealed class DemoBackendService(IOptions<GatewayOptions> options, TimeProvider timeProvider, ILoggerFactory loggerFactory) : IHostedService, IAsyncDisposable
{
    private DatagramBackendServer? _server;

    public async Task StartAsync(CancellationToken cancellationToken)
    {
        var gateway = options.Value;
        if (!DemoDefaults.IsEnabled(gateway))
        {
            return;
        }

        var path = DemoDefaults.SocketPath(gateway);
        var echo = new DemoEchoHandler(timeProvider);
        var server = new DatagramBackendServer(new DatagramBackendOptions { SocketPath = path }, echo.HandleAsync, timeProvider, loggerFactory);
        try
        {
            await server.StartAsync(cancellationToken);
        }
        catch (SocketFileException ex)
        {
            await server.DisposeAsync();
            var key = gateway.DemoBackend.SocketPath is null
                ? $"{GatewayOptions.SectionName}:DemoBackend:SocketPath, by default beside {GatewayOptions.SectionName}:Listen:UnixSocket"
                : $"{GatewayOptions.SectionName}:DemoBackend:SocketPath";
            throw new InvalidOperationException($"Cannot start the demo backend on {path} ({key}): {ex.Message}", ex);
        }

        _server = server;
        Log.DemoBackendStarted(loggerFactory.CreateLogger<DemoBackendService>(), path);
    }

    public async Task StopAsync(CancellationToken cancellationToken)
    {
        if (_server is not null)
        {
            await _server.StopAsync(cancellationToken);
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }
    }
}

/// <summary>
/// The echo behaviour shared by every echo backend of the project: a non-empty body is echoed with its content
/// type; an empty body yields <c>"{METHOD} {target}\n"</c>; <c>x-echo-delay-ms</c> delays the reply and
/// <c>x-echo-status</c> chooses its status.
/// </summary>
internal sealed class DemoEchoHandler(TimeProvider timeProvider)
{
    public async ValueTask<BackendResponse> HandleAsync(BackendRequest request, CancellationToken cancellationToken)
    {
        var status = ReadInt(request, "x-echo-status", 200, 599) ?? 200;
        if (ReadInt(request, "x-echo-delay-ms", 0, 60_000) is > 0 and var delay)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(delay), timeProvider, cancellationToken);
        }

        if (status is 204 or 205 or 304)
        {
            // These statuses have no content (docs/protocol.md section 4.2, "Empty bodies").
            return BackendResponse.Bytes(ReadOnlyMemory<byte>.Empty, "application/octet-stream", status);
        }

        return request.Body.IsEmpty
            ? BackendResponse.Text($"{request.Method} {request.Target}\n", status)
            : BackendResponse.Bytes(request.Body, request.GetHeader("content-type") ?? "application/octet-stream", status);
    }

    private static int? ReadInt(BackendRequest request, string header, int min, int max) =>
        int.TryParse(request.GetHeader(header), NumberStyles.None, CultureInfo.InvariantCulture, out var value) && value >= min && value <= max
            ? value
            : null;
}
