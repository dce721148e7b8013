using Gateway.Ipc.Backend;
using Gateway.Ipc.Client;
using Gateway.Resilience;
using Gateway.Routing;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Tests.Resilience;

/// <summary>
/// An ejected or unanswered instance is re-probed with backoff (0.5 s, 1 s, 2 s, … up to the interval) instead of
/// once per <c>HealthCheck:Interval</c>: a backend still starting when the gateway starts (compose without health
/// gating) is taken in about a second after it comes up, not up to 10 s later.
/// </summary>
public class HealthProbeBackoffTests
{
    private static readonly TimeSpan Interval = TimeSpan.FromSeconds(10);

    [Fact]
    public void NextProbeDue_BacksOffFromHalfASecond_DoublingUpToTheInterval_AndIsTheIntervalWhenHealthy()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        using var instance = new InstanceResilience(InstanceResilienceSettings.Default, time);
        Assert.Equal(DateTimeOffset.MinValue, instance.NextProbeDue(Interval)); // never probed: due now

        var delays = new List<double>();
        for (var i = 0; i < 8; i++)
        {
            instance.RecordProbe(healthy: false);
            delays.Add((instance.NextProbeDue(Interval) - instance.LastProbe!.Value).TotalSeconds);
            time.Advance(TimeSpan.FromSeconds(1));
        }

        Assert.Equal([0.5, 1, 2, 4, 8, 10, 10, 10], delays);

        instance.RecordProbe(healthy: true);
        Assert.Equal(instance.LastProbe!.Value + Interval, instance.NextProbeDue(Interval));
        Assert.Equal(0, instance.ConsecutiveFailedProbes);

        // Ejected by failing requests after a successful probe: re-probed after 0.5 s, not after the interval.
        for (var i = 0; i < InstanceResilienceSettings.Default.EjectAfterFailures; i++)
        {
            instance.RecordFailure(new DatagramException(DatagramFailure.BackendAbsent, "/x.sock", "absent"));
        }

        Assert.True(instance.IsEjected);
        Assert.Equal(instance.LastProbe!.Value + InstanceResilience.FirstReprobeDelay, instance.NextProbeDue(Interval));
    }

    [Fact]
    public void NextProbeDue_NeverLaterThanAShortInterval()
    {
        var time = new FakeTimeProvider(DateTimeOffset.UnixEpoch);
        using var instance = new InstanceResilience(InstanceResilienceSettings.Default, time);
        var interval = TimeSpan.FromMilliseconds(200);

        instance.RecordProbe(healthy: false);

        Assert.Equal(instance.LastProbe!.Value + interval, instance.NextProbeDue(interval));
    }

    [Fact]
    public async Task BackendStartingAfterTheGateway_IsTakenInAfterHalfASecond_NotAfterTheInterval()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("late.sock");
        var settings = ResilienceSettings.Route(path);
        settings["Gateway:Backends:b:HealthCheck:Interval"] = "00:00:10";
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new GatewayFactory(dir, settings, s => s.AddSingleton<TimeProvider>(time));
        using var client = factory.CreateClient(); // starts the host, and with it the prober
        var instance = factory.Services.GetRequiredService<RouteTableProvider>().Current.Backends["b"].Instances[0].Resilience;

        // The first probe runs at start-up and finds no backend: ejected.
        await Eventually.UntilAsync(() => instance.LastProbeSucceeded == false, TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(10));
        var firstProbe = instance.LastProbe!.Value;
        Assert.True(instance.IsEjected);

        await using var backend = await TestBackend.StartAsync(path, (_, _) => ValueTask.FromResult(BackendResponse.Text("up")));

        // Move the fake clock in 100 ms steps until a probe readmits it (the prober's wait may register a moment later).
        await Eventually.UntilAsync(
            () =>
            {
                if (!instance.IsEjected)
                {
                    return true;
                }

                if (time.GetUtcNow() - firstProbe < TimeSpan.FromSeconds(3))
                {
                    time.Advance(TimeSpan.FromMilliseconds(100));
                }

                return false;
            },
            TimeSpan.FromSeconds(30),
            TimeSpan.FromMilliseconds(20));

        var readmittedAfter = instance.LastProbe!.Value - firstProbe;
        Assert.True(instance.LastProbeSucceeded);
        Assert.InRange(readmittedAfter, InstanceResilience.FirstReprobeDelay, TimeSpan.FromSeconds(1));
        Assert.Equal("up", await client.GetStringAsync("/api/x"));
    }
}
