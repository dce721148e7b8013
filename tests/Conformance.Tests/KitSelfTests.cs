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

    /// <summary>
    /// A lax backend: answers every REQUEST 200 whatever its header names, answers fragments of a message that fits one
    /// datagram, refuses more than 16 MiB, and checks a retry against the first attempt's deadline.
    /// </summary>
    [Fact]
    public async Task Kit_AgainstALaxBackend_FailsTheHeaderNameFragmentLargestAndLateRetryChecks()
    {
        using var dir = new TempSocketDirectory();
        await using var fake = new FakeBackend(
            dir.Socket("fake.sock"),
            (header, datagram) => header.Kind switch
            {
                MessageKind.Ping => Control(MessageKind.Pong, header.CorrelationId, header.Attempt),
                MessageKind.Request when header.IsFragment && header.PayloadLength > 16 << 20 && FrameHeader.ReadFragmentOffset(datagram) == 0 =>
                    Error(header, IpcErrorCode.TooLarge),
                MessageKind.Request when header.IsFragment => null,
                MessageKind.Request when header.Attempt >= 2 => Error(header, IpcErrorCode.DeadlineExceeded),
                MessageKind.Request => Ok(header),
                _ => null,
            },
            onInvalid: datagram => datagram.Length > 24 && datagram[3] == (byte)MessageKind.Request && FrameHeader.TryRead(datagram, out var header) ? Ok(header) : null);

        var results = await ConformanceKit.RunAsync(
            fake.Path,
            new ConformanceOptions { Timeout = TimeSpan.FromSeconds(3) },
            ["malformed-header-name", "malformed-needless-fragments", "largest-message", "retry-after-deadline"]);

        var outcomes = results.ToDictionary(r => r.Name);
        Assert.All(results, r => Assert.Equal(CheckOutcome.Fail, r.Outcome));
        Assert.Contains("expected ERROR MALFORMED", outcomes["malformed-header-name"].Detail, StringComparison.Ordinal);
        Assert.Contains("unexpected after", outcomes["malformed-needless-fragments"].Detail, StringComparison.Ordinal);
        Assert.Contains("ERROR TooLarge", outcomes["largest-message"].Detail, StringComparison.Ordinal);
        Assert.Contains("REPLAY", outcomes["retry-after-deadline"].Detail, StringComparison.Ordinal);

        static byte[] Ok(FrameHeader header)
        {
            using var writer = new FrameWriter();
            writer.BeginResponse(header.CorrelationId, header.Attempt, 200);
            writer.WriteBody("ok"u8);
            return writer.Complete().ToArray();
        }

        static byte[] Error(FrameHeader header, IpcErrorCode code)
        {
            using var writer = new FrameWriter();
            writer.WriteError(header.CorrelationId, header.Attempt, code, "lax");
            return writer.Complete().ToArray();
        }
    }

    /// <summary>
    /// A backend that echoes naively: every REQUEST gets a RESPONSE with the status from x-echo-status and a body (also
    /// for 204/304 and HEAD: "{METHOD} {target}\n" or the request's body), and, optionally, a header value with a
    /// non-ASCII byte or a token-breaking name.
    /// </summary>
    private static FakeBackend NaiveEcho(string path, bool bodyForNoContent, bool emptyForHead, (byte[] Name, byte[] Value)? extraHeader) =>
        new(path, (header, datagram) =>
        {
            if (header.Kind == MessageKind.Ping)
            {
                return Control(MessageKind.Pong, header.CorrelationId, header.Attempt);
            }

            if (header.Kind != MessageKind.Request)
            {
                return null;
            }

            var request = RequestView.Read(datagram.AsSpan(ProtocolConstants.HeaderSize));
            var status = int.TryParse(request.Headers.GetValue("x-echo-status"), out var s) ? s : 200;
            var method = request.GetMethod();
            byte[] body = request.Body.IsEmpty ? System.Text.Encoding.UTF8.GetBytes($"{method} {request.GetTarget()}\n") : request.Body.ToArray();
            if ((!bodyForNoContent && status is 204 or 304) || (emptyForHead && method == "HEAD"))
            {
                body = [];
            }

            using var writer = new FrameWriter();
            writer.BeginResponse(header.CorrelationId, header.Attempt, status);
            writer.AddHeader("content-type"u8, "text/plain"u8);
            if (extraHeader is var (name, value))
            {
                writer.AddHeader(name, value);
            }

            writer.WriteBody(body);
            return writer.Complete().ToArray();
        });

    [Fact]
    public async Task Kit_AgainstABackendThatSendsABodyWith204_FailsEmptyBodyStatuses_PassesTheOthers()
    {
        using var dir = new TempSocketDirectory();
        await using var fake = NaiveEcho(dir.Socket("fake.sock"), bodyForNoContent: true, emptyForHead: false, extraHeader: null);

        var results = (await ConformanceKit.RunAsync(fake.Path, new ConformanceOptions { Timeout = TimeSpan.FromSeconds(3) }, ["empty-body-statuses", "head-like-get", "header-utf8"])).ToDictionary(r => r.Name);

        Assert.Equal(CheckOutcome.Fail, results["empty-body-statuses"].Outcome);
        Assert.Contains("the 204 RESPONSE has a 13-byte body", results["empty-body-statuses"].Detail, StringComparison.Ordinal);
        Assert.Equal(CheckOutcome.Pass, results["head-like-get"].Outcome);
        Assert.Equal(CheckOutcome.Pass, results["header-utf8"].Outcome);
    }

    [Fact]
    public async Task Kit_AgainstABackendThatBlanksHeadReplies_FailsHeadLikeGet()
    {
        using var dir = new TempSocketDirectory();
        await using var fake = NaiveEcho(dir.Socket("fake.sock"), bodyForNoContent: false, emptyForHead: true, extraHeader: null);

        var results = (await ConformanceKit.RunAsync(fake.Path, new ConformanceOptions { Timeout = TimeSpan.FromSeconds(3) }, ["empty-body-statuses", "head-like-get"])).ToDictionary(r => r.Name);

        Assert.Equal(CheckOutcome.Pass, results["empty-body-statuses"].Outcome);
        Assert.Equal(CheckOutcome.Fail, results["head-like-get"].Outcome);
        Assert.Contains("a HEAD reply carries the body GET would get", results["head-like-get"].Detail, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("x-name", new byte[] { 0x63, 0x61, 0x66, 0xc3, 0xa9 }, "byte 0xc3 at offset 3")]
    [InlineData("x-name", new byte[] { 0x61, 0x0a, 0x62 }, "byte 0x0a at offset 1")]
    [InlineData("x name", new byte[] { 0x76 }, "has byte 0x20 at offset 1, not a token character")]
    public async Task Kit_AgainstABackendWhoseReplyHeadersAreNotAscii_FailsEveryRequestCheck(string name, byte[] value, string detail)
    {
        using var dir = new TempSocketDirectory();
        await using var fake = NaiveEcho(dir.Socket("fake.sock"), bodyForNoContent: false, emptyForHead: false, (System.Text.Encoding.ASCII.GetBytes(name), value));

        var results = await ConformanceKit.RunAsync(fake.Path, new ConformanceOptions { Timeout = TimeSpan.FromSeconds(3) }, ["echo", "head-like-get", "header-utf8"]);

        Assert.All(results, r => Assert.Equal(CheckOutcome.Fail, r.Outcome));
        Assert.All(results, r => Assert.Contains(detail, r.Detail, StringComparison.Ordinal));
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

    /// <summary>
    /// A backend that announces STREAM_REPLY and then breaks the stream rules: for each CREDIT it sends CHUNK 0 with
    /// 100 bytes more than granted, never an END, and it ignores CANCEL and a CREDIT of 0.
    /// </summary>
    [Fact]
    public async Task Kit_AgainstABackendThatIgnoresCredit_FailsTheStreamChecks_AndSkipsUploads()
    {
        using var dir = new TempSocketDirectory();
        await using var fake = new FakeBackend(dir.Socket("fake.sock"), (header, datagram) =>
        {
            using var writer = new FrameWriter();
            switch (header.Kind)
            {
                case MessageKind.Ping:
                    writer.WriteControl(MessageKind.Pong, header.CorrelationId, header.Attempt, StreamFeatures.StreamReply);
                    return writer.WrittenSpan.ToArray();
                case MessageKind.Request when (header.Features & StreamFeatures.StreamReply) != 0:
                    writer.BeginResponseHead(header.CorrelationId, header.Attempt, 200);
                    return writer.Complete().ToArray();
                case MessageKind.Credit:
                    var granted = System.Buffers.Binary.BinaryPrimitives.ReadUInt32BigEndian(datagram.AsSpan(ProtocolConstants.HeaderSize));
                    writer.WriteChunk(header.CorrelationId, header.Attempt, 0, new byte[Math.Min(granted + 100, ProtocolConstants.MaxChunkData)]);
                    return writer.WrittenSpan.ToArray();
                default:
                    return null;
            }
        });

        var results = await ConformanceKit.RunAsync(
            fake.Path,
            new ConformanceOptions { Timeout = TimeSpan.FromSeconds(2) },
            ["stream-announce", "stream-reply", "stream-window", "stream-cancel", "stream-bad-credit", "stream-upload"]);

        var outcomes = results.ToDictionary(r => r.Name);
        Assert.Equal(CheckOutcome.Pass, outcomes["stream-announce"].Outcome);
        Assert.Equal(CheckOutcome.Fail, outcomes["stream-reply"].Outcome);
        Assert.Equal(CheckOutcome.Fail, outcomes["stream-window"].Outcome);
        Assert.Contains("2,500 B of credit", outcomes["stream-window"].Detail, StringComparison.Ordinal);
        Assert.Equal(CheckOutcome.Fail, outcomes["stream-cancel"].Outcome);
        Assert.Equal(CheckOutcome.Fail, outcomes["stream-bad-credit"].Outcome);
        Assert.Equal(CheckOutcome.Skip, outcomes["stream-upload"].Outcome);
    }

    private static byte[] Control(MessageKind kind, ulong id, ushort attempt) => FakeBackend.Control(kind, id, attempt);
}
