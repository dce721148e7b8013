using System.Net;
using System.Net.Sockets;
using System.Text;
using Gateway.Routing;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Tests.Raw;

/// <summary>Unmodified recvfrom/sendto daemons behind the gateway (issue 4).</summary>
public class RawModeTests
{
    // Generous budgets: a single-threaded daemon under a burst on a loaded 2-core CI machine is slow, not wrong.
    private static Dictionary<string, string?> RawRoute(string socketPath, string? contentType = "text/plain", string? timeout = null) => new()
    {
        ["Gateway:Backends:raw:Mode"] = "Raw",
        ["Gateway:Backends:raw:Instances:0"] = socketPath,
        ["Gateway:Backends:raw:Timeout"] = timeout ?? "00:01:00",
        ["Gateway:Backends:raw:SendTimeout"] = "00:00:30",
        ["Gateway:Routes:upper:Path"] = "/upper",
        ["Gateway:Routes:upper:Methods:0"] = "POST",
        ["Gateway:Routes:upper:Backend"] = "raw",
        ["Gateway:Routes:upper:ContentType"] = contentType,
    };

    [Fact]
    public async Task PythonSocketServer_Post_ReturnsItsDatagramAsBody()
    {
        using var dir = new TempSocketDirectory();
        await using var server = await RawServers.StartPythonAsync(dir.Socket("py.sock"));
        await using var factory = new GatewayFactory(dir, RawRoute(dir.Socket("py.sock")));
        using var client = factory.CreateClient();

        using var response = await client.PostAsync("/upper", new StringContent("hello raw"));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("text/plain", response.Content.Headers.ContentType?.MediaType);
        Assert.Equal("HELLO RAW", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task CServer_250ConcurrentRequests_EachGetsItsOwnReply()
    {
        using var dir = new TempSocketDirectory();
        await using var server = await RawServers.StartCAsync(dir.Socket("c.sock"));
        await using var factory = new GatewayFactory(dir, RawRoute(dir.Socket("c.sock")));
        using var client = factory.CreateClient();

        var replies = await Task.WhenAll(Enumerable.Range(0, 250).Select(async i =>
        {
            using var response = await client.PostAsync("/upper", new StringContent($"request number {i} from client"));
            return (i, response.StatusCode, Body: await response.Content.ReadAsStringAsync());
        }));

        Assert.All(replies, r =>
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal($"REQUEST NUMBER {r.i} FROM CLIENT", r.Body);
        });
    }

    [Fact]
    public async Task PythonSocketServer_300ConcurrentBinaryRequests_EachGetsItsOwnReply()
    {
        using var dir = new TempSocketDirectory();
        await using var server = await RawServers.StartPythonAsync(dir.Socket("py.sock"));
        await using var factory = new GatewayFactory(dir, RawRoute(dir.Socket("py.sock"), contentType: null));
        using var client = factory.CreateClient();

        var replies = await Task.WhenAll(Enumerable.Range(0, 300).Select(async i =>
        {
            var body = new byte[1 + (i * 37 % 5000)];
            new Random(i).NextBytes(body);
            using var response = await client.PostAsync("/upper", new ByteArrayContent(body));
            return (Expected: Upper(body), response.StatusCode, response.Content.Headers.ContentType?.MediaType, Body: await response.Content.ReadAsByteArrayAsync());
        }));

        Assert.All(replies, r =>
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal("application/octet-stream", r.MediaType);
            Assert.Equal(r.Expected, r.Body);
        });
    }

    [Fact]
    public async Task BodyLargerThanOneDatagram_Is413WithTheLimit()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, RawRoute(dir.Socket("none.sock")));
        using var client = factory.CreateClient();

        using var response = await client.PostAsync("/upper", new ByteArrayContent(new byte[212_961]));

        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
        var problem = await response.Content.ReadAsStringAsync();
        Assert.Contains("urn:gateway:problem:body-too-large", problem, StringComparison.Ordinal);
        Assert.Contains("212960", problem, StringComparison.Ordinal);
    }

    [Fact]
    public async Task ServerAbsent_Is503WithRetryAfter()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, RawRoute(dir.Socket("absent.sock")));
        using var client = factory.CreateClient();

        using var response = await client.PostAsync("/upper", new StringContent("x"));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.NotNull(response.Headers.RetryAfter);
        Assert.Contains("urn:gateway:problem:backend-absent", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task LateReplyAfterTimeout_NeverReachesTheNextRequest()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("slow.sock");
        using var server = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        server.Bind(new UnixDomainSocketEndPoint(path));
        var time = new FakeTimeProvider();
        await using var factory = new GatewayFactory(dir, RawRoute(path, timeout: "00:00:05"), s => s.AddSingleton<TimeProvider>(time));
        using var client = factory.CreateClient();

        // Request 1 reaches the server, which holds it; the gateway times out.
        var first = client.PostAsync("/upper", new StringContent("first"));
        var buffer = new byte[1024];
        var firstSender = new SocketAddress(AddressFamily.Unix, 110);
        var n = await server.ReceiveFromAsync(buffer, SocketFlags.None, firstSender);
        Assert.Equal("first", Encoding.UTF8.GetString(buffer, 0, n));
        time.Advance(TimeSpan.FromSeconds(6));
        using (var timedOut = await first)
        {
            Assert.Equal(HttpStatusCode.GatewayTimeout, timedOut.StatusCode);
        }

        // The server answers request 1 late: its socket was retired, so the late reply has nowhere to go.
        var late = await Assert.ThrowsAsync<SocketException>(async () => await server.SendToAsync("LATE FIRST"u8.ToArray(), SocketFlags.None, Exact(firstSender)));
        Assert.Equal(SocketError.ConnectionRefused, late.SocketErrorCode);
        var second = client.PostAsync("/upper", new StringContent("second"));
        var secondSender = new SocketAddress(AddressFamily.Unix, 110);
        n = await server.ReceiveFromAsync(buffer, SocketFlags.None, secondSender);
        Assert.Equal("second", Encoding.UTF8.GetString(buffer, 0, n));
        Assert.False(firstSender.Equals(secondSender), "a socket that timed out must not be reused");
        await server.SendToAsync("SECOND"u8.ToArray(), SocketFlags.None, Exact(secondSender));

        using var response = await second;
        Assert.Equal("SECOND", await response.Content.ReadAsStringAsync());
        var instance = factory.Services.GetRequiredService<RouteTableProvider>().Current.Backends["raw"].Instances[0];
        Assert.Equal(1, Interlocked.Read(ref instance.RawClient!.Statistics.RetiredSockets));
        Assert.Equal(1, Interlocked.Read(ref instance.RawClient.Statistics.Timeouts));
    }

    [Fact]
    public async Task ForeignSender_IsDroppedAndTheRealReplyStillArrives()
    {
        using var dir = new TempSocketDirectory();
        var path = dir.Socket("srv.sock");
        using var server = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        server.Bind(new UnixDomainSocketEndPoint(path));
        using var intruder = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        intruder.Bind(new UnixDomainSocketEndPoint(dir.Socket("intruder.sock")));
        await using var factory = new GatewayFactory(dir, RawRoute(path));
        using var client = factory.CreateClient();

        var pending = client.PostAsync("/upper", new StringContent("who"));
        var buffer = new byte[1024];
        var sender = new SocketAddress(AddressFamily.Unix, 110);
        await server.ReceiveFromAsync(buffer, SocketFlags.None, sender);
        await intruder.SendToAsync("SPOOFED"u8.ToArray(), SocketFlags.None, Exact(sender));
        await server.SendToAsync("WHO"u8.ToArray(), SocketFlags.None, Exact(sender));

        using var response = await pending;
        Assert.Equal("WHO", await response.Content.ReadAsStringAsync());
        var instance = factory.Services.GetRequiredService<RouteTableProvider>().Current.Backends["raw"].Instances[0];
        Assert.Equal(1, Interlocked.Read(ref instance.RawClient!.Statistics.SpoofedDatagrams));
    }

    /// <summary>
    /// A received SocketAddress copied to its exact size: .NET's SendToAsync(SocketAddress) sends the whole
    /// buffer, which turns an abstract name into a different one (found while writing these tests).
    /// </summary>
    private static SocketAddress Exact(SocketAddress received)
    {
        var exact = new SocketAddress(AddressFamily.Unix, received.Size);
        received.Buffer.Span[..received.Size].CopyTo(exact.Buffer.Span);
        return exact;
    }

    private static byte[] Upper(byte[] body) => body.Select(b => b is >= (byte)'a' and <= (byte)'z' ? (byte)(b - 32) : b).ToArray();
}
