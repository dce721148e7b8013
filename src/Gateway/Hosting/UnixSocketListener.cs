using System.Globalization;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using Gateway.Configuration;
using Gateway.Diagnostics;
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

    /// <summary>Called from Kestrel's configuration: prepares the path and adds the listeners.</summary>
    public void Configure(KestrelServerOptions kestrel)
    {
        var path = _options.Listen.UnixSocket;
        Prepare(path, _logger);
        kestrel.ListenUnixSocket(path);
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

        if (!PathEntryExists(path))
        {
            return;
        }

        if (Directory.Exists(path) || File.Exists(path) && !IsSocket(path))
        {
            throw new InvalidOperationException($"Cannot listen on {path} (Gateway:Listen:UnixSocket): a file or directory that is not a socket is in the way. Remove it or choose another path.");
        }

        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
        }
        catch (SocketException ex) when (ex.SocketErrorCode is SocketError.ConnectionRefused or SocketError.AddressNotAvailable)
        {
            File.Delete(path);
            Log.StaleSocketRemoved(logger, path);
            return;
        }
        catch (SocketException ex)
        {
            throw new InvalidOperationException($"Cannot listen on {path} (Gateway:Listen:UnixSocket): a file exists there and it is not a socket this gateway can take over ({ex.SocketErrorCode}). Remove it or choose another path.", ex);
        }

        throw new InvalidOperationException($"Cannot listen on {path} (Gateway:Listen:UnixSocket): another process is already serving on it. Stop it or choose another path.");
    }

    private static bool IsSocket(string path)
    {
        // open(2) on a socket file fails with ENXIO; on a regular file it succeeds.
        try
        {
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read);
            return false;
        }
        catch (IOException)
        {
            return true;
        }
        catch (UnauthorizedAccessException)
        {
            return true;
        }
    }

    private static bool PathEntryExists(string path)
    {
        try
        {
            _ = File.GetUnixFileMode(path);
            return true;
        }
        catch (FileNotFoundException)
        {
            return false;
        }
        catch (DirectoryNotFoundException)
        {
            return false;
        }
    }

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
