using System.Text;
using Gateway.Ipc.Transport;

namespace Gateway.Ipc.Tests.Transport;

public class UnixAddressTests
{
    private static byte[] Address(string path, int trailingZeros = 0) =>
        [1, 0, .. Encoding.UTF8.GetBytes(path), .. new byte[trailingZeros]];

    [Theory]
    [InlineData(0, 1)] // bound without / with the terminator
    [InlineData(1, 0)]
    [InlineData(0, 80)] // C: bind(fd, &addr, sizeof addr)
    public void SameAddress_PathWithDifferentTerminators_IsSame(int zerosA, int zerosB)
    {
        Assert.True(UnixAddress.SameAddress(Address("/run/b.sock", zerosA), Address("/run/b.sock", zerosB)));
    }

    [Fact]
    public void SameAddress_DifferentPaths_IsNotSame()
    {
        Assert.False(UnixAddress.SameAddress(Address("/run/b.sock", 1), Address("/run/c.sock", 1)));
        Assert.False(UnixAddress.SameAddress(Address("/run/b.sock"), Address("/run/b.sock2")));
    }

    [Fact]
    public void SameAddress_AbstractNames_ComparedWhole()
    {
        Assert.True(UnixAddress.SameAddress(Address("\0gw-1"), Address("\0gw-1")));
        Assert.False(UnixAddress.SameAddress(Address("\0gw-1"), Address("\0gw-1", 1)));
        Assert.False(UnixAddress.SameAddress(Address("\0gw-1"), Address("/gw-1")));
    }
}
