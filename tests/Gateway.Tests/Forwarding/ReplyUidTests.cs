using System.Net;
using System.Net.Sockets;
using System.Text;
using Gateway.Ipc.Backend;
using Gateway.Routing;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Tests.Forwarding;

/// <summary>Gateway:Backends:&lt;name&gt;:ReplyUid: replies accepted only from a process of that uid.</summary>
public class ReplyUidTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task ReplyUid_OtherUid_ReplyDroppedAs504_SameBackendWithOwnUidAnswers()
    {
        using var dir = new TempSocketDirectory();
        var handled = 0;
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) =>
        {
            Interlocked.Increment(ref handled);
            return ValueTask.FromResult(BackendResponse.Text("answered"));
        });
        var otherUid = Credentials.RealUid == 4242 ? 4243u : 4242u;
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        var settings = new Dictionary<string, string?>
        {
            // Two backends on the same socket: one expects another uid, one expects ours.
            ["Gateway:Backends:wrong:Instances:0"] = backend.SocketPath,
            ["Gateway:Backends:wrong:ReplyUid"] = otherUid.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Gateway:Backends:wrong:Timeout"] = "00:00:03",
            ["Gateway:Backends:wrong:Retry:MaxAttempts"] = "1",
            ["Gateway:Backends:wrong:HealthCheck:Timeout"] = "00:01:00", // its PONGs are dropped too
            ["Gateway:Backends:right:Instances:0"] = backend.SocketPath,
            ["Gateway:Backends:right:ReplyUid"] = Credentials.RealUid.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Gateway:Routes:wrong:Path"] = "/wrong",
            ["Gateway:Routes:wrong:Backend"] = "wrong",
            ["Gateway:Routes:right:Path"] = "/right",
            ["Gateway:Routes:right:Backend"] = "right",
        };
        await using var factory = new GatewayFactory(dir, settings, s => s.AddSingleton<TimeProvider>(time));
        using var client = factory.CreateClient();
        var wrong = factory.Services.GetRequiredService<RouteTableProvider>().Current.Backends["wrong"].Instances[0].Client!;

        var pending = client.GetAsync("/wrong");
        // Dropped: the reply to the request and the PONG of the start-up health probe (its 1-minute timeout keeps the
        // instance in rotation and the prober from pinging again while the test runs).
        Assert.True(SpinWait.SpinUntil(() => Volatile.Read(ref handled) == 1 && wrong.Statistics.ForeignUidReplies == 2, HangGuard), "the replies were not dropped as foreign");
        var pendingAfterReply = !pending.IsCompleted;
        time.Advance(TimeSpan.FromSeconds(3));
        using var timedOut = await pending.WaitAsync(HangGuard);
        using var answered = await client.GetAsync("/right").WaitAsync(HangGuard);

        Assert.True(pendingAfterReply);
        await ForwardingTests.ReadProblemAsync(timedOut, HttpStatusCode.GatewayTimeout, "timeout");
        Assert.Equal(HttpStatusCode.OK, answered.StatusCode);
        Assert.Equal("answered", await answered.Content.ReadAsStringAsync());
        Assert.Equal(2, Volatile.Read(ref handled));
        Assert.Equal(0, wrong.Statistics.RepliesReceived);
    }

    [Theory]
    [InlineData("-1")]
    [InlineData("4294967295")]
    public void ReplyUid_OutOfRange_StartupErrorNamesTheKey(string value)
    {
        using var dir = new TempSocketDirectory();
        using var factory = new GatewayFactory(dir, new Dictionary<string, string?>
        {
            ["Gateway:Backends:b:Instances:0"] = dir.Socket("b.sock"),
            ["Gateway:Backends:b:ReplyUid"] = value,
            ["Gateway:Routes:api:Path"] = "/api",
            ["Gateway:Routes:api:Backend"] = "b",
        });

        var ex = Assert.Throws<Microsoft.Extensions.Options.OptionsValidationException>(() => factory.CreateClient());

        Assert.Equal([$"Gateway:Backends:b:ReplyUid: {value} is not a uid (0–4294967294)."], ex.Failures);
    }

    [Fact]
    public void ReplyDirectoryMode_IsOwnerOnlyPlusSearchForWhoMayWriteTheSockets()
    {
        const UnixFileMode Owner = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute;

        Assert.Equal(Owner, RouteTableProvider.ReplyDirectoryMode(UnixFileMode.UserRead | UnixFileMode.UserWrite));
        Assert.Equal(Owner | UnixFileMode.GroupExecute, RouteTableProvider.ReplyDirectoryMode(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite));
        Assert.Equal(Owner | UnixFileMode.GroupExecute | UnixFileMode.OtherExecute, RouteTableProvider.ReplyDirectoryMode((UnixFileMode)0b110_110_110));
    }

    /// <summary>
    /// Raw mode: the exchange socket peeks, then reads the reply with recvmsg. As root the test also forges a reply
    /// with another uid from the server's own socket first: it is dropped and the genuine one answers (xUnit 2.9 has
    /// no dynamic skip; not root, the kernel refuses the forgery with EPERM, asserted instead).
    /// </summary>
    [Fact]
    public async Task RawBackend_ReplyUidOwnUid_GenuineReplyAccepted_ForgedUidDropped()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("srv.sock");
        using var server = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        server.Bind(new UnixDomainSocketEndPoint(path));
        await using var factory = new GatewayFactory(dir, new Dictionary<string, string?>
        {
            ["Gateway:Backends:raw:Mode"] = "Raw",
            ["Gateway:Backends:raw:Instances:0"] = path,
            ["Gateway:Backends:raw:ReplyUid"] = Credentials.RealUid.ToString(System.Globalization.CultureInfo.InvariantCulture),
            ["Gateway:Routes:upper:Path"] = "/upper",
            ["Gateway:Routes:upper:Backend"] = "raw",
        });
        using var client = factory.CreateClient();

        var pending = client.PostAsync("/upper", new StringContent("who"));
        var buffer = new byte[1024];
        var sender = new SocketAddress(AddressFamily.Unix, 110);
        await server.ReceiveFromAsync(buffer, SocketFlags.None, sender).AsTask().WaitAsync(HangGuard);
        var forged = Credentials.SendWithCredentials(server, "FORGED"u8, sender, 54321, 54321);
        await server.SendToAsync("WHO"u8.ToArray(), SocketFlags.None, Exact(sender));
        using var response = await pending.WaitAsync(HangGuard);

        Assert.Equal("WHO", await response.Content.ReadAsStringAsync());
        var statistics = factory.Services.GetRequiredService<RouteTableProvider>().Current.Backends["raw"].Instances[0].RawClient!.Statistics;
        if (Credentials.CanForgeCredentials)
        {
            Assert.Equal(0, forged);
            Assert.Equal(1, Interlocked.Read(ref statistics.ForeignUidDatagrams));
        }
        else
        {
            Assert.Equal(1, forged); // EPERM
            Assert.Equal(0, Interlocked.Read(ref statistics.ForeignUidDatagrams));
        }

        Assert.Equal(Encoding.ASCII.GetBytes("who"), buffer[..3]);
    }

    /// <summary>SendToAsync sends the whole SocketAddress buffer: trim it to the received size (an abstract name is compared whole).</summary>
    private static SocketAddress Exact(SocketAddress received)
    {
        var exact = new SocketAddress(AddressFamily.Unix, received.Size);
        received.Buffer.Span[..received.Size].CopyTo(exact.Buffer.Span);
        return exact;
    }
}
