using Gateway.Testing;

namespace Gateway.Conformance.Tests;

/// <summary>Runs the whole conformance kit against each backend implementation, started as a child process.</summary>
public sealed class BackendConformanceTests
{
    [Theory]
    [Backend("python")]
    [Backend("csharp-echo")]
    public async Task Backend_RunsTheKit_EveryCheckPasses(string backend)
    {
        var launch = BackendLaunch.All[backend];
        using var dir = new TempSocketDirectory();
        await using var process = await BackendProcess.StartReadyAsync(launch, dir.Socket("backend.sock"));

        // A generous reply bound: CI shares two cores with builds; the kit still asserts behaviour, not speed.
        var results = await ConformanceKit.RunAsync(process.SocketPath, new ConformanceOptions { Timeout = TimeSpan.FromSeconds(30) });

        var table = ConformanceKit.FormatTable(results);
        Assert.Equal(ConformanceKit.CheckNames, results.Select(r => r.Name));
        Assert.True(
            results.All(r => r.Outcome == CheckOutcome.Pass || (r.Outcome == CheckOutcome.Skip && launch.AllowedSkips.Contains(r.Name))),
            $"{backend} failed conformance checks:\n{table}\nBackend output:\n{process.Output}");
    }
}
