using Gateway.Ipc.Transport;

namespace Gateway.Ipc.Tests.Transport;

public class SecureRandomTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(8)]
    [InlineData(15)]
    [InlineData(33)]
    public void EveryBitOfEveryByte_TakesBothValues(int length)
    {
        // A GUID's fixed version and variant bits must not leak into the output: over 1,000 draws each bit is 0 and 1
        // (a fair bit stays the same 1,000 times with probability 2^-999).
        var ones = new int[length * 8];
        const int draws = 1_000;
        for (var i = 0; i < draws; i++)
        {
            var bytes = SecureRandom.GetBytes(length);
            Assert.Equal(length, bytes.Length);
            for (var bit = 0; bit < ones.Length; bit++)
            {
                ones[bit] += (bytes[bit / 8] >> (bit % 8)) & 1;
            }
        }

        Assert.All(ones, count => Assert.InRange(count, 1, draws - 1));
    }
}
