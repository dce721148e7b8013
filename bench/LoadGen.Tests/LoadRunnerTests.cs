using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Gateway.Testing;

namespace Gateway.Bench.LoadGen.Tests;

/// <summary>The whole load generator against a small HTTP/1.1 echo server on a real Unix socket.</summary>
public class LoadRunnerTests
{
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task CountMode_AgainstEcho_AllRepliesCorrect(bool chunked)
    {
        using var dir = new TempSocketDirectory();
        await using var server = EchoServer.Start(dir.Socket("echo.sock"), chunked, corrupt: false);
        var options = Options.Parse(["--socket", dir.Socket("echo.sock"), "--method", "POST", "--body-size", "3000",
            "--unique-body", "--concurrency", "8", "--requests-per-connection", "5", "--timeout", "30"]);

        var result = await new LoadRunner(options).RunAsync();

        Assert.Equal(8, result.ConnectedAtStart);
        Assert.Equal(40, result.Requests);
        Assert.Equal(40, result.Correct);
        Assert.Equal(0, result.TotalErrors);
        Assert.Equal(40, result.Histogram.TotalCount);
        Assert.InRange(result.PeakInFlight, 1, 8);
    }

    [Fact]
    public async Task CountMode_GetEcho_VerifiesMethodAndTarget()
    {
        using var dir = new TempSocketDirectory();
        await using var server = EchoServer.Start(dir.Socket("echo.sock"), chunked: false, corrupt: false);
        var options = Options.Parse(["--socket", dir.Socket("echo.sock"), "--path", "/echo/x?y=1", "--concurrency", "2",
            "--requests-per-connection", "3", "--verify", "all"]);

        var result = await new LoadRunner(options).RunAsync();

        Assert.Equal(6, result.Correct);
        Assert.Equal(0, result.TotalErrors);
    }

    [Fact]
    public async Task WrongEchoBody_IsCountedAsBodyMismatch()
    {
        using var dir = new TempSocketDirectory();
        await using var server = EchoServer.Start(dir.Socket("echo.sock"), chunked: false, corrupt: true);
        var options = Options.Parse(["--socket", dir.Socket("echo.sock"), "--method", "POST", "--body-size", "100",
            "--concurrency", "2", "--requests-per-connection", "2"]);

        var result = await new LoadRunner(options).RunAsync();

        Assert.Equal(0, result.Correct);
        Assert.Equal(4, result.Errors[(int)ErrorKind.BodyMismatch]);
    }

    [Fact]
    public async Task NoListener_ReportsConnectErrors()
    {
        using var dir = new TempSocketDirectory();
        var options = Options.Parse(["--socket", dir.Socket("missing.sock"), "--concurrency", "3", "--requests-per-connection", "1"]);

        var result = await new LoadRunner(options).RunAsync();

        Assert.Equal(0, result.ConnectedAtStart);
        Assert.Equal(3, result.Errors[(int)ErrorKind.Connect]);
    }

    [Fact]
    public void BuildRequest_UniqueBody_StampsConnectionIndexAndLength()
    {
        var options = Options.Parse(["--socket", "/x", "--method", "POST", "--body-size", "64", "--unique-body", "--header", "x-echo-delay-ms: 5"]);

        var (request, expected) = LoadRunner.BuildRequest(options, 123);
        var text = Encoding.ASCII.GetString(request);

        Assert.StartsWith("POST /echo/hello HTTP/1.1\r\n", text, StringComparison.Ordinal);
        Assert.Contains("\r\nContent-Length: 64\r\n", text, StringComparison.Ordinal);
        Assert.Contains("\r\nx-echo-delay-ms: 5\r\n", text, StringComparison.Ordinal);
        Assert.StartsWith("conn=000123;", Encoding.ASCII.GetString(expected), StringComparison.Ordinal);
        Assert.EndsWith(Encoding.ASCII.GetString(expected), text, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("GET", 0, "")] // raw mode: no body, one empty datagram, an empty reply
    [InlineData("POST", 30, "ABCDEFGHIJKLMNOPQRSTUVWXYZABCD")]
    public void BuildRequest_VerifyUpper_ExpectsTheRawEchosUpperCasedBody(string method, int bodySize, string expectedBody)
    {
        var options = Options.Parse(["--socket", "/x", "--path", "/raw/hello", "--method", method, "--body-size", bodySize.ToString(CultureInfo.InvariantCulture), "--verify", "upper"]);

        var (request, expected) = LoadRunner.BuildRequest(options, 0);

        Assert.Equal(expectedBody, Encoding.ASCII.GetString(expected));
        Assert.StartsWith($"{method} /raw/hello HTTP/1.1\r\n", Encoding.ASCII.GetString(request), StringComparison.Ordinal);
        Assert.EndsWith("\r\n\r\n" + expectedBody.ToLowerInvariant(), Encoding.ASCII.GetString(request), StringComparison.Ordinal);
    }

    /// <summary>
    /// A minimal HTTP/1.1 echo (ECHO.md subset: body echoed, empty body → "{METHOD} {target}\n"), optionally
    /// answering with chunked encoding (two chunks, an extension and a trailer) or with a corrupted body.
    /// </summary>
    private sealed class EchoServer : IAsyncDisposable
    {
        private readonly Socket _listener;
        private readonly bool _chunked;
        private readonly bool _corrupt;
        private readonly Task _acceptLoop;
        private readonly List<Socket> _connections = [];

        private EchoServer(string path, bool chunked, bool corrupt)
        {
            _chunked = chunked;
            _corrupt = corrupt;
            _listener = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            _listener.Bind(new UnixDomainSocketEndPoint(path));
            _listener.Listen(64);
            _acceptLoop = AcceptLoopAsync();
        }

        public static EchoServer Start(string path, bool chunked, bool corrupt) => new(path, chunked, corrupt);

        public async ValueTask DisposeAsync()
        {
            _listener.Dispose();
            lock (_connections)
            {
                foreach (var c in _connections)
                {
                    c.Dispose();
                }
            }

            await _acceptLoop;
        }

        private async Task AcceptLoopAsync()
        {
            var serving = new List<Task>();
            try
            {
                while (true)
                {
                    var connection = await _listener.AcceptAsync();
                    lock (_connections)
                    {
                        _connections.Add(connection);
                    }

                    serving.Add(ServeAsync(connection));
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }

            await Task.WhenAll(serving);
        }

        private async Task ServeAsync(Socket socket)
        {
            var buffer = new byte[64 * 1024];
            var filled = 0;
            try
            {
                while (true)
                {
                    int headerEnd;
                    while ((headerEnd = buffer.AsSpan(0, filled).IndexOf("\r\n\r\n"u8)) < 0)
                    {
                        var n = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None);
                        if (n == 0)
                        {
                            return;
                        }

                        filled += n;
                    }

                    var head = Encoding.ASCII.GetString(buffer, 0, headerEnd);
                    var lines = head.Split("\r\n");
                    var requestLine = lines[0].Split(' ');
                    var length = 0;
                    foreach (var line in lines.Skip(1))
                    {
                        if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
                        {
                            length = int.Parse(line["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
                        }
                    }

                    var total = headerEnd + 4 + length;
                    while (filled < total)
                    {
                        var n = await socket.ReceiveAsync(buffer.AsMemory(filled), SocketFlags.None);
                        if (n == 0)
                        {
                            return;
                        }

                        filled += n;
                    }

                    var body = length > 0 ? buffer.AsSpan(headerEnd + 4, length).ToArray() : Encoding.UTF8.GetBytes($"{requestLine[0]} {requestLine[1]}\n");
                    if (_corrupt)
                    {
                        body[^1] ^= 0xff;
                    }

                    buffer.AsSpan(total, filled - total).CopyTo(buffer);
                    filled -= total;
                    await socket.SendAsync(Encode(body), SocketFlags.None);
                }
            }
            catch (Exception e) when (e is SocketException or ObjectDisposedException)
            {
            }
        }

        private byte[] Encode(byte[] body)
        {
            using var ms = new MemoryStream();
            if (_chunked)
            {
                var half = body.Length / 2;
                ms.Write(Encoding.ASCII.GetBytes("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"));
                ms.Write(Encoding.ASCII.GetBytes($"{half:x};ext=1\r\n"));
                ms.Write(body, 0, half);
                ms.Write(Encoding.ASCII.GetBytes($"\r\n{body.Length - half:X}\r\n"));
                ms.Write(body, half, body.Length - half);
                ms.Write(Encoding.ASCII.GetBytes("\r\n0\r\nx-trailer: 1\r\n\r\n"));
            }
            else
            {
                ms.Write(Encoding.ASCII.GetBytes($"HTTP/1.1 200 OK\r\nContent-Length: {body.Length}\r\n\r\n"));
                ms.Write(body);
            }

            return ms.ToArray();
        }
    }
}
