using System.Net.Sockets;
using Gateway.Security;
using Gateway.Testing;
using static Gateway.Tests.Security.ProcessIdentity;

namespace Gateway.Tests.Security;

/// <summary>SO_PEERCRED / SO_PEERGROUPS read from a real connected Unix stream socket.</summary>
public class PeerCredentialsTests
{
    [Fact]
    public async Task TryRead_AcceptedUnixConnection_GivesTheConnectingProcessesCredentials()
    {
        using var dir = new TempSocketDirectory();
        using var listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        listener.Bind(new UnixDomainSocketEndPoint(dir.Socket("s.sock")));
        listener.Listen();
        using var client = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await client.ConnectAsync(new UnixDomainSocketEndPoint(dir.Socket("s.sock")));
        using var accepted = await listener.AcceptAsync();

        var caller = PeerCredentialsFeature.TryRead(accepted);

        Assert.NotNull(caller);
        Assert.Equal(Environment.ProcessId, caller.Pid);
        Assert.Equal(Uid, caller.Uid);
        Assert.Equal(Gid, caller.Gid);
        Assert.Equal(Groups.Order(), caller.Groups.Order());
    }

    [Fact]
    public void TryRead_NotAUnixSocket_GivesNoCredentials()
    {
        using var tcp = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);

        Assert.Null(PeerCredentialsFeature.TryRead(tcp));
    }

    [Theory]
    [InlineData("root", true, 0u)]
    [InlineData("0", true, 0u)]
    [InlineData(" 1234 ", true, 1234u)]
    [InlineData("no-such-user-xyz", false, 0u)]
    [InlineData("-1", false, 0u)]
    [InlineData("", false, 0u)]
    public void UnixIds_ResolveNumbersAndNames(string text, bool resolves, uint expected)
    {
        Assert.Equal(resolves, UnixIds.TryResolveUser(text, out var uid));
        Assert.Equal(resolves, UnixIds.TryResolveGroup(text, out var gid));
        if (resolves)
        {
            Assert.Equal(expected, uid);
            Assert.Equal(expected, gid);
        }
    }

    [Fact]
    public void CallerRule_SupplementaryGroup_Allows_UnknownCallerNever()
    {
        var rule = CallerRule.Create("Gateway:Routes:r", ["1"], ["2000"])!;

        Assert.True(rule.Allows(new FakeCaller(1, 50, [])));
        Assert.True(rule.Allows(new FakeCaller(7, 2000, [])));
        Assert.True(rule.Allows(new FakeCaller(7, 50, [10, 2000])));
        Assert.False(rule.Allows(new FakeCaller(7, 50, [10, 20])));
        Assert.False(rule.Allows(null));
        Assert.Equal("Gateway:Routes:r:AllowedUids / Gateway:Routes:r:AllowedGids", rule.Name);
        Assert.Null(CallerRule.Create("Gateway:Routes:r", [], []));
    }

    private sealed record FakeCaller(uint Uid, uint Gid, IReadOnlyList<uint> Groups) : IPeerCredentialsFeature
    {
        public int Pid => 1;
    }
}
