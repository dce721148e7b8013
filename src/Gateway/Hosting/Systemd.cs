using System.Globalization;
using System.Net.Sockets;
using Microsoft.Extensions.Hosting.Systemd;

namespace Gateway.Hosting;

/// <summary>
/// systemd integration (docs/systemd.md). Readiness and stopping come from Microsoft.Extensions.Hosting.Systemd
/// (<c>UseSystemd</c>: READY=1 once the host has started, that is once the routes are loaded and Kestrel accepts;
/// STOPPING=1 when it drains); this adds the watchdog ping and socket activation.
/// </summary>
internal static class Systemd
{
    /// <summary>The <c>FileDescriptorName=</c> the shipped gateway.socket gives its socket.</summary>
    public const string FileDescriptorName = "gateway";

    /// <summary>
    /// The listening socket systemd passed for the gateway (<c>LISTEN_PID</c>, <c>LISTEN_FDS</c>, <c>LISTEN_FDNAMES</c>,
    /// sd_listen_fds(3)), or null without socket activation. Chosen by name (<see cref="FileDescriptorName"/>), else by
    /// path (<c>Gateway:Listen:UnixSocket</c>), else the only one passed.
    /// </summary>
    public static (int Fd, string Path)? FindActivatedSocket(string configuredPath)
    {
        if (!int.TryParse(Environment.GetEnvironmentVariable("LISTEN_PID"), NumberStyles.None, CultureInfo.InvariantCulture, out var pid)
            || pid != Environment.ProcessId
            || !int.TryParse(Environment.GetEnvironmentVariable("LISTEN_FDS"), NumberStyles.None, CultureInfo.InvariantCulture, out var count)
            || count <= 0)
        {
            return null;
        }

        var names = (Environment.GetEnvironmentVariable("LISTEN_FDNAMES") ?? "").Split(':');
        var sockets = new List<(int Fd, string Name, string Path)>();
        for (var i = 0; i < count; i++)
        {
            const int first = 3; // SD_LISTEN_FDS_START
            sockets.Add((first + i, i < names.Length ? names[i] : "", LocalPath(first + i)));
        }

        var unix = sockets.Where(s => s.Path.Length > 0).ToList();
        var chosen = unix.FirstOrDefault(s => s.Name == FileDescriptorName);
        if (chosen.Path is null)
        {
            chosen = unix.FirstOrDefault(s => s.Path == configuredPath);
        }

        if (chosen.Path is null && unix.Count == 1)
        {
            chosen = unix[0];
        }

        if (chosen.Path is null)
        {
            throw new InvalidOperationException(string.Create(
                CultureInfo.InvariantCulture,
                $"systemd passed {count} socket(s) ({string.Join(", ", sockets.Select(s => $"fd {s.Fd} '{s.Name}' {(s.Path.Length > 0 ? s.Path : "not a Unix stream socket")}"))}), none named '{FileDescriptorName}' or bound to {configuredPath} (Gateway:Listen:UnixSocket)."));
        }

        return (chosen.Fd, chosen.Path);
    }

    /// <summary>The path a Unix stream socket fd is bound to, or "" for any other fd.</summary>
    private static string LocalPath(int fd)
    {
        try
        {
            using var socket = new Socket(new SafeSocketHandle(fd, ownsHandle: false));
            return socket.AddressFamily == AddressFamily.Unix && socket.SocketType == SocketType.Stream && socket.LocalEndPoint is UnixDomainSocketEndPoint endpoint
                ? endpoint.ToString()
                : "";
        }
        catch (SocketException)
        {
            return "";
        }
    }
}

/// <summary>
/// Pings the systemd watchdog (<c>WATCHDOG=1</c> through the library's <see cref="ISystemdNotifier"/>) at half of
/// <c>WatchdogSec</c> (<c>WATCHDOG_USEC</c>, for this process per <c>WATCHDOG_PID</c>), from the started host's timer:
/// a hung host stops pinging and systemd restarts it.
/// </summary>
internal sealed class SystemdWatchdog(ISystemdNotifier notifier, TimeProvider time, IHostApplicationLifetime lifetime) : IHostedService, IDisposable
{
    private ITimer? _timer;

    public static TimeSpan? Interval()
    {
        if (!long.TryParse(Environment.GetEnvironmentVariable("WATCHDOG_USEC"), NumberStyles.None, CultureInfo.InvariantCulture, out var usec) || usec <= 0)
        {
            return null;
        }

        if (int.TryParse(Environment.GetEnvironmentVariable("WATCHDOG_PID"), NumberStyles.None, CultureInfo.InvariantCulture, out var pid) && pid != Environment.ProcessId)
        {
            return null;
        }

        return TimeSpan.FromMicroseconds(usec / 2.0);
    }

    public Task StartAsync(CancellationToken cancellationToken)
    {
        if (notifier.IsEnabled && Interval() is { } interval)
        {
            lifetime.ApplicationStarted.Register(() => _timer = time.CreateTimer(_ => notifier.Notify(new ServiceState("WATCHDOG=1")), null, interval, interval));
        }

        return Task.CompletedTask;
    }

    public Task StopAsync(CancellationToken cancellationToken)
    {
        _timer?.Dispose();
        return Task.CompletedTask;
    }

    public void Dispose() => _timer?.Dispose();
}
