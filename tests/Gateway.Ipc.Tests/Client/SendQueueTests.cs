using System.Net;
using System.Net.Sockets;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Transport;
using Gateway.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Ipc.Tests.Client;

/// <summary>
/// The client's send queue: progress-based overload detection, its bound and cancellation of queued requests, against
/// a backend the test drives datagram by datagram. "Time" is a <see cref="FakeTimeProvider"/>: it only moves when the
/// test advances it, so no assertion depends on how fast this machine is.
/// </summary>
public sealed class SendQueueTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan Infinite = Timeout.InfiniteTimeSpan;
    private static readonly TimeSpan SendTimeout = TimeSpan.FromSeconds(1);

    [Fact]
    public async Task Burst_SlowButDrainingBackend_EveryRequestSucceeds_BecauseProgressRestartsTheSendTimeout()
    {
        const int Count = 2000;

        // More than the backend queue's ~11 datagrams plus the one being sent: the later datagrams of every batch were
        // accepted during that batch, and the send loop records each acceptance before it sends the next datagram, so
        // when the batch has been read the loop has made progress at the current (fake) time.
        const int Batch = 20;
        using var dir = new TempSocketDirectory();
        using var backend = new ManualBackend(dir.Socket("backend"));
        var time = new FakeTimeProvider();
        var start = time.GetUtcNow();
        await using var client = Client(backend.Path, time);

        var sends = new Task<DatagramReply>[Count];
        for (var i = 0; i < Count; i++)
        {
            sends[i] = client.SendAsync(Request(client.NextCorrelationId()), Infinite);
        }

        // The backend's queue is full: nearly everything waits in the client's send queue.
        Assert.InRange(client.Statistics.RequestsSent, 1, Count - Batch);

        var seen = new HashSet<ulong>();
        var read = 0;
        while (read < Count)
        {
            var batch = Math.Min(Batch, Count - read);
            for (var k = 0; k < batch; k++)
            {
                var (header, sender) = await backend.ReceiveAsync();
                Assert.True(seen.Add(header.CorrelationId), $"Request {header.CorrelationId} arrived twice.");
                await backend.ReplyAsync(header, sender);
            }

            read += batch;

            // Less than SendTimeout since the last progress, but far more than SendTimeout in total.
            time.Advance(TimeSpan.FromMilliseconds(600));
        }

        foreach (var send in sends)
        {
            using var reply = await send.WaitAsync(HangGuard);
            Assert.Equal(200, reply.Response.Status);
        }

        Assert.True(time.GetUtcNow() - start > 50 * SendTimeout);
        Assert.Equal(Count, seen.Count);
        Assert.Equal(Count, client.Statistics.RequestsSent);
        Assert.Equal(0, client.Statistics.SendFailures);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task BackendStopsReading_QueuedRequestsFailOverloaded_AfterSendTimeoutWithoutProgress()
    {
        const int Count = 40;
        using var dir = new TempSocketDirectory();
        using var backend = new ManualBackend(dir.Socket("backend"));
        var time = new FakeTimeProvider();
        var client = Client(backend.Path, time);

        var sends = new Task<DatagramReply>[Count];
        for (var i = 0; i < Count; i++)
        {
            sends[i] = client.SendAsync(Request(client.NextCorrelationId()), Infinite);
        }

        // The backend's queue took the first ones (the fast path, in call order); the rest wait in the send queue.
        var accepted = (int)client.Statistics.RequestsSent;
        Assert.InRange(accepted, 1, Count - 2);

        time.Advance(SendTimeout - TimeSpan.FromMilliseconds(1));
        Assert.All(sends, send => Assert.False(send.IsCompleted));

        time.Advance(TimeSpan.FromMilliseconds(1));
        for (var i = accepted; i < Count; i++)
        {
            var ex = await Assert.ThrowsAsync<DatagramException>(() => sends[i].WaitAsync(HangGuard));
            Assert.Equal(DatagramFailure.BackendOverloaded, ex.Failure);
        }

        Assert.Equal(Count - accepted, client.Statistics.SendFailures);
        Assert.Equal(accepted, client.PendingCount);

        // Every request either reached the backend or failed: none was lost or sent after it failed.
        Assert.Equal(accepted, backend.DrainQueued().Count);

        await client.DisposeAsync();
        for (var i = 0; i < accepted; i++)
        {
            var ex = await Assert.ThrowsAsync<DatagramException>(() => sends[i].WaitAsync(HangGuard));
            Assert.Equal(DatagramFailure.Closed, ex.Failure);
        }

        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task QueueBound_RequestsBeyondIt_FailOverloadedAtOnce()
    {
        const int Count = 40;
        const int Bound = 5;
        using var dir = new TempSocketDirectory();
        using var backend = new ManualBackend(dir.Socket("backend"));
        var time = new FakeTimeProvider();
        var client = new DatagramClient(new DatagramClientOptions { BackendPath = backend.Path, SendTimeout = SendTimeout, MaxSendQueueLength = Bound }, time);

        var sends = new Task<DatagramReply>[Count];
        for (var i = 0; i < Count; i++)
        {
            sends[i] = client.SendAsync(Request(client.NextCorrelationId()), Infinite);
        }

        // No time has passed: the failures are the bound's, not a send timeout's.
        var accepted = (int)client.Statistics.RequestsSent;
        var failed = sends.Where(send => send.IsCompleted).ToList();
        Assert.Equal(Count - accepted - Bound, failed.Count);
        Assert.All(failed, send => Assert.Equal(DatagramFailure.BackendOverloaded, Assert.IsType<DatagramException>(send.Exception!.InnerException).Failure));
        Assert.All(sends.Take(accepted + Bound), send => Assert.False(send.IsCompleted));
        Assert.Equal(failed.Count, client.Statistics.SendFailures);

        await client.DisposeAsync();
        Assert.Equal(0, client.PendingCount);
        Assert.Equal(accepted, backend.DrainQueued().Count);
    }

    [Fact]
    public async Task CallerCancelsQueuedRequest_OperationCanceled_AndItIsNeverSent()
    {
        using var dir = new TempSocketDirectory();
        using var backend = new ManualBackend(dir.Socket("backend"));
        var time = new FakeTimeProvider();
        await using var client = Client(backend.Path, time);

        var before = new List<Task<DatagramReply>>();
        for (var i = 0; i < 20; i++)
        {
            before.Add(client.SendAsync(Request(client.NextCorrelationId()), Infinite));
        }

        using var cts = new CancellationTokenSource();
        var victimId = client.NextCorrelationId();
        var victim = client.SendAsync(Request(victimId), Infinite, cts.Token);
        var lastId = client.NextCorrelationId();
        var last = client.SendAsync(Request(lastId), Infinite);
        Assert.False(victim.IsCompleted);

        await cts.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => victim.WaitAsync(HangGuard));

        // The backend reads everything, in order, up to the last request: the cancelled one is not among it.
        var seen = new List<ulong>();
        while (seen.Count == 0 || seen[^1] != lastId)
        {
            var (header, sender) = await backend.ReceiveAsync();
            seen.Add(header.CorrelationId);
            await backend.ReplyAsync(header, sender);
        }

        Assert.DoesNotContain(victimId, seen);
        Assert.Equal(before.Count + 1, seen.Count);
        foreach (var send in before.Append(last))
        {
            using var reply = await send.WaitAsync(HangGuard);
        }

        Assert.Equal(0, client.Statistics.SendFailures);
        Assert.Equal(before.Count + 1, client.Statistics.RequestsSent);
        Assert.Equal(0, client.PendingCount);
    }

    [Fact]
    public async Task FragmentedRequestBehindAFullQueue_IsSentWholeAndContiguous()
    {
        using var dir = new TempSocketDirectory();
        using var backend = new ManualBackend(dir.Socket("backend"));
        await using var client = Client(backend.Path, new FakeTimeProvider());

        var small = new List<Task<DatagramReply>>();
        for (var i = 0; i < 15; i++)
        {
            small.Add(client.SendAsync(Request(client.NextCorrelationId()), Infinite));
        }

        var bigId = client.NextCorrelationId();
        var body = new byte[(3 * ProtocolConstants.MaxFragmentData) + 100];
        Random.Shared.NextBytes(body);
        var big = client.SendAsync(Request(bigId, body), Infinite);
        var after = new List<Task<DatagramReply>>();
        for (var i = 0; i < 15; i++)
        {
            after.Add(client.SendAsync(Request(client.NextCorrelationId()), Infinite));
        }

        var order = new List<(ulong Id, uint Offset, bool Fragment)>();
        while (order.Count < 15 + 4 + 15)
        {
            var (header, sender) = await backend.ReceiveAsync();
            order.Add((header.CorrelationId, header.IsFragment ? backend.LastFragmentOffset : 0, header.IsFragment));
            if (!header.IsFragment)
            {
                await backend.ReplyAsync(header, sender);
            }
        }

        var first = order.FindIndex(d => d.Id == bigId);
        Assert.Equal(
            [0u, (uint)ProtocolConstants.MaxFragmentData, 2u * ProtocolConstants.MaxFragmentData, 3u * ProtocolConstants.MaxFragmentData],
            order.Skip(first).Take(4).Select(d => { Assert.Equal(bigId, d.Id); Assert.True(d.Fragment); return d.Offset; }));
        Assert.Equal(15, first);
        Assert.Equal(4, order.Count(d => d.Id == bigId));
        foreach (var send in small.Concat(after))
        {
            using var reply = await send.WaitAsync(HangGuard);
        }

        Assert.False(big.IsCompleted); // The test backend never answers it.
        // The 30 answered requests were counted before their replies completed them; the big request's count is
        // taken by the send-queue loop once its last fragment is out, which may still be running here.
        Assert.InRange(client.Statistics.RequestsSent, 30, 31);
    }

    private static DatagramClient Client(string backendPath, TimeProvider time) =>
        new(new DatagramClientOptions { BackendPath = backendPath, SendTimeout = SendTimeout }, time);

    private static byte[] Request(ulong correlationId, byte[]? body = null)
    {
        using var writer = new FrameWriter();
        writer.BeginRequest(correlationId, 1, 0, "GET", "/n");
        writer.WriteBody(body ?? []);
        return writer.Complete().ToArray();
    }

    /// <summary>A backend socket the test reads one datagram at a time (nothing is read unless the test asks).</summary>
    private sealed class ManualBackend : IDisposable
    {
        private readonly byte[] _buffer = new byte[ProtocolConstants.MaxDatagram + 1];
        private readonly Socket _socket;

        public ManualBackend(string path)
        {
            Path = path;
            _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            _socket.Bind(new UnixDomainSocketEndPoint(path));
        }

        public string Path { get; }

        public uint LastFragmentOffset { get; private set; }

        public async Task<(FrameHeader Header, SocketAddress Sender)> ReceiveAsync()
        {
            var sender = new SocketAddress(AddressFamily.Unix, UnixAddress.MaxSize);
            using var guard = new CancellationTokenSource(HangGuard);
            var received = await _socket.ReceiveFromAsync(_buffer.AsMemory(), SocketFlags.None, sender, guard.Token);
            var header = FrameHeader.ReadDatagram(_buffer.AsSpan(0, received));
            LastFragmentOffset = header.IsFragment ? FrameHeader.ReadFragmentOffset(_buffer.AsSpan(0, received)) : 0;

            // Sending uses the whole buffer of a SocketAddress, not just Size: copy it to its exact length.
            var exact = new SocketAddress(AddressFamily.Unix, sender.Size);
            sender.Buffer.Span[..sender.Size].CopyTo(exact.Buffer.Span);
            return (header, exact);
        }

        public async Task ReplyAsync(FrameHeader request, SocketAddress sender)
        {
            using var writer = new FrameWriter();
            writer.BeginResponse(request.CorrelationId, request.Attempt, 200);
            writer.Complete();
            await DatagramSender.SendMessageAsync(_socket, writer.WrittenMemory, sender, CancellationToken.None).AsTask().WaitAsync(HangGuard);
        }

        /// <summary>Reads, without waiting, every datagram in the socket's queue; returns their correlation IDs.</summary>
        public List<ulong> DrainQueued()
        {
            var ids = new List<ulong>();
            _socket.Blocking = false;
            try
            {
                while (true)
                {
                    var received = _socket.Receive(_buffer);
                    ids.Add(FrameHeader.ReadDatagram(_buffer.AsSpan(0, received)).CorrelationId);
                }
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.WouldBlock)
            {
                return ids;
            }
            finally
            {
                _socket.Blocking = true;
            }
        }

        public void Dispose() => _socket.Dispose();
    }
}
