using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Gateway.Configuration;
using Gateway.Diagnostics;
using Gateway.Ipc.Transport;
using Gateway.Security;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Options;

namespace Gateway.Hosting;

/// <summary>
/// Prepares the HTTP Unix socket before Kestrel binds it (directory, stale-file takeover, refusal of a live one)
/// and applies its file mode and group once the server has started.
/// </summary>
internal sealed partial class UnixSocketListener : IHostedLifecycleService
{
    private readonly GatewayOptions _options;
    private readonly ILogger<UnixSocketListener> _logger;
    private bool _bound;

    public UnixSocketListener(IOptions<GatewayOptions> options, ILogger<UnixSocketListener> logger)
    {
        _options = options.Value;
        _logger = logger;
    }

    /// <summary>
    /// Called from Kestrel's configuration: prepares the path and adds the listeners. The Unix listener records each
    /// connection's peer credentials (<see cref="IPeerCredentialsFeature"/>). Kestrel's header limits become a
    /// backstop above the gateway's own (<see cref="RequestHeaderLimitsMiddleware"/>), which answer with problem details.
    /// </summary>
    public void Configure(KestrelServerOptions kestrel)
    {
        var limits = _options.Limits;
        kestrel.Limits.MaxRequestHeaderCount = Math.Max(kestrel.Limits.MaxRequestHeaderCount, limits.MaxRequestHeaderCount * RequestLimitsOptions.KestrelBackstopFactor);
        kestrel.Limits.MaxRequestHeadersTotalSize = Math.Max(kestrel.Limits.MaxRequestHeadersTotalSize, limits.MaxRequestHeadersTotalSize * RequestLimitsOptions.KestrelBackstopFactor);

        var path = _options.Listen.UnixSocket;
        Prepare(path, _logger);
        kestrel.ListenUnixSocket(path, listen => listen.Use(PeerCredentialsConnectionMiddleware.Create(_logger)));
        _bound = true;
        if (_options.Listen.TcpPort is { } port)
        {
            kestrel.Listen(System.Net.IPAddress.Loopback, port);
        }
    }

    /// <summary>Creates the directory; removes a stale socket file; refuses a live one or a non-socket file.</summary>
    internal static void Prepare(string path, ILogger logger)
    {
        var directory = Path.GetDirectoryName(path);
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        SocketFileState state;
        try
        {
            state = UnixSocketFile.Probe(path, SocketType.Stream);
        }
        catch (SocketFileException ex)
        {
            throw new InvalidOperationException($"Cannot listen on {path} (Gateway:Listen:UnixSocket): {ex.Message} Remove it or choose another path.", ex);
        }

        switch (state)
        {
            case SocketFileState.Live:
                throw new InvalidOperationException($"Cannot listen on {path} (Gateway:Listen:UnixSocket): a socket at this path is in use (by this or another process). Stop whatever serves it or choose another path.");
            case SocketFileState.Stale:
                File.Delete(path);
                Log.StaleSocketRemoved(logger, path);
                break;
        }
    }

    private static bool PathEntryExists(string path) => Path.Exists(path);

    public Task StartedAsync(CancellationToken cancellationToken)
    {
        var listen = _options.Listen;
        if (!_bound || !PathEntryExists(listen.UnixSocket))
        {
            return Task.CompletedTask; // not on Kestrel (e.g. TestServer)
        }

        if (!GatewayOptionsValidator.TryParseMode(listen.SocketMode, out var mode))
        {
            throw new InvalidOperationException($"Gateway:Listen:SocketMode: '{listen.SocketMode}' is not an octal file mode.");
        }

        File.SetUnixFileMode(listen.UnixSocket, mode);
        var groupText = string.Empty;
        if (!string.IsNullOrWhiteSpace(listen.SocketGroup))
        {
            var gid = ResolveGroup(listen.SocketGroup);
            if (Chown(listen.UnixSocket, -1, gid) != 0)
            {
                throw new InvalidOperationException($"Cannot give {listen.UnixSocket} the group '{listen.SocketGroup}' (Gateway:Listen:SocketGroup): chown failed with errno {Marshal.GetLastPInvokeError()}.");
            }

            groupText = string.Create(CultureInfo.InvariantCulture, $", group {listen.SocketGroup}");
        }

        Log.ListeningUnix(_logger, listen.UnixSocket, listen.SocketMode, groupText);
        if (listen.TcpPort is { } port)
        {
            Log.ListeningTcp(_logger, port);
        }

        return Task.CompletedTask;
    }

    internal static int ResolveGroup(string group)
    {
        if (int.TryParse(group, NumberStyles.None, CultureInfo.InvariantCulture, out var gid))
        {
            return gid;
        }

        foreach (var line in File.ReadLines("/etc/group"))
        {
            var fields = line.Split(':');
            if (fields.Length >= 3 && fields[0] == group && int.TryParse(fields[2], NumberStyles.None, CultureInfo.InvariantCulture, out gid))
            {
                return gid;
            }
        }

        throw new InvalidOperationException($"Gateway:Listen:SocketGroup: group '{group}' does not exist.");
    }

    [LibraryImport("libc", EntryPoint = "chown", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Chown(string path, int owner, int group);

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
