using System.Net;
using System.Net.Sockets;
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
            new ConformanceOptions { Timeout = TimeSpan.FromMilliseconds(500) },
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

        var results = await ConformanceKit.RunAsync(fake.Path, new ConformanceOptions { Timeout = TimeSpan.FromMilliseconds(500) }, ["ping"]);

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

        var results = await ConformanceKit.RunAsync(fake.Path, new ConformanceOptions { Timeout = TimeSpan.FromMilliseconds(500) }, ["malformed-garbage", "malformed-bad-magic"]);

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

    private static byte[] Control(MessageKind kind, ulong id, ushort attempt)
    {
        using var writer = new FrameWriter();
        writer.WriteControl(kind, id, attempt);
        return writer.Complete().ToArray();
    }

    /// <summary>A scripted backend: answers each valid datagram with whatever <c>respond</c> returns (or nothing).</summary>
    private sealed class FakeBackend : IAsyncDisposable
    {
        private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        private readonly CancellationTokenSource _stop = new();
        private readonly Task _loop;

        public FakeBackend(string path, Func<FrameHeader, byte[], byte[]?> respond, Func<byte[], byte[]?>? onInvalid = null)
        {
            Path = path;
            _socket.Bind(new UnixDomainSocketEndPoint(path));
            _loop = Task.Run(() => LoopAsync(respond, onInvalid));
        }

        public string Path { get; }

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            _socket.Dispose();
            try
            {
                await _loop;
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
            }

            _stop.Dispose();
        }

        private async Task LoopAsync(Func<FrameHeader, byte[], byte[]?> respond, Func<byte[], byte[]?>? onInvalid)
        {
            var buffer = new byte[ProtocolConstants.MaxDatagram + 1];
            var address = new SocketAddress(AddressFamily.Unix, SocketAddress.GetMaximumAddressSize(AddressFamily.Unix));
            var size = address.Size;
            while (!_stop.IsCancellationRequested)
            {
                address.Size = size;
                var n = await _socket.ReceiveFromAsync(buffer, SocketFlags.None, address, _stop.Token);
                var datagram = buffer.AsSpan(0, n).ToArray();
                byte[]? reply;
                try
                {
                    reply = respond(FrameHeader.ReadDatagram(datagram), datagram);
                }
                catch (ProtocolException)
                {
                    reply = onInvalid?.Invoke(datagram);
                }

                if (reply is not null && address.Size > 2)
                {
                    // The EndPoint overload: SendToAsync with the received SocketAddress got ECONNREFUSED for abstract names.
                    await _socket.SendToAsync(reply, SocketFlags.None, new UnixDomainSocketEndPoint("/").Create(address), _stop.Token);
                }
            }
        }
    }
}
