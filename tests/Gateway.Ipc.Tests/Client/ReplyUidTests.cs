using System.Net;
using System.Net.Sockets;
using System.Text;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Tests.Transport;
using Gateway.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Ipc.Tests.Client;

/// <summary>DatagramClientOptions.ExpectedReplyUid: replies only from a process of one uid (SCM_CREDENTIALS via recvmsg).</summary>
public class ReplyUidTests
{
    private const int EPerm = 1;
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    private static byte[] Request(ulong correlationId)
    {
        using var writer = new FrameWriter();
        writer.BeginRequest(correlationId, 1, 0, "GET", "/uid");
        return writer.Complete().ToArray();
    }

    private static byte[] Response(ulong correlationId, string body)
    {
        using var writer = new FrameWriter();
        writer.BeginResponse(correlationId, 1, 200);
        writer.WriteBody(Encoding.UTF8.GetBytes(body));
        return writer.Complete().ToArray();
    }

    private static DatagramClient Client(string backendPath, uint? expectedUid, TimeProvider? time = null) =>
        new(new DatagramClientOptions { BackendPath = backendPath, ExpectedReplyUid = expectedUid }, time);

    private static SocketAddress AddressOf(DatagramClient client) =>
        new UnixDomainSocketEndPoint("\0" + client.LocalAddress[1..]).Serialize();

    /// <summary>Waits (bounded) until the client's single receive loop has counted <paramref name="count"/> datagrams.</summary>
    private static void WaitForDatagrams(DatagramClient client, long count) =>
        Assert.True(SpinWait.SpinUntil(() => client.Statistics.DatagramsReceived >= count, HangGuard), "The client did not receive the datagram.");

    [Fact]
    public async Task ExpectedReplyUid_OwnUid_RepliesAndPongsAccepted()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path, Credentials.RealUid);
        var id = client.NextCorrelationId();

        var send = client.SendAsync(Request(id), Timeout.InfiniteTimeSpan);
        var request = await backend.ReceiveAsync();
        await backend.ReplyAsync(request, 200, "mine"u8.ToArray());
        using var reply = await send.WaitAsync(HangGuard);
        var pong = await client.PingAsync(Timeout.InfiniteTimeSpan).WaitAsync(HangGuard);

        Assert.Equal("mine", Encoding.UTF8.GetString(reply.Response.Body));
        Assert.True(pong);
        Assert.Equal(0, client.Statistics.ForeignUidReplies);
        Assert.Equal(2, client.Statistics.RepliesReceived);
        Assert.Equal(2, client.Statistics.DatagramsReceived);
    }

    [Fact]
    public async Task ExpectedReplyUid_OtherUid_ReplyDroppedAsForeignAndRequestTimesOut_ThenOwnUidWorks()
    {
        using var dir = new TempSocketDirectory();
        var time = new FakeTimeProvider();
        var otherUid = Credentials.RealUid == 4242 ? 4243u : 4242u;
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using (var wrong = Client(backend.Path, otherUid, time))
        {
            var send = wrong.SendAsync(Request(wrong.NextCorrelationId()), TimeSpan.FromSeconds(5));
            var request = await backend.ReceiveAsync();
            await backend.ReplyAsync(request, 200, "from a process of the wrong uid"u8.ToArray());
            WaitForDatagrams(wrong, 1);
            var pendingAfterReply = !send.IsCompleted;
            time.Advance(TimeSpan.FromSeconds(5));
            var ex = await Assert.ThrowsAsync<DatagramException>(() => send.WaitAsync(HangGuard));

            Assert.True(pendingAfterReply);
            Assert.Equal(DatagramFailure.Timeout, ex.Failure);
            Assert.Equal(1, wrong.Statistics.ForeignUidReplies);
            Assert.Equal(0, wrong.Statistics.SpoofedReplies);
            Assert.Equal(0, wrong.Statistics.RepliesReceived);
            Assert.Equal(0, wrong.PendingCount);
        }

        await using var right = Client(backend.Path, Credentials.RealUid, time);
        var retry = right.SendAsync(Request(right.NextCorrelationId()), TimeSpan.FromSeconds(5));
        var second = await backend.ReceiveAsync();
        await backend.ReplyAsync(second, 200, "ok"u8.ToArray());
        using var reply = await retry.WaitAsync(HangGuard);

        Assert.Equal("ok", Encoding.UTF8.GetString(reply.Response.Body));
        Assert.Equal(0, right.Statistics.ForeignUidReplies);
    }

    [Fact]
    public async Task ExpectedReplyUid_DatagramFromAnotherAddress_CountedAsSpoofedNotForeign()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path, Credentials.RealUid);
        using var impostor = DatagramSenderTests.BoundSocket(dir.Socket("impostor"));

        await impostor.SendToAsync(Response(1, "spoofed"), SocketFlags.None, AddressOf(client));
        WaitForDatagrams(client, 1);

        Assert.Equal(1, client.Statistics.SpoofedReplies);
        Assert.Equal(0, client.Statistics.ForeignUidReplies);
    }

    /// <summary>
    /// Root may claim any uid in SCM_CREDENTIALS (CAP_SETUID), so as root the test forges a reply from the backend's
    /// own socket with another uid: dropped; and one claiming the expected foreign uid: accepted (the uid is read from
    /// the message). Not root: the kernel refuses to send a forged uid (EPERM), which is what protects the check.
    /// xUnit 2.9 has no dynamic skip, so the non-root run asserts that instead.
    /// </summary>
    [Fact]
    public async Task ForgedCredentials_OnlyRootCanSendThem_AndTheClientChecksTheClaimedUid()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        var ownUid = Credentials.RealUid;
        const uint ForgedUid = 54321;

        if (!Credentials.CanForgeCredentials)
        {
            await using var plain = Client(backend.Path, ownUid);
            Assert.Equal(EPerm, Credentials.SendWithCredentials(backend.Socket, Response(1, "x"), AddressOf(plain), ForgedUid, ForgedUid));
            return;
        }

        await using (var expectsOwn = Client(backend.Path, ownUid))
        {
            var id = expectsOwn.NextCorrelationId();
            var send = expectsOwn.SendAsync(Request(id), Timeout.InfiniteTimeSpan);
            var request = await backend.ReceiveAsync();

            Assert.Equal(0, Credentials.SendWithCredentials(backend.Socket, Response(id, "forged"), AddressOf(expectsOwn), ForgedUid, ForgedUid));
            await backend.ReplyAsync(request, 200, "genuine"u8.ToArray());
            using var reply = await send.WaitAsync(HangGuard);

            Assert.Equal("genuine", Encoding.UTF8.GetString(reply.Response.Body));
            Assert.Equal(1, expectsOwn.Statistics.ForeignUidReplies);
        }

        await using var expectsForged = Client(backend.Path, ForgedUid);
        var forgedId = expectsForged.NextCorrelationId();
        var forgedSend = expectsForged.SendAsync(Request(forgedId), Timeout.InfiniteTimeSpan);
        await backend.ReceiveAsync();
        Assert.Equal(0, Credentials.SendWithCredentials(backend.Socket, Response(forgedId, "claimed"), AddressOf(expectsForged), ForgedUid, ForgedUid));
        using var claimed = await forgedSend.WaitAsync(HangGuard);

        Assert.Equal("claimed", Encoding.UTF8.GetString(claimed.Response.Body));
        Assert.Equal(0, expectsForged.Statistics.ForeignUidReplies);
    }

    [Fact]
    public async Task ExpectedReplyUid_DatagramCarryingAFileDescriptor_DescriptorClosedNotLeaked()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        await using var client = Client(backend.Path, Credentials.RealUid);
        var file = dir.Socket("smuggled.txt");
        await File.WriteAllTextAsync(file, "x");
        using (var handle = File.OpenHandle(file))
        {
            Assert.Equal(0, Credentials.SendWithDescriptor(backend.Socket, Response(1, "with a descriptor"), AddressOf(client), handle));
            WaitForDatagrams(client, 1);
        }

        // recvmsg installed the descriptor in this process; the client must have closed it.
        var open = Directory.GetFiles("/proc/self/fd").Where(fd => ReadLink(fd) == file).ToList();

        Assert.Empty(open);
        Assert.Equal(1, client.Statistics.LateReplies);
    }

    private static string? ReadLink(string path)
    {
        try
        {
            return new FileInfo(path).LinkTarget;
        }
        catch (IOException)
        {
            return null; // closed meanwhile
        }
    }
}
