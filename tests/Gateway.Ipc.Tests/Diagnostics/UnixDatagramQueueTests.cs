using Gateway.Ipc.Diagnostics;
using Gateway.Testing;

namespace Gateway.Ipc.Tests.Diagnostics;

public class UnixDatagramQueueTests
{
    [Theory]
    [InlineData("256\n", 256)]
    [InlineData("10", 10)]
    [InlineData(" 1024 \n", 1024)]
    public void ReadMaxLength_ParsesTheSettingsFile(string content, int expected)
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("max_dgram_qlen");
        File.WriteAllText(path, content);

        Assert.Equal(expected, UnixDatagramQueue.ReadMaxLength(path));
    }

    [Theory]
    [InlineData("")]
    [InlineData("lots")]
    [InlineData("-5")]
    [InlineData("99999999999")]
    public void ReadMaxLength_IsNull_ForAnythingButACount(string content)
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("max_dgram_qlen");
        File.WriteAllText(path, content);

        Assert.Null(UnixDatagramQueue.ReadMaxLength(path));
    }

    [Fact]
    public void ReadMaxLength_IsNull_WhenTheFileIsMissing()
    {
        using var dir = new TempSocketDirectory();

        Assert.Null(UnixDatagramQueue.ReadMaxLength(dir.Socket("absent")));
    }

    [Fact]
    public void ReadMaxLength_ReadsThisMachinesSetting()
    {
        var value = UnixDatagramQueue.ReadMaxLength();

        Assert.NotNull(value);
        Assert.Equal(File.ReadAllText("/proc/sys/net/unix/max_dgram_qlen").Trim(), value.Value.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    [Theory]
    [InlineData(null, false)]
    [InlineData(10, true)]
    [InlineData(63, true)]
    [InlineData(64, false)]
    [InlineData(512, false)]
    public void IsBelowRecommended_OnlyForAKnownValueUnder64(int? value, bool expected) =>
        Assert.Equal(expected, UnixDatagramQueue.IsBelowRecommended(value));
}
