using System.Net.Sockets;
using Gateway.Ipc.Transport;
using Gateway.Routing;

namespace Gateway.Resilience;

/// <summary>
/// Active health checks: PINGs every instance at its backend's <c>HealthCheck:Interval</c>. A failed probe
/// ejects the instance; a successful one readmits it (and so readmits an instance ejected for failing requests).
/// An ejected or unanswered instance is re-probed sooner, with backoff from 0.5 s up to the interval
/// (<see cref="InstanceResilience.NextProbeDue"/>), so a backend still starting when the gateway starts is taken in
/// about a second after it comes up. Readiness (<c>/readyz</c>) and <c>/admin/backends</c> read the result; they do not probe.
/// </summary>
internal sealed class BackendHealthProber(RouteTableProvider routes, TimeProvider timeProvider, ILogger<BackendHealthProber> logger) : BackgroundService
{
    private static readonly TimeSpan MinTick = TimeSpan.FromMilliseconds(100);
    private readonly SemaphoreSlim _round = new(1, 1);

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        try
        {
            while (!stoppingToken.IsCancellationRequested)
            {
                await ProbeAsync(dueOnly: true, stoppingToken).ConfigureAwait(false);
                await Task.Delay(Tick(), timeProvider, stoppingToken).ConfigureAwait(false);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
            // Stopping.
        }
        catch (Exception ex)
        {
            ResilienceLog.ProbeLoopFailed(logger, ex);
        }
    }

    /// <summary>Probes every instance now (rounds never overlap, so results land in order).</summary>
    public Task ProbeAllAsync(CancellationToken cancellationToken = default) => ProbeAsync(dueOnly: false, cancellationToken);

    private async Task ProbeAsync(bool dueOnly, CancellationToken cancellationToken)
    {
        await _round.WaitAsync(cancellationToken).ConfigureAwait(false);
        try
        {
            var now = timeProvider.GetUtcNow();
            var probes = new List<Task>();
            foreach (var backend in routes.Current.Backends.Values)
            {
                foreach (var instance in backend.Instances)
                {
                    if (!dueOnly || instance.Resilience.NextProbeDue(backend.HealthCheck.Interval) <= now)
                    {
                        probes.Add(ProbeAsync(instance, backend.HealthCheck.Timeout, cancellationToken));
                    }
                }
            }

            await Task.WhenAll(probes).ConfigureAwait(false);
        }
        finally
        {
            _round.Release();
        }
    }

    private async Task ProbeAsync(BackendInstance instance, TimeSpan timeout, CancellationToken cancellationToken)
    {
        bool healthy;
        if (instance.Client is { } client)
        {
            healthy = await client.PingAsync(timeout, cancellationToken).ConfigureAwait(false);
        }
        else
        {
            // Raw daemons do not speak the protocol: connect a datagram socket to the path (nothing is sent). A live
            // receiver accepts; a file left by a killed daemon refuses (stale); a missing file is absent.
            healthy = IsRawSocketLive(instance.SocketPath);
        }

        switch (instance.Resilience.RecordProbe(healthy))
        {
            case true:
                ResilienceLog.ProbeRecovered(logger, instance.SocketPath);
                break;
            case false:
                ResilienceLog.ProbeFailed(logger, instance.SocketPath);
                break;
        }
    }

    private static bool IsRawSocketLive(string path)
    {
        try
        {
            return UnixSocketFile.Probe(path, SocketType.Dgram) == SocketFileState.Live;
        }
        catch (SocketFileException)
        {
            // Not a socket, or the probe failed (e.g. no permission to connect): not usable either.
            return false;
        }
    }

    /// <summary>How long until the next instance is due (at least <see cref="MinTick"/>; 10 s when there is none).</summary>
    private TimeSpan Tick()
    {
        var now = timeProvider.GetUtcNow();
        var tick = TimeSpan.MaxValue;
        foreach (var backend in routes.Current.Backends.Values)
        {
            foreach (var instance in backend.Instances)
            {
                var due = instance.Resilience.NextProbeDue(backend.HealthCheck.Interval);
                var wait = due <= now ? TimeSpan.Zero : due - now;
                if (wait < tick)
                {
                    tick = wait;
                }
            }
        }

        return tick == TimeSpan.MaxValue ? TimeSpan.FromSeconds(10) : (tick < MinTick ? MinTick : tick);
    }

    public override void Dispose()
    {
        _round.Dispose();
        base.Dispose();
    }
}
