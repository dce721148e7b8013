using System.Net;
using System.Net.Sockets;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Transport;
using Gateway.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Ipc.Tests.Client;

/// <summary>
/// Issue 20 (a): the client waits for room in a full backend queue with the kernel's peer wake (a socket connected to the
/// backend, <see cref="PeerWaker"/>), not with retries; it follows a restarted backend; and a backend that dies with
/// requests in its queue ends every request definitely, with nothing sent twice. Real sockets; the backends here are
/// read datagram by datagram by the test; reply timeouts run on a <see cref="FakeTimeProvider"/>.
/// </summary>
public sealed class PeerWakeSendTests
{
    private const int Count = 30;
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);
    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(10);

    [Fact]
    public async Task FullBackendQueue_SenderSleepsUntilTheBackendReads_EveryWakeFindsRoom_AndEveryRequestIsAnsweredOnce()
    {
        using var dir = new TempSocketDirectory();
        using var backend = new SteppedBackend(dir.Socket("b"));
        var time = new FakeTimeProvider();
        await using var client = Client(backend.Path, time);

        var sends = SendMany(client, Count);

        // The backend reads nothing: its queue fills and the rest wait in the client, the sender asleep in poll().
        await Until(() => client.Statistics.FullQueueWaits > 0);
        Assert.InRange(client.Statistics.RequestsSent, 1, Count - 1);
        Assert.Equal(0, client.Statistics.RoomWakes);

        var seen = new HashSet<ulong>();
        for (var i = 0; i < Count; i++)
        {
            var (header, sender) = await backend.ReceiveRequestAsync(client.LocalAddress);
            Assert.True(seen.Add(header.CorrelationId), $"Request {header.CorrelationId} arrived twice.");
            await backend.ReplyAsync(header, sender);
        }

        foreach (var send in sends)
        {
            using var reply = await send.WaitAsync(HangGuard);
            Assert.Equal(200, reply.Response.Status);
        }

        // Reads woke the sender (a timed wait never counts as a room wake), and every wake found room.
        Assert.True(client.Statistics.RoomWakes > 0);
        Assert.Equal(0, client.Statistics.EmptyWakes);
        Assert.Equal(Count, client.Statistics.RequestsSent);
        Assert.Equal(0, client.Statistics.SendFailures);
    }

    [Fact]
    public async Task BackendRestartedWhileRequestsWait_SenderFollowsTheNewSocket_QueuedOnesDeliveredOnce_PurgedOnesTimeOut()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("b");
        var old = new SteppedBackend(path);
        var time = new FakeTimeProvider();
        await using var client = Client(path, time);
        var sends = SendMany(client, Count);
        await Until(() => client.Statistics.FullQueueWaits > 0);
        var inOldQueue = client.Statistics.RequestsSent;

        // The restart: a new socket at the path, its queue full (of someone else's datagrams), then the old one dies
        // with the client's requests still unread in its queue (the kernel purges them).
        File.Delete(path);
        using var restarted = new SteppedBackend(path);
        var fillers = restarted.FillFromAnotherSocket();
        old.Dispose();

        // The waiter watched the dead socket: its wake finds the new queue full, and it reconnects to the new socket.
        await Until(() => client.Statistics.EmptyWakes > 0);

        var seen = new HashSet<ulong>();
        var toReceive = Count - inOldQueue;
        for (var i = 0; i < toReceive; i++)
        {
            var (header, sender) = await restarted.ReceiveRequestAsync(client.LocalAddress);
            Assert.True(seen.Add(header.CorrelationId), $"Request {header.CorrelationId} arrived twice.");
            await restarted.ReplyAsync(header, sender);
        }

        Assert.Equal(fillers, restarted.SkippedFromOthers);
        await Until(() => client.PendingCount == inOldQueue);
        time.Advance(ReplyTimeout);

        var answered = 0;
        var timedOut = 0;
        foreach (var send in sends)
        {
            try
            {
                using var reply = await send.WaitAsync(HangGuard);
                Assert.Equal(200, reply.Response.Status);
                answered++;
            }
            catch (DatagramException ex)
            {
                Assert.Equal(DatagramFailure.Timeout, ex.Failure);
                timedOut++;
            }
        }

        Assert.Equal(toReceive, answered);
        Assert.Equal(inOldQueue, timedOut);
        Assert.Equal(Count, client.Statistics.RequestsSent);
        Assert.Empty(restarted.DrainQueued());
    }

    [Fact]
    public async Task BackendDiesWithRequestsQueued_UnsentOnesFailAbsent_SentOnesTimeOut_NothingIsSentAgain()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("b");
        var dead = new SteppedBackend(path);
        var time = new FakeTimeProvider();
        await using var client = Client(path, time);
        var sends = SendMany(client, Count);
        await Until(() => client.Statistics.FullQueueWaits > 0);
        var inDeadQueue = client.Statistics.RequestsSent;

        // It dies without reading; its socket file stays behind (stale: ECONNREFUSED).
        dead.Dispose();

        // The requests still in the client's queue were never delivered: they fail at once, as absent.
        await Until(() => client.Statistics.SendFailures == Count - inDeadQueue);

        // The ones that were in the dead backend's queue may, for all the client knows, have run: they are never sent
        // again and end with the reply timeout (at most once).
        time.Advance(ReplyTimeout);
        var absent = 0;
        var timedOut = 0;
        foreach (var send in sends)
        {
            var ex = await Assert.ThrowsAsync<DatagramException>(() => send.WaitAsync(HangGuard));
            if (ex.Failure == DatagramFailure.BackendAbsent)
            {
                absent++;
            }
            else
            {
                Assert.Equal(DatagramFailure.Timeout, ex.Failure);
                timedOut++;
            }
        }

        Assert.Equal(Count - inDeadQueue, absent);
        Assert.Equal(inDeadQueue, timedOut);

        // A new backend at the path gets the next request, and nothing of the old ones before it.
        File.Delete(path);
        using var next = new SteppedBackend(path);
        var id = client.NextCorrelationId();
        var send2 = client.SendAsync(Request(id), ReplyTimeout);
        var (header, sender) = await next.ReceiveRequestAsync(client.LocalAddress);
        Assert.Equal(id, header.CorrelationId);
        await next.ReplyAsync(header, sender);
        using (var reply = await send2.WaitAsync(HangGuard))
        {
            Assert.Equal(200, reply.Response.Status);
        }

        Assert.Empty(next.DrainQueued());
        Assert.Equal(inDeadQueue + 1, client.Statistics.RequestsSent);
    }

    private static Task Until(Func<bool> condition) => Eventually.UntilAsync(condition, HangGuard, TimeSpan.FromMilliseconds(5));

    private static DatagramClient Client(string backendPath, TimeProvider time) =>
        new(new DatagramClientOptions { BackendPath = backendPath, SendTimeout = TimeSpan.FromSeconds(5) }, time);

    private static Task<DatagramReply>[] SendMany(DatagramClient client, int count)
    {
        var sends = new Task<DatagramReply>[count];
        for (var i = 0; i < count; i++)
        {
            sends[i] = client.SendAsync(Request(client.NextCorrelationId()), ReplyTimeout);
        }

        return sends;
    }

    private static byte[] Request(ulong correlationId)
    {
        using var writer = new FrameWriter();
        writer.BeginRequest(correlationId, 1, 0, "POST", "/p");
        writer.WriteBody("x"u8);
        return writer.Complete().ToArray();
    }

    /// <summary>
    /// A backend socket the test reads one datagram at a time. Bound through raw address bytes, so disposing it leaves
    /// the socket file behind (as a crashed process does) and never unlinks a newer socket's file at the same path.
    /// </summary>
    private sealed class SteppedBackend : IDisposable
    {
        private readonly byte[] _buffer = new byte[ProtocolConstants.MaxDatagram + 1];
        private readonly Socket _socket;
        private readonly SocketAddress _address;
        private Socket? _filler;

        public SteppedBackend(string path)
        {
            Path = path;
            _address = new UnixDomainSocketEndPoint(path).Serialize();
            _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            _socket.Bind(new SocketAddressEndPoint(_address));
        }

        public string Path { get; }

        public int SkippedFromOthers { get; private set; }

        /// <summary>Fills this socket's queue from another socket until the kernel refuses more; returns how many were queued.</summary>
        public int FillFromAnotherSocket()
        {
            _filler = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified) { Blocking = false };
            _filler.Bind(new UnixDomainSocketEndPoint("\0gw-test-filler-" + Guid.NewGuid().ToString("N")));
            var count = 0;
            while (DatagramSender.TrySend(_filler, "filler"u8, _address))
            {
                count++;
            }

            return count;
        }

        /// <summary>The next request from <paramref name="clientAddress"/>; datagrams from anyone else are read and skipped.</summary>
        public async Task<(FrameHeader Header, SocketAddress Sender)> ReceiveRequestAsync(string clientAddress)
        {
            while (true)
            {
                var sender = new SocketAddress(AddressFamily.Unix, UnixAddress.MaxSize);
                using var guard = new CancellationTokenSource(HangGuard);
                var received = await _socket.ReceiveFromAsync(_buffer.AsMemory(), SocketFlags.None, sender, guard.Token);
                if (UnixAddress.Format(sender.Buffer.Span[..sender.Size]) != clientAddress)
                {
                    SkippedFromOthers++;
                    continue;
                }

                var exact = new SocketAddress(AddressFamily.Unix, sender.Size);
                sender.Buffer.Span[..sender.Size].CopyTo(exact.Buffer.Span);
                return (FrameHeader.ReadDatagram(_buffer.AsSpan(0, received)), exact);
            }
        }

        public async Task ReplyAsync(FrameHeader request, SocketAddress sender)
        {
            using var writer = new FrameWriter();
            writer.BeginResponse(request.CorrelationId, request.Attempt, 200);
            writer.Complete();
            await DatagramSender.SendMessageAsync(_socket, writer.WrittenMemory, sender, CancellationToken.None).AsTask().WaitAsync(HangGuard);
        }

        /// <summary>Reads, without waiting, every datagram left in the queue; returns their count.</summary>
        public List<int> DrainQueued()
        {
            var lengths = new List<int>();
            _socket.Blocking = false;
            try
            {
                while (true)
                {
                    lengths.Add(_socket.Receive(_buffer));
                }
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.WouldBlock)
            {
                return lengths;
            }
            finally
            {
                _socket.Blocking = true;
            }
        }

        public void Dispose()
        {
            _socket.Dispose();
            _filler?.Dispose();
        }
    }
}
