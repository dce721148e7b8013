using System.Net.Sockets;
using Gateway.Ipc.Transport;
using Gateway.Testing;

namespace Gateway.Ipc.Tests.Backend;

public sealed class UnixSocketFileTests : IDisposable
{
    private readonly TempSocketDirectory _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public void Bind_CreatesMissingDirectory_AndSetsDefaultMode0660()
    {
        var path = Path.Combine(_dir.Path, "sub", "dir", "a.sock");

        using var file = UnixSocketFile.Bind(path, SocketType.Dgram);

        Assert.Equal(path, file.Path);
        Assert.Equal(SocketFileState.Live, UnixSocketFile.Probe(path, SocketType.Dgram));
        Assert.Equal(UnixSocketFile.DefaultFileMode, File.GetUnixFileMode(path));
        Assert.Equal(0b110_110_000, (int)File.GetUnixFileMode(path));
    }

    [Fact]
    public void Bind_WithMode_SetsIt()
    {
        var path = _dir.Socket("m.sock");

        using var file = UnixSocketFile.Bind(path, SocketType.Dgram, UnixSocketFile.ParseFileMode("0600"));

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(path));
    }

    [Fact]
    public void Bind_OnStaleSocketFile_UnlinksAndBinds()
    {
        var path = _dir.Socket("s.sock");
        UnixSocketFile.Bind(path, SocketType.Dgram).Socket.Dispose(); // the file stays, like after a crash
        Assert.True(File.Exists(path));
        Assert.Equal(SocketFileState.Stale, UnixSocketFile.Probe(path, SocketType.Dgram));

        using var file = UnixSocketFile.Bind(path, SocketType.Dgram);

        Assert.Equal(SocketFileState.Live, UnixSocketFile.Probe(path, SocketType.Dgram));
    }

    [Fact]
    public void Bind_OnLiveSocket_ThrowsNamingThePath_AndLeavesItAlone()
    {
        var path = _dir.Socket("l.sock");
        using var owner = UnixSocketFile.Bind(path, SocketType.Dgram);

        var ex = Assert.Throws<SocketFileException>(() => UnixSocketFile.Bind(path, SocketType.Dgram));

        Assert.Equal(path, ex.Path);
        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
        Assert.Contains("is in use (by this or another process)", ex.Message, StringComparison.Ordinal);
        Assert.Equal(SocketFileState.Live, UnixSocketFile.Probe(path, SocketType.Dgram));
    }

    [Fact]
    public void Bind_OnRegularFile_ThrowsNamingThePath_AndKeepsTheFile()
    {
        var path = _dir.Socket("regular");
        File.WriteAllText(path, "precious");

        var ex = Assert.Throws<SocketFileException>(() => UnixSocketFile.Bind(path, SocketType.Dgram));

        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
        Assert.Contains("not a socket", ex.Message, StringComparison.Ordinal);
        Assert.Equal("precious", File.ReadAllText(path));
    }

    [Fact]
    public void Bind_OnDirectory_ThrowsNamingThePath()
    {
        var path = _dir.Socket("adir");
        Directory.CreateDirectory(path);

        var ex = Assert.Throws<SocketFileException>(() => UnixSocketFile.Bind(path, SocketType.Dgram));

        Assert.Contains(path, ex.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Dispose_RemovesOwnSocketFile_AndIsIdempotent()
    {
        var path = _dir.Socket("d.sock");
        var file = UnixSocketFile.Bind(path, SocketType.Dgram);

        file.Dispose();
        file.Dispose();

        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Dispose_LeavesASuccessorsSocketFileAtTheSamePath()
    {
        var path = _dir.Socket("succ.sock");
        var first = UnixSocketFile.Bind(path, SocketType.Dgram);
        File.Delete(path);
        using var successor = UnixSocketFile.Bind(path, SocketType.Dgram);

        first.Dispose();

        Assert.True(File.Exists(path));
        Assert.Equal(SocketFileState.Live, UnixSocketFile.Probe(path, SocketType.Dgram));
    }

    [Fact]
    public void PlainSocketDispose_UnlinksASuccessorsFile_WhichIsWhyBindAvoidsIt()
    {
        // The .NET behaviour UnixSocketFile works around (PLATFORM.md); if this ever fails, .NET fixed it.
        var path = _dir.Socket("plain.sock");
        var plain = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        plain.Bind(new UnixDomainSocketEndPoint(path));
        File.Delete(path);
        using var successor = UnixSocketFile.Bind(path, SocketType.Dgram);

        plain.Dispose();

        Assert.False(File.Exists(path));
    }

    [Fact]
    public void Probe_ReportsAbsentStaleAndLive_ForDatagramSockets()
    {
        var path = _dir.Socket("p.sock");
        Assert.Equal(SocketFileState.Absent, UnixSocketFile.Probe(path, SocketType.Dgram));

        var file = UnixSocketFile.Bind(path, SocketType.Dgram);
        Assert.Equal(SocketFileState.Live, UnixSocketFile.Probe(path, SocketType.Dgram));

        file.Socket.Dispose();
        Assert.Equal(SocketFileState.Stale, UnixSocketFile.Probe(path, SocketType.Dgram));
    }

    [Fact]
    public async Task ProbeAsync_ReportsLiveAndStale_ForStreamListeners()
    {
        var path = _dir.Socket("k.sock");
        Assert.Equal(SocketFileState.Absent, await UnixSocketFile.ProbeAsync(path, SocketType.Stream));
        var file = UnixSocketFile.Bind(path, SocketType.Stream);
        file.Socket.Listen();

        Assert.Equal(SocketFileState.Live, await UnixSocketFile.ProbeAsync(path, SocketType.Stream));

        file.Socket.Dispose();
        Assert.Equal(SocketFileState.Stale, await UnixSocketFile.ProbeAsync(path, SocketType.Stream));
        file.Dispose();
        Assert.False(File.Exists(path));
    }

    [Fact]
    public async Task Probe_WithTheOtherSocketType_StillReportsLive()
    {
        var path = _dir.Socket("t.sock");
        using var file = UnixSocketFile.Bind(path, SocketType.Dgram);

        Assert.Equal(SocketFileState.Live, await UnixSocketFile.ProbeAsync(path, SocketType.Stream));
        Assert.Throws<SocketFileException>(() => UnixSocketFile.Bind(path, SocketType.Stream));
    }

    [Fact]
    public async Task ProbeAsync_OnRegularFile_Throws()
    {
        var path = _dir.Socket("f");
        File.WriteAllText(path, "x");

        await Assert.ThrowsAsync<SocketFileException>(() => UnixSocketFile.ProbeAsync(path, SocketType.Stream).AsTask());
    }

    [Theory]
    [InlineData("0660", 0b110_110_000)]
    [InlineData("660", 0b110_110_000)]
    [InlineData("0600", 0b110_000_000)]
    [InlineData("0777", 0b111_111_111)]
    public void ParseFileMode_ParsesOctal(string text, int expected) =>
        Assert.Equal((UnixFileMode)expected, UnixSocketFile.ParseFileMode(text));

    [Theory]
    [InlineData("")]
    [InlineData("66")]
    [InlineData("0680")]
    [InlineData("rw-rw----")]
    [InlineData("00660")]
    public void ParseFileMode_RejectsNonOctal(string text) =>
        Assert.Throws<FormatException>(() => UnixSocketFile.ParseFileMode(text));
}
