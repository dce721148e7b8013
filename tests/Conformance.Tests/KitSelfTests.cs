using Gateway.Ipc.Protocol;
using Gateway.Testing;

namespace Gateway.Conformance.Tests;

/// <summary>The kit must fail backends that break the spec, not only pass good ones.</summary>
public sealed class KitSelfTests
{
    [Fact]
    public async Task Kit_AgainstABackendThatOnlyAnswersPing_FailsTheRequestChecks()
    {
        using var dir = new TempSocketDirectory();
        await using var fake = new FakeBackend(dir.Socket("fake.sock"), (header, _) =>
            header.Kind == MessageKind.Ping ? Control(MessageKind.Pong, header.CorrelationId, header.Attempt) : null);

        var results = await ConformanceKit.RunAsync(
            fake.Path,
            new ConformanceOptions { Timeout = TimeSpan.FromSeconds(3) },
            ["vector-8.1", "ping", "malformed-garbage", "retry-replay", "malformed-payload"]);

        var outcomes = results.ToDictionary(r => r.Name);
        Assert.Equal(CheckOutcome.Fail, outcomes["vector-8.1"].Outcome);
        Assert.Contains("no reply", outcomes["vector-8.1"].Detail, StringComparison.Ordinal);
        Assert.Equal(CheckOutcome.Pass, outcomes["ping"].Outcome);
        Assert.Equal(CheckOutcome.Pass, outcomes["malformed-garbage"].Outcome);
        Assert.Equal(CheckOutcome.Fail, outcomes["retry-replay"].Outcome);
        Assert.Equal(CheckOutcome.Fail, outcomes["malformed-payload"].Outcome);
    }

    [Fact]
    public async Task Kit_AgainstABackendWhosePongLosesTheAttempt_FailsPing()
    {
        using var dir = new TempSocketDirectory();
        await using var fake = new FakeBackend(dir.Socket("fake.sock"), (header, _) =>
            header.Kind == MessageKind.Ping ? Control(MessageKind.Pong, header.CorrelationId, 0) : null);

        var results = await ConformanceKit.RunAsync(fake.Path, new ConformanceOptions { Timeout = TimeSpan.FromSeconds(3) }, ["ping"]);

        var ping = Assert.Single(results);
        Assert.Equal(CheckOutcome.Fail, ping.Outcome);
        Assert.Contains("attempt 7", ping.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Kit_AgainstABackendThatAnswersGarbage_FailsTheDropChecks()
    {
        using var dir = new TempSocketDirectory();
        await using var fake = new FakeBackend(dir.Socket("fake.sock"), (header, datagram) =>
            header.Kind == MessageKind.Ping ? Control(MessageKind.Pong, header.CorrelationId, header.Attempt) : null,
            onInvalid: _ => "nonsense"u8.ToArray());

        var results = await ConformanceKit.RunAsync(fake.Path, new ConformanceOptions { Timeout = TimeSpan.FromSeconds(3) }, ["malformed-garbage", "malformed-bad-magic"]);

        Assert.All(results, r => Assert.Equal(CheckOutcome.Fail, r.Outcome));
        Assert.All(results, r => Assert.Contains("invalid datagram", r.Detail, StringComparison.Ordinal));
    }

    [Fact]
    public void FormatTable_ListsEveryResult_AndCountsOutcomes()
    {
        var table = ConformanceKit.FormatTable(
        [
            new CheckResult("a", CheckOutcome.Pass, "fine"),
            new CheckResult("b", CheckOutcome.Fail, "x | y"),
            new CheckResult("c", CheckOutcome.Skip, "no route"),
        ]);

        Assert.Contains("| a | PASS | fine |", table, StringComparison.Ordinal);
        Assert.Contains("| b | FAIL | x \\| y |", table, StringComparison.Ordinal);
        Assert.Contains("1 passed, 1 failed, 1 skipped", table, StringComparison.Ordinal);
    }

    private static byte[] Control(MessageKind kind, ulong id, ushort attempt) => FakeBackend.Control(kind, id, attempt);
}
