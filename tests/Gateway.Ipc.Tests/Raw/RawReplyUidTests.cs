using System.Net;
using System.Net.Sockets;
using System.Text;
using Gateway.Ipc.Raw;
using Gateway.Testing;

namespace Gateway.Ipc.Tests.Raw;

/// <summary>RawDatagramClientOptions.ExpectedReplyUid: the exchange socket peeks, then reads the reply with recvmsg.</summary>
public class RawReplyUidTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task ExpectedReplyUid_OwnUid_ReplyAccepted()
    {
        using var dir = new TempSocketDirectory();
        using var server = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        server.Bind(new UnixDomainSocketEndPoint(dir.Socket("srv")));
        using var client = new RawDatagramClient(new RawDatagramClientOptions { ServerPath = dir.Socket("srv"), ExpectedReplyUid = Credentials.RealUid });

        var exchange = client.ExchangeAsync("ping"u8.ToArray(), HangGuard);
        var buffer = new byte[64];
        var sender = new SocketAddress(AddressFamily.Unix, 110);
        var n = await server.ReceiveFromAsync(buffer, SocketFlags.None, sender).AsTask().WaitAsync(HangGuard);
        await server.SendToAsync("PONG"u8.ToArray(), SocketFlags.None, Exact(sender));
        using var reply = await exchange.WaitAsync(HangGuard);

        Assert.Equal("ping", Encoding.ASCII.GetString(buffer, 0, n));
        Assert.Equal("PONG", Encoding.ASCII.GetString(reply.Payload.Span));
        Assert.Equal(0, Interlocked.Read(ref client.Statistics.ForeignUidDatagrams));
    }

    /// <summary>SendToAsync sends the whole SocketAddress buffer: trim it to the received size (an abstract name is compared whole).</summary>
    private static SocketAddress Exact(SocketAddress received)
    {
        var exact = new SocketAddress(AddressFamily.Unix, received.Size);
        received.Buffer.Span[..received.Size].CopyTo(exact.Buffer.Span);
        return exact;
    }
}
