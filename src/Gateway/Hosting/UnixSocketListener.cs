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
    private string? _activated;

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
        if (Systemd.FindActivatedSocket(path) is { } activated)
        {
            // Socket activation: systemd owns the socket file, its mode and group; never unlink or re-create it.
            _activated = activated.Path;
            kestrel.ListenHandle((ulong)activated.Fd, listen => listen.Use(PeerCredentialsConnectionMiddleware.Create(_logger)));
        }
        else
        {
            Prepare(path, _logger);
            if (!string.IsNullOrWhiteSpace(_options.Listen.SocketGroup))
            {
                EnsureMayGiveGroup(_options.Listen.SocketGroup);
            }

            kestrel.ListenUnixSocket(path, listen => listen.Use(PeerCredentialsConnectionMiddleware.Create(_logger)));
            _bound = true;
        }

        if (_options.DemoBackend.Enabled == true)
        {
            // Checked here, with the HTTP socket, so that a failure is one line naming its key: the demo backend's own
            // start comes later, where the host would first log the exception with its stack trace.
            PrepareDemo(DemoDefaults.SocketPath(_options));
        }

        if (_options.Listen.TcpPort is { } port)
        {
            EnsureTcpPortFree(port);
            kestrel.Listen(System.Net.IPAddress.Loopback, port);
        }
    }

    /// <summary>Creates the directory; removes a stale socket file; refuses a live one or a non-socket file.</summary>
    internal static void Prepare(string path, ILogger logger)
    {
        var directory = Path.GetDirectoryName(Path.GetFullPath(path));
        if (!string.IsNullOrEmpty(directory))
        {
            SocketDirectory.Ensure(directory, $"{GatewayOptions.SectionName}:Listen:UnixSocket");
        }

        SocketFileState state;
        try
        {
            state = UnixSocketFile.Probe(path, SocketType.Stream);
        }
        catch (SocketFileException ex)
        {
            // The exception's message carries its own advice.
            throw new StartupException($"Cannot listen on {path} (Gateway:Listen:UnixSocket): {ex.Message}", ex);
        }

        switch (state)
        {
            case SocketFileState.Live:
                throw new StartupException($"Cannot listen on {path} (Gateway:Listen:UnixSocket): a socket at this path is in use (by this or another process). Stop whatever serves it or choose another path.");
            case SocketFileState.Stale:
                File.Delete(path);
                Log.StaleSocketRemoved(logger, path);
                break;
        }
    }

    /// <summary>
    /// A process other than root may give its files only a group it belongs to: checked here, before the socket exists,
    /// so that the failure is one line naming the key rather than the host's stack trace once the server has started.
    /// </summary>
    private static unsafe void EnsureMayGiveGroup(string group)
    {
        if (SocketDirectory.EffectiveUid() == 0)
        {
            return;
        }

        var gid = (uint)ResolveGroup(group);
        if (gid == GetEffectiveGid())
        {
            return;
        }

        var groups = new uint[Math.Max(GetGroups(0, null), 0)];
        fixed (uint* list = groups)
        {
            var count = GetGroups(groups.Length, list);
            if (count >= 0 && groups.AsSpan(0, count).Contains(gid))
            {
                return;
            }
        }

        throw new StartupException($"{GatewayOptions.SectionName}:Listen:SocketGroup: this process (uid {SocketDirectory.EffectiveUid()}) is not a member of the group '{group}' (gid {gid}), so it cannot give the socket that group. Add the user to the group, or run the gateway with it as a supplementary group.");
    }

    [LibraryImport("libc", EntryPoint = "getegid")]
    private static partial uint GetEffectiveGid();

    [LibraryImport("libc", EntryPoint = "getgroups")]
    private static unsafe partial int GetGroups(int size, uint* list);

    /// <summary>Checks the demo backend's socket path: its directory, and no live process or non-socket file on it.</summary>
    private static void PrepareDemo(string path)
    {
        const string Key = $"{GatewayOptions.SectionName}:DemoBackend:SocketPath";
        path = Path.GetFullPath(path);
        if (Path.GetDirectoryName(path) is { Length: > 0 } directory)
        {
            SocketDirectory.Ensure(directory, Key);
        }

        SocketFileState state;
        try
        {
            state = UnixSocketFile.Probe(path, SocketType.Dgram);
        }
        catch (SocketFileException ex)
        {
            throw new StartupException($"Cannot start the demo backend on {path} ({Key}): {ex.Message}", ex);
        }

        if (state == SocketFileState.Live)
        {
            throw new StartupException($"Cannot start the demo backend on {path} ({Key}, by default beside Gateway:Listen:UnixSocket): another process is serving on it. Stop it, choose another path, or set Gateway:DemoBackend:Enabled=false.");
        }
    }

    /// <summary>
    /// Binds the loopback port once, as Kestrel will, so that a port in use is reported naming its key here, while
    /// the server is configured, rather than as the host's start-up failure with a stack trace.
    /// </summary>
    internal static void EnsureTcpPortFree(int port)
    {
        using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        try
        {
            probe.Bind(new System.Net.IPEndPoint(System.Net.IPAddress.Loopback, port));
        }
        catch (SocketException ex)
        {
            throw new StartupException($"Cannot listen on 127.0.0.1:{port} ({GatewayOptions.SectionName}:Listen:TcpPort): {ex.Message}. Stop the process using the port or choose another port.", ex);
        }
    }

    private static bool PathEntryExists(string path) => Path.Exists(path);

    public Task StartedAsync(CancellationToken cancellationToken)
    {
        var listen = _options.Listen;
        if (_activated is not null)
        {
            Log.ListeningActivated(_logger, _activated);
        }

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
                throw new InvalidOperationException($"Cannot give {listen.UnixSocket} the group '{listen.SocketGroup}' (Gateway:Listen:SocketGroup): chown failed: {Marshal.GetPInvokeErrorMessage(Marshal.GetLastPInvokeError())}.");
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

    internal static int ResolveGroup(string group) =>
        Security.UnixIds.TryResolveGroup(group, out var gid)
            ? (int)gid
            : throw new InvalidOperationException($"Gateway:Listen:SocketGroup: group '{group}' does not exist.");

    [LibraryImport("libc", EntryPoint = "chown", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Chown(string path, int owner, int group);

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StartingAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppedAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public Task StoppingAsync(CancellationToken cancellationToken) => Task.CompletedTask;
}
