using System.Net.Sockets;
using Xunit;

namespace Gateway.Testing;

/// <summary>Bounded waits for conditions other threads make true, and filling a datagram socket's receive queue.</summary>
public static class Eventually
{
    /// <summary>
    /// Re-checks <paramref name="condition"/> every <paramref name="interval"/> until it holds; fails the test if it still
    /// does not after <paramref name="timeout"/>. A condition, not a duration: a fake clock does not move meanwhile.
    /// </summary>
    public static async Task UntilAsync(Func<bool> condition, TimeSpan timeout, TimeSpan interval)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow >= deadline)
            {
                Assert.True(condition(), $"The condition did not hold within {timeout}.");
                return;
            }

            await Task.Delay(interval);
        }
    }

    /// <summary>Sends one-byte datagrams to <paramref name="path"/> until its receive queue refuses more (fails the test if it never does).</summary>
    public static void FillReceiveQueue(string path)
    {
        using var filler = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified) { Blocking = false };
        var target = new UnixDomainSocketEndPoint(path);
        for (var i = 0; i < 1000; i++)
        {
            try
            {
                filler.SendTo([0], target);
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.WouldBlock)
            {
                return;
            }
        }

        Assert.Fail("The receive queue never filled up.");
    }
}
