using Gateway.Hosting;

namespace Gateway.Tests.Hosting;

/// <summary>The environment the gateway gives the runtime's socket engine before its first socket (issue 20).</summary>
public class SocketCompletionsTests
{
    [Theory]
    [InlineData(null, "1")]
    [InlineData("", "1")]
    [InlineData("0", "0")]
    [InlineData("1", "1")]
    [InlineData("true", "true")]
    public void Inline_IsChosenUnlessTheOperatorSetTheVariable(string? current, string expected) =>
        Assert.Equal(expected, SocketCompletions.Choose(current));

    [Theory]
    [InlineData(null, true, 1, "1")]
    [InlineData(null, true, 2, "1")] // measured: one epoll thread on 2 cores
    [InlineData(null, true, 3, "1")]
    [InlineData(null, true, 8, "4")]
    [InlineData("", true, 64, "32")]
    [InlineData("3", true, 2, "3")] // the operator's value, whatever the mode
    [InlineData("3", false, 2, "3")]
    [InlineData(null, false, 8, null)] // completions on the pool: the runtime's own default
    public void ThreadCount_IsHalfTheCoresWithInlineCompletions_UnlessTheOperatorSetIt(string? current, bool inline, int processors, string? expected) =>
        Assert.Equal(expected, SocketCompletions.ChooseThreadCount(current, inline, processors));

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    [InlineData("1")]
    [InlineData("16")]
    public void ThreadCount_AWholeNumberOfAtLeastOne_OrUnset_IsAccepted(string? value) =>
        Assert.Null(SocketCompletions.ThreadCountError(value));

    [Theory]
    [InlineData("0")] // the runtime would start no engine and fail every socket operation
    [InlineData("-1")]
    [InlineData("abc")] // the runtime would silently ignore it
    [InlineData("1.5")]
    [InlineData("99999999999")]
    public void ThreadCount_AnythingElse_IsAnErrorNamingTheVariableAndTheValue(string value)
    {
        var error = SocketCompletions.ThreadCountError(value);

        Assert.NotNull(error);
        Assert.Contains($"DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT='{value}'", error, StringComparison.Ordinal);
    }
}
