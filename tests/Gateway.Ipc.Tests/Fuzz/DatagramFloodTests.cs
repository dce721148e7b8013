using System.Diagnostics;
using System.Net.Sockets;
using System.Text;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;
using Gateway.Testing;
using Microsoft.Extensions.Logging;
using Xunit.Abstractions;

namespace Gateway.Ipc.Tests.Fuzz;

/// <summary>
/// The hardening proof of issue 10: a million hostile datagrams (<see cref="DatagramFuzzer"/>) over real sockets into
/// the client's reply socket and into the backend helper's socket. No crash (no unexpected exception is logged), no
/// hang (genuine requests round-trip during and after the flood), and the counters add up (every datagram ends in
/// exactly one drop reason or outcome, see the remarks of the statistics classes).
/// Seed and size: GATEWAY_FUZZ_SEED and GATEWAY_FUZZ_DATAGRAMS (default 1,000,000); the seed is printed.
/// </summary>
public class DatagramFloodTests(ITestOutputHelper output)
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(60);

    private static int Seed() =>
        int.TryParse(Environment.GetEnvironmentVariable("GATEWAY_FUZZ_SEED"), out var seed) ? seed : Random.Shared.Next();

    private static int Count() =>
        int.TryParse(Environment.GetEnvironmentVariable("GATEWAY_FUZZ_DATAGRAMS"), out var count) && count > 0 ? count : 1_000_000;

    private static Socket Bound(string address)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified) { SendBufferSize = 1024 * 1024 };
        socket.Bind(new UnixDomainSocketEndPoint(address));
        return socket;
    }

    private static byte[] Request(ulong correlationId, string body)
    {
        using var writer = new FrameWriter();
        writer.BeginRequest(correlationId, 1, 0, "POST", "/fuzz");
        writer.WriteBody(Encoding.UTF8.GetBytes(body));
        return writer.Complete().ToArray();
    }

    private static byte[] Response(ulong correlationId, string body)
    {
        using var writer = new FrameWriter();
        writer.BeginResponse(correlationId, 1, 200);
        writer.WriteBody(Encoding.UTF8.GetBytes(body));
        return writer.Complete().ToArray();
    }

    private static void WaitUntil(Func<bool> condition, Func<string> describe) =>
        Assert.True(SpinWait.SpinUntil(condition, HangGuard), describe());

    [Fact]
    public async Task ClientReplySocket_MillionHostileDatagrams_NoCrashNoHang_CountersAddUp()
    {
        var seed = Seed();
        var count = Count();
        output.WriteLine($"seed {seed} (GATEWAY_FUZZ_SEED), {count:N0} datagrams");
        using var dir = new TempSocketDirectory();
        var errors = new ErrorCounter();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(errors));
        using var backend = Bound(dir.Socket("backend"));
        using var foreign = Bound(dir.Socket("foreign"));
        backend.ReceiveTimeout = (int)HangGuard.TotalMilliseconds; // a safety net: a missing request fails, never hangs
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = dir.Socket("backend") }, loggerFactory: loggers);
        var clientAddress = new UnixDomainSocketEndPoint("\0" + client.LocalAddress[1..]).Serialize();
        var fuzzer = new DatagramFuzzer(seed);
        var buffer = new byte[DatagramFuzzer.BufferSize];
        var received = new byte[ProtocolConstants.MaxDatagram + 1];
        long sent = 0, fromForeign = 0, oversizedFromBackend = 0, genuine = 0, checkpointFailures = 0;
        var watch = Stopwatch.StartNew();

        for (var i = 0; i < count; i++)
        {
            var length = fuzzer.Next(buffer);
            if (fuzzer.Random.Next(10) == 0)
            {
                foreign.SendTo(buffer.AsSpan(0, length), SocketFlags.None, clientAddress);
                fromForeign++;
            }
            else
            {
                backend.SendTo(buffer.AsSpan(0, length), SocketFlags.None, clientAddress);
                oversizedFromBackend += length > ProtocolConstants.MaxDatagram ? 1 : 0;
            }

            sent++;
            if (i % 50_000 == 49_999)
            {
                // Mid-flood: a genuine request, hostile fragments for its correlation ID (they reach reassembly),
                // then its valid reply twice (the second is a duplicate).
                var id = client.NextCorrelationId();
                var pending = client.SendAsync(Request(id, "checkpoint"), HangGuard);
                Assert.True(backend.Receive(received) > ProtocolConstants.HeaderSize);
                for (var f = 0; f < 20; f++)
                {
                    var fragment = fuzzer.Next(buffer);
                    if (fragment >= 28 && (buffer[4] & (byte)MessageFlags.Fragment) != 0 && fragment <= ProtocolConstants.MaxDatagram)
                    {
                        System.Buffers.Binary.BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(8), id);
                    }

                    backend.SendTo(buffer.AsSpan(0, fragment), SocketFlags.None, clientAddress);
                    oversizedFromBackend += fragment > ProtocolConstants.MaxDatagram ? 1 : 0;
                    sent++;
                }

                var reply = Response(id, "genuine");
                backend.SendTo(reply, SocketFlags.None, clientAddress);
                backend.SendTo(reply, SocketFlags.None, clientAddress);
                sent += 2;
                try
                {
                    using var answer = await pending.WaitAsync(HangGuard);
                    Assert.Equal("genuine", Encoding.UTF8.GetString(answer.Response.Body));
                    genuine++;
                }
                catch (DatagramException ex) when (ex.Failure is DatagramFailure.TooLarge or DatagramFailure.MalformedReply)
                {
                    // A hostile fragment for this ID was refused first: a definite failure, never a hang.
                    checkpointFailures++;
                }
            }
        }

        // After the flood: a genuine request still round-trips.
        var lastId = client.NextCorrelationId();
        var last = client.SendAsync(Request(lastId, "after"), HangGuard);
        backend.Receive(received);
        backend.SendTo(Response(lastId, "still alive"), SocketFlags.None, clientAddress);
        sent++;
        using (var answer = await last.WaitAsync(HangGuard))
        {
            Assert.Equal("still alive", Encoding.UTF8.GetString(answer.Response.Body));
        }

        watch.Stop();
        var s = client.Statistics;
        long Outcomes() => s.SpoofedReplies + s.ForeignUidReplies + s.OversizedDatagrams + s.MalformedDatagrams + s.LateReplies + s.RepliesReceived + s.FragmentsReceived;
        string Describe() =>
            $"received {s.DatagramsReceived} of {sent}, reassembled {s.ReassembledReplies}; spoofed {s.SpoofedReplies}, foreign uid {s.ForeignUidReplies}, oversized {s.OversizedDatagrams}, " +
            $"malformed {s.MalformedDatagrams}, late {s.LateReplies}, replies {s.RepliesReceived}, fragments {s.FragmentsReceived} (reassembly dropped {s.ReassemblyDropped})";
        WaitUntil(() => s.DatagramsReceived == sent && s.DatagramsReceived + s.ReassembledReplies == Outcomes(), Describe);
        output.WriteLine(Describe());
        output.WriteLine($"strategies {string.Join(", ", fuzzer.Strategies)}; checkpoints ok {genuine}, refused {checkpointFailures}");
        output.WriteLine($"{sent:N0} datagrams in {watch.Elapsed.TotalSeconds:0.0} s = {sent / watch.Elapsed.TotalSeconds:N0}/s");

        Assert.Equal(s.DatagramsReceived + s.ReassembledReplies, Outcomes());
        Assert.Equal(fromForeign, s.SpoofedReplies);
        Assert.Equal(genuine + 1, s.RepliesReceived);
        Assert.Equal(oversizedFromBackend, s.OversizedDatagrams); // from the foreign socket they count as spoofed
        Assert.True(s.MalformedDatagrams > 0 && s.LateReplies > 0, Describe());
        Assert.Equal(0, client.PendingCount);
        Assert.Equal(0, errors.Count);
    }

    [Fact]
    public async Task BackendSocket_MillionHostileDatagrams_NoCrashNoHang_CountersAddUp()
    {
        var seed = Seed();
        var count = Count();
        output.WriteLine($"seed {seed} (GATEWAY_FUZZ_SEED), {count:N0} datagrams");
        using var dir = new TempSocketDirectory();
        var errors = new ErrorCounter();
        using var loggers = LoggerFactory.Create(b => b.AddProvider(errors));
        var server = new DatagramBackendServer(
            new DatagramBackendOptions { SocketPath = dir.Socket("backend"), AcceptStreamedRequestBodies = true },
            (request, _) => ValueTask.FromResult(BackendResponse.Text("handled")),
            loggerFactory: loggers);
        await using var serverScope = server;
        await server.StartAsync();
        var backendAddress = new UnixDomainSocketEndPoint(dir.Socket("backend")).Serialize();
        using var sender = Bound(dir.Socket("sender"));
        using var unbound = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified) { SendBufferSize = 1024 * 1024 };

        // The backend answers valid requests and pings: read and discard the answers so they never pile up.
        using var stopDrain = new CancellationTokenSource();
        long answers = 0;
        var drain = Task.Factory.StartNew(() =>
        {
            var scratch = new byte[ProtocolConstants.MaxDatagram + 1];
            sender.ReceiveTimeout = 100;
            while (!stopDrain.IsCancellationRequested)
            {
                try
                {
                    sender.Receive(scratch);
                    answers++;
                }
                catch (SocketException ex) when (ex.SocketErrorCode is SocketError.TimedOut or SocketError.WouldBlock)
                {
                }
            }
        }, TaskCreationOptions.LongRunning);

        var fuzzer = new DatagramFuzzer(seed);
        var buffer = new byte[DatagramFuzzer.BufferSize];
        long sent = 0;
        var watch = Stopwatch.StartNew();
        for (var i = 0; i < count; i++)
        {
            var length = fuzzer.Next(buffer);
            (fuzzer.Random.Next(50) == 0 ? unbound : sender).SendTo(buffer.AsSpan(0, length), SocketFlags.None, backendAddress);
            sent++;
        }

        // After the flood (once the flood's requests have left the handler, so that MaxConcurrency does not refuse it):
        // a genuine request still round-trips.
        WaitUntil(() => server.InFlight == 0, () => $"{server.InFlight} requests still in flight");
        await using (var client = new DatagramClient(new DatagramClientOptions { BackendPath = dir.Socket("backend") }))
        {
            using var reply = await client.SendAsync(Request(client.NextCorrelationId(), "after"), HangGuard).WaitAsync(HangGuard);
            Assert.True(reply.Kind == MessageKind.Response, reply.Kind == MessageKind.Error ? $"ERROR {reply.Error.Code}: {reply.Error.GetMessage()}" : reply.Kind.ToString());
            Assert.Equal("handled", Encoding.UTF8.GetString(reply.Response.Body));
        }

        sent++;
        watch.Stop();
        var s = server.Statistics;
        long Outcomes() => s.DroppedOversized + s.DroppedMalformed + s.Pings + s.Cancels + s.RequestsTooLarge + s.FragmentsReceived
            + s.DuplicatesInFlight + s.Replayed + s.Overloaded + s.MalformedErrorsSent + s.Dispatched + s.ProcessingFailures
            + s.Credits + s.UploadMessages + s.LateStreamMessages;
        string Describe() =>
            $"received {s.Received} of {sent}, reassembled {s.RequestsReassembled}; oversized {s.DroppedOversized}, malformed {s.DroppedMalformed}, pings {s.Pings}, cancels {s.Cancels}, " +
            $"too large {s.RequestsTooLarge}, fragments {s.FragmentsReceived} (dropped {s.FragmentsDropped}), duplicates {s.DuplicatesInFlight}, replayed {s.Replayed}, overloaded {s.Overloaded}, " +
            $"malformed errors {s.MalformedErrorsSent}, dispatched {s.Dispatched} (executed {s.Executed}, expired {s.DroppedExpired}), processing failures {s.ProcessingFailures}, reply failures {s.ReplyFailures}";
        WaitUntil(() => s.Received == sent && s.Dispatched == s.Executed + s.DroppedExpired, Describe);
        await stopDrain.CancelAsync();
        await drain.WaitAsync(HangGuard);
        output.WriteLine(Describe());
        output.WriteLine($"strategies {string.Join(", ", fuzzer.Strategies)}; answers read {answers:N0}");
        output.WriteLine($"{sent:N0} datagrams in {watch.Elapsed.TotalSeconds:0.0} s = {sent / watch.Elapsed.TotalSeconds:N0}/s");

        Assert.True(errors.Count == 0, errors.First);
        Assert.Equal(s.Received + s.RequestsReassembled, Outcomes());
        Assert.Equal(s.Dispatched, s.Executed + s.DroppedExpired);
        Assert.Equal(fuzzer.Strategies[9], s.DroppedOversized);
        Assert.True(s.DroppedMalformed > 0 && s.Dispatched > 0 && s.MalformedErrorsSent > 0 && s.Pings > 0 && s.FragmentsReceived > 0, Describe());
        Assert.Equal(0, s.ProcessingFailures);
        Assert.Equal(0, errors.Count);
    }

    /// <summary>Counts log entries at Error or above (an unexpected exception in a receive loop); ignores the rest cheaply.</summary>
    private sealed class ErrorCounter : ILoggerProvider, ILogger
    {
        private int _count;

        public int Count => Volatile.Read(ref _count);

        /// <summary>The first error logged, for the failure message.</summary>
        public string? First { get; private set; }

        public ILogger CreateLogger(string categoryName) => this;

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => logLevel >= LogLevel.Error;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            if (logLevel >= LogLevel.Error && Interlocked.Increment(ref _count) == 1)
            {
                First = $"{eventId}: {formatter(state, exception)} {exception}";
            }
        }

        public void Dispose()
        {
        }
    }
}
