using System.Net;
using System.Text;
using System.Text.Json;
using Gateway.Diagnostics.Capture;
using Gateway.Ipc.Backend;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Tests.Apis;

/// <summary>
/// <c>GET /admin/capture</c> through a real gateway on its Unix socket, with two C# backends on real datagram sockets:
/// what a capture shows, what its filters keep out, how it ends, who may use it, and that a reader that does not read
/// loses events (counted) without holding up forwarding.
/// </summary>
public class CaptureTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(60);

    private static Dictionary<string, string?> TwoBackends(string a, string b) => new()
    {
        ["Gateway:Backends:a:Instances:0"] = a,
        ["Gateway:Backends:b:Instances:0"] = b,
        ["Gateway:Routes:ra:Path"] = "/a/{**rest}",
        ["Gateway:Routes:ra:Backend"] = "a",
        ["Gateway:Routes:rb:Path"] = "/b/{**rest}",
        ["Gateway:Routes:rb:Backend"] = "b",
    };

    private static ValueTask<BackendResponse> Echo(BackendRequest request, CancellationToken token) =>
        ValueTask.FromResult(BackendResponse.Text($"{request.Method} {request.Target}"));

    /// <summary>An open capture: its lines as they arrive.</summary>
    private sealed class Capture : IAsyncDisposable
    {
        private readonly HttpResponseMessage _response;
        private readonly StreamReader _reader;

        private Capture(HttpResponseMessage response, StreamReader reader, JsonElement started)
        {
            _response = response;
            _reader = reader;
            Started = started;
        }

        public JsonElement Started { get; }

        public HttpResponseMessage Response => _response;

        /// <summary>Opens the capture and waits for its first line: from then on it sees every datagram.</summary>
        public static async Task<Capture> OpenAsync(HttpClient client, string query)
        {
            var response = await client.GetAsync("/admin/capture?" + query, HttpCompletionOption.ResponseHeadersRead);
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("application/x-ndjson", response.Content.Headers.ContentType?.MediaType);
            var reader = new StreamReader(await response.Content.ReadAsStreamAsync(), Encoding.UTF8);
            var capture = new Capture(response, reader, default);
            var started = await capture.NextAsync();
            Assert.True(started.TryGetProperty("started", out _), started.ToString());
            return new Capture(response, reader, started);
        }

        public async Task<JsonElement> NextAsync()
        {
            var line = await _reader.ReadLineAsync().WaitAsync(HangGuard);
            Assert.NotNull(line);
            using var json = JsonDocument.Parse(line);
            return json.RootElement.Clone();
        }

        public async ValueTask DisposeAsync()
        {
            _reader.Dispose();
            _response.Dispose();
            await Task.CompletedTask;
        }
    }

    [Fact]
    public async Task Capture_ShowsTheRequestAndItsReply_WithTheCorrelationIdOfTheResponseHeader_ThenEndsAtItsCount()
    {
        using var dir = new TempSocketDirectory();
        await using var a = await TestBackend.StartAsync(dir.Socket("a.sock"), Echo);
        await using var b = await TestBackend.StartAsync(dir.Socket("b.sock"), Echo);
        await using var factory = new GatewayFactory(dir, TwoBackends(a.SocketPath, b.SocketPath)).StartKestrel();
        using var client = factory.CreateGatewayClient();
        await using var capture = await Capture.OpenAsync(client, "backend=a&kind=REQUEST,RESPONSE&count=2");

        // Backend b's traffic comes first: had the filter let it through, it would be the first two lines.
        Assert.Equal("GET /b/other", await client.GetStringAsync("/b/other"));
        using var response = await client.GetAsync("/a/hello?x=1");
        Assert.Equal("GET /a/hello?x=1", await response.Content.ReadAsStringAsync());
        var correlationId = response.Headers.GetValues("X-Correlation-Id").Single();

        var request = await capture.NextAsync();
        Assert.Equal("sent", request.GetProperty("direction").GetString());
        Assert.Equal("REQUEST", request.GetProperty("kind").GetString());
        Assert.Equal("a", request.GetProperty("backend").GetString());
        Assert.Equal(a.SocketPath, request.GetProperty("instance").GetString());
        Assert.Equal("ra", request.GetProperty("route").GetString());
        Assert.Equal(correlationId, request.GetProperty("correlationId").GetString());
        Assert.Matches("^[0-9a-f]{16}$", request.GetProperty("correlationId").GetString());
        Assert.Equal(1, request.GetProperty("attempt").GetInt32());
        Assert.Equal("GET", request.GetProperty("method").GetString());
        Assert.Equal("/a/hello?x=1", request.GetProperty("target").GetString());
        Assert.Equal(0, request.GetProperty("fragmentIndex").GetInt32());
        Assert.Equal(1, request.GetProperty("fragmentCount").GetInt32());
        Assert.True(request.GetProperty("size").GetInt32() > 24);
        Assert.False(request.TryGetProperty("payload", out _));
        Assert.True(DateTimeOffset.TryParse(request.GetProperty("time").GetString(), out _));

        var reply = await capture.NextAsync();
        Assert.Equal("received", reply.GetProperty("direction").GetString());
        Assert.Equal("RESPONSE", reply.GetProperty("kind").GetString());
        Assert.Equal(correlationId, reply.GetProperty("correlationId").GetString());
        Assert.Equal(200, reply.GetProperty("status").GetInt32());

        var end = await capture.NextAsync();
        Assert.Equal("count", end.GetProperty("end").GetString());
        Assert.Equal(2, end.GetProperty("events").GetInt64());
        Assert.Equal(0, end.GetProperty("lost").GetInt64());
        await Eventually.UntilAsync(() => factory.Services.GetRequiredService<CaptureHub>().Tap.Observer is null, HangGuard, TimeSpan.FromMilliseconds(10));
    }

    [Fact]
    public async Task AMessageLargerThanOneDatagram_IsOneLinePerFragment_BothWays()
    {
        using var dir = new TempSocketDirectory();
        await using var a = await TestBackend.StartAsync(dir.Socket("a.sock"), (request, _) =>
            ValueTask.FromResult(new BackendResponse(200, [new("content-type", "application/octet-stream")], request.Body.ToArray())));
        await using var b = await TestBackend.StartAsync(dir.Socket("b.sock"), Echo);
        await using var factory = new GatewayFactory(dir, TwoBackends(a.SocketPath, b.SocketPath)).StartKestrel();
        using var client = factory.CreateGatewayClient();
        await using var capture = await Capture.OpenAsync(client, "backend=a&kind=REQUEST,RESPONSE&count=4");
        var body = new byte[300_000];
        Random.Shared.NextBytes(body);

        using var response = await client.PostAsync("/a/big", new ByteArrayContent(body));
        Assert.Equal(body, await response.Content.ReadAsByteArrayAsync());

        var lines = new List<JsonElement>();
        for (var i = 0; i < 4; i++)
        {
            lines.Add(await capture.NextAsync());
        }

        foreach (var (kind, direction) in new[] { ("REQUEST", "sent"), ("RESPONSE", "received") })
        {
            var fragments = lines.Where(l => l.GetProperty("kind").GetString() == kind).ToList();
            Assert.Equal(2, fragments.Count);
            Assert.All(fragments, f => Assert.Equal(direction, f.GetProperty("direction").GetString()));
            Assert.All(fragments, f => Assert.Equal(2, f.GetProperty("fragmentCount").GetInt32()));
            Assert.Equal([0, 1], fragments.Select(f => f.GetProperty("fragmentIndex").GetInt32()).Order());
            Assert.Equal(Gateway.Ipc.Protocol.ProtocolConstants.MaxDatagram, fragments.Max(f => f.GetProperty("size").GetInt32()));
            Assert.True(fragments.Sum(f => f.GetProperty("size").GetInt32()) > body.Length);
        }

        Assert.Equal("/a/big", lines.Single(l => l.GetProperty("kind").GetString() == "REQUEST" && l.GetProperty("fragmentIndex").GetInt32() == 0).GetProperty("target").GetString());
    }

    [Fact]
    public async Task CorrelationIdAndRouteFilters_KeepOnlyThatRequestsDatagrams()
    {
        using var dir = new TempSocketDirectory();
        var held = new TaskCompletionSource<ulong>(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var a = await TestBackend.StartAsync(dir.Socket("a.sock"), async (request, token) =>
        {
            if (request.Target.EndsWith("/held", StringComparison.Ordinal))
            {
                held.TrySetResult(request.CorrelationId);
                await release.Task.WaitAsync(token);
            }

            return BackendResponse.Text("ok");
        });
        await using var b = await TestBackend.StartAsync(dir.Socket("b.sock"), Echo);
        await using var factory = new GatewayFactory(dir, TwoBackends(a.SocketPath, b.SocketPath)).StartKestrel();
        using var client = factory.CreateGatewayClient();

        var heldRequest = client.GetAsync("/a/held");
        var id = (await held.Task.WaitAsync(HangGuard)).ToString("x16", System.Globalization.CultureInfo.InvariantCulture);
        await using var byId = await Capture.OpenAsync(client, $"correlationId={id}&count=1");
        await using var byRoute = await Capture.OpenAsync(client, "route=rb&count=1&kind=RESPONSE");

        Assert.Equal("ok", await client.GetStringAsync("/a/other")); // same backend, another correlation ID
        Assert.Equal("GET /b/x", await client.GetStringAsync("/b/x"));
        release.SetResult();
        using var heldResponse = await heldRequest;
        Assert.Equal(id, heldResponse.Headers.GetValues("X-Correlation-Id").Single());

        var only = await byId.NextAsync();
        Assert.Equal("RESPONSE", only.GetProperty("kind").GetString());
        Assert.Equal(id, only.GetProperty("correlationId").GetString());
        Assert.Equal("count", (await byId.NextAsync()).GetProperty("end").GetString());

        var routed = await byRoute.NextAsync();
        Assert.Equal("b", routed.GetProperty("backend").GetString());
        Assert.Equal("rb", routed.GetProperty("route").GetString());
    }

    [Fact]
    public async Task Payload_IsIncludedTruncatedToTheAskedLength()
    {
        using var dir = new TempSocketDirectory();
        await using var a = await TestBackend.StartAsync(dir.Socket("a.sock"), Echo);
        await using var b = await TestBackend.StartAsync(dir.Socket("b.sock"), Echo);
        await using var factory = new GatewayFactory(dir, TwoBackends(a.SocketPath, b.SocketPath)).StartKestrel();
        using var client = factory.CreateGatewayClient();
        await using var capture = await Capture.OpenAsync(client, "backend=a&kind=REQUEST&count=1&payload=16");
        Assert.Equal(16, capture.Started.GetProperty("payloadBytes").GetInt32());

        Assert.Equal("GET /a/payload", await client.GetStringAsync("/a/payload"));

        var request = await capture.NextAsync();
        var payload = Convert.FromBase64String(request.GetProperty("payload").GetString()!);
        Assert.Equal(16, payload.Length);
        Assert.True(request.GetProperty("payloadTruncated").GetBoolean());
        // Section 4.1: str8 method, then str16 target.
        Assert.Equal(3, payload[0]);
        Assert.Equal("GET", Encoding.ASCII.GetString(payload, 1, 3));
        Assert.Equal("/a/payl", Encoding.ASCII.GetString(payload, 6, 7)[..7]);
    }

    [Fact]
    public async Task Duration_EndsTheCapture_OnTheInjectedClock()
    {
        using var dir = new TempSocketDirectory();
        await using var a = await TestBackend.StartAsync(dir.Socket("a.sock"), Echo);
        await using var b = await TestBackend.StartAsync(dir.Socket("b.sock"), Echo);
        var time = new FakeTimeProvider(DateTimeOffset.UtcNow);
        await using var factory = new GatewayFactory(dir, TwoBackends(a.SocketPath, b.SocketPath), s => s.AddSingleton<TimeProvider>(time)).StartKestrel();
        using var client = factory.CreateGatewayClient();
        await using var capture = await Capture.OpenAsync(client, "backend=b&kind=REQUEST&duration=30");

        time.Advance(TimeSpan.FromSeconds(30));

        var end = await capture.NextAsync();
        Assert.Equal("duration", end.GetProperty("end").GetString());
        Assert.Equal(0, end.GetProperty("events").GetInt64());
    }

    [Fact]
    public async Task BadParameters_Are400_NamingEachParameter()
    {
        using var dir = new TempSocketDirectory();
        await using var a = await TestBackend.StartAsync(dir.Socket("a.sock"), Echo);
        await using var b = await TestBackend.StartAsync(dir.Socket("b.sock"), Echo);
        await using var factory = new GatewayFactory(dir, TwoBackends(a.SocketPath, b.SocketPath)).StartKestrel();
        using var client = factory.CreateGatewayClient();

        using var response = await client.GetAsync("/admin/capture?backend=nope&kind=FOO&count=0&duration=-1&payload=999999&correlationId=xyz&Backend=a&route=zz&instance=/no.sock&format=xml");

        Assert.Equal(HttpStatusCode.BadRequest, response.StatusCode);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        using var problem = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("urn:gateway:problem:bad-capture-request", problem.RootElement.GetProperty("type").GetString());
        var errors = problem.RootElement.GetProperty("errors").EnumerateArray().Select(e => e.GetString()!).ToList();
        foreach (var expected in new[] { "backend: there is no backend 'nope'; the backends are a, b", "kind: 'FOO'", "count: '0'", "duration: '-1'", "payload: '999999'", "correlationId: 'xyz'", "Unknown parameter 'Backend' (did you mean 'backend'?)", "route: there is no route 'zz'", "instance: no backend has the instance '/no.sock'", "format: 'xml' is not a format" })
        {
            Assert.Contains(errors, e => e.StartsWith(expected, StringComparison.Ordinal) || e.Contains(expected, StringComparison.Ordinal));
        }

        Assert.Null(factory.Services.GetRequiredService<CaptureHub>().Tap.Observer); // nothing was started
    }

    [Fact]
    public async Task Admin_HonoursGatewayAdminAllowedUids_AndRefusesCallersWithoutPeerCredentials()
    {
        using var dir = new TempSocketDirectory();
        await using var a = await TestBackend.StartAsync(dir.Socket("a.sock"), Echo);
        await using var b = await TestBackend.StartAsync(dir.Socket("b.sock"), Echo);
        var settings = TwoBackends(a.SocketPath, b.SocketPath);
        var me = Gateway.Hosting.SocketDirectory.EffectiveUid();
        settings["Gateway:Admin:AllowedUids:0"] = (me + 4242).ToString(System.Globalization.CultureInfo.InvariantCulture); // someone else
        await using var restricted = new GatewayFactory(dir, settings).StartKestrel();
        using var client = restricted.CreateGatewayClient();

        foreach (var path in new[] { "/admin/backends", "/admin/capture?count=1" })
        {
            using var denied = await client.GetAsync(path);
            Assert.Equal(HttpStatusCode.Forbidden, denied.StatusCode);
            using var problem = JsonDocument.Parse(await denied.Content.ReadAsStringAsync());
            Assert.Equal("urn:gateway:problem:caller-not-allowed", problem.RootElement.GetProperty("type").GetString());
            Assert.Equal("Gateway:Admin:AllowedUids", problem.RootElement.GetProperty("rule").GetString());
        }

        Assert.Equal("GET /a/still", await client.GetStringAsync("/a/still")); // the routes are not under the admin list
        Assert.Null(restricted.Services.GetRequiredService<CaptureHub>().Tap.Observer);

        // Default (no list): the gateway's own user may; a caller without peer credentials (TestServer) may not.
        using var dir2 = new TempSocketDirectory();
        await using var open = new GatewayFactory(dir2, TwoBackends(a.SocketPath, b.SocketPath));
        using var inMemory = open.CreateClient();
        using var unknown = await inMemory.GetAsync("/admin/backends");
        Assert.Equal(HttpStatusCode.Forbidden, unknown.StatusCode);
        Assert.Contains("default: the gateway's own user and root", await unknown.Content.ReadAsStringAsync(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task AReaderThatDoesNotRead_LosesEventsWithACount_AndForwardingGoesOn()
    {
        using var dir = new TempSocketDirectory();
        await using var a = await TestBackend.StartAsync(dir.Socket("a.sock"), Echo);
        await using var b = await TestBackend.StartAsync(dir.Socket("b.sock"), Echo);
        await using var factory = new GatewayFactory(dir, TwoBackends(a.SocketPath, b.SocketPath)).StartKestrel();
        using var client = factory.CreateGatewayClient();
        await using var capture = await Capture.OpenAsync(client, "backend=a,b&kind=REQUEST,RESPONSE&count=1000000");

        // Far more events than the session's queue, the gateway's response buffer and the socket hold together.
        const int Requests = 6000;
        var next = 0;
        var workers = Enumerable.Range(0, 8).Select(async _ =>
        {
            while (Interlocked.Increment(ref next) is var i && i <= Requests)
            {
                Assert.Equal($"GET /{(i % 2 == 0 ? "a" : "b")}/{i}", await client.GetStringAsync($"/{(i % 2 == 0 ? "a" : "b")}/{i}"));
            }
        });
        await Task.WhenAll(workers).WaitAsync(HangGuard);

        // Now read: the queued events, then the count of those dropped.
        long events = 0;
        while (true)
        {
            var line = await capture.NextAsync();
            if (line.TryGetProperty("lost", out var lost))
            {
                Assert.True(lost.GetInt64() > 0);
                Assert.True(events > 0 && events + lost.GetInt64() <= 2 * Requests, $"{events} events, {lost} lost");
                break;
            }

            Assert.True(line.TryGetProperty("kind", out _), line.ToString());
            events++;
        }
    }
}

/// <summary>A fact that is skipped, saying why, when tshark is not installed (CI installs it).</summary>
public sealed class TsharkFactAttribute : FactAttribute
{
    public const string ExecutablePath = "/usr/bin/tshark";

    public TsharkFactAttribute()
    {
        if (!File.Exists(ExecutablePath))
        {
            Skip = $"{ExecutablePath} is absent: install Debian's tshark package (apt-get install tshark; .ci/run does) to check the Wireshark dissector.";
        }
    }
}

/// <summary><c>GET /admin/capture?format=pcapng</c>: a file Wireshark opens, and the repository's Lua dissector reads it.</summary>
public class PcapngCaptureTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(60);

    private sealed record Packet(bool Outbound, byte[] Data, string Comment);

    /// <summary>Captures a 300,000-byte POST through the gateway (a fragmented request and reply) as pcapng.</summary>
    private static async Task<(byte[] File, string CorrelationId, string BackendPath)> CaptureAsync(TempSocketDirectory dir)
    {
        await using var a = await TestBackend.StartAsync(dir.Socket("a.sock"), (request, _) =>
            ValueTask.FromResult(new BackendResponse(201, [new("content-type", "application/octet-stream")], request.Body.ToArray())));
        await using var factory = new GatewayFactory(dir, new Dictionary<string, string?>
        {
            ["Gateway:Backends:a:Instances:0"] = a.SocketPath,
            ["Gateway:Routes:ra:Path"] = "/a/{**rest}",
            ["Gateway:Routes:ra:Backend"] = "a",
        }).StartKestrel();
        using var client = factory.CreateGatewayClient();
        using var capture = await client.GetAsync("/admin/capture?format=pcapng&kind=REQUEST,RESPONSE&count=4", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, capture.StatusCode);
        Assert.Equal("application/vnd.tcpdump.pcap", capture.Content.Headers.ContentType?.MediaType);
        var stream = await capture.Content.ReadAsStreamAsync();
        var head = new byte[28];
        await stream.ReadExactlyAsync(head).AsTask().WaitAsync(HangGuard); // the section header: the capture is armed

        using var response = await client.PostAsync("/a/big", new ByteArrayContent(new byte[300_000]));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var rest = new MemoryStream();
        await stream.CopyToAsync(rest).WaitAsync(HangGuard);
        return ([.. head, .. rest.ToArray()], response.Headers.GetValues("X-Correlation-Id").Single(), a.SocketPath);
    }

    private static List<Packet> Parse(byte[] file)
    {
        var packets = new List<Packet>();
        var at = 0;
        var sawInterface = false;
        while (at < file.Length)
        {
            var type = BitConverter.ToUInt32(file, at);
            var length = (int)BitConverter.ToUInt32(file, at + 4);
            Assert.True(length % 4 == 0 && length >= 12 && at + length <= file.Length, $"block at {at}: length {length}");
            Assert.Equal((uint)length, BitConverter.ToUInt32(file, at + length - 4));
            if (at == 0)
            {
                Assert.Equal(0x0A0D0D0Au, type);
                Assert.Equal(0x1A2B3C4Du, BitConverter.ToUInt32(file, 8));
            }
            else if (type == 1)
            {
                Assert.Equal(147, BitConverter.ToUInt16(file, at + 8)); // LINKTYPE_USER0
                sawInterface = true;
            }
            else
            {
                Assert.Equal(6u, type); // Enhanced Packet Block
                var captured = (int)BitConverter.ToUInt32(file, at + 20);
                Assert.Equal(captured, (int)BitConverter.ToUInt32(file, at + 24));
                var data = file.AsSpan(at + 28, captured).ToArray();
                var options = at + 28 + ((captured + 3) & ~3);
                bool? outbound = null;
                var comment = "";
                while (BitConverter.ToUInt16(file, options) is var code and not 0)
                {
                    var size = BitConverter.ToUInt16(file, options + 2);
                    if (code == 2)
                    {
                        outbound = (BitConverter.ToUInt32(file, options + 4) & 3) == 2;
                    }
                    else if (code == 1)
                    {
                        comment = Encoding.UTF8.GetString(file, options + 4, size);
                    }

                    options += 4 + ((size + 3) & ~3);
                }

                packets.Add(new Packet(outbound ?? throw new InvalidOperationException("no epb_flags"), data, comment));
            }

            at += length;
        }

        Assert.True(sawInterface);
        return packets;
    }

    [Fact]
    public async Task Pcapng_HoldsEachWholeDatagramAsItWasOnTheWire_WithItsDirection()
    {
        using var dir = new TempSocketDirectory();
        var (file, correlationId, backendPath) = await CaptureAsync(dir);

        var packets = Parse(file);
        Assert.Equal(4, packets.Count); // request and reply, two fragments each
        foreach (var packet in packets)
        {
            var header = Gateway.Ipc.Protocol.FrameHeader.ReadDatagram(packet.Data);
            Assert.Equal(correlationId, header.CorrelationId.ToString("x16", System.Globalization.CultureInfo.InvariantCulture));
            Assert.True(header.IsFragment);
            Assert.Equal(header.Kind == Gateway.Ipc.Protocol.MessageKind.Request, packet.Outbound);
            Assert.Contains(backendPath, packet.Comment, StringComparison.Ordinal);
        }

        Assert.Equal(Gateway.Ipc.Protocol.ProtocolConstants.MaxDatagram, packets[0].Data.Length);
        Assert.Equal(0u, Gateway.Ipc.Protocol.FrameHeader.ReadFragmentOffset(packets[0].Data));
        Assert.Equal((uint)Gateway.Ipc.Protocol.ProtocolConstants.MaxFragmentData, Gateway.Ipc.Protocol.FrameHeader.ReadFragmentOffset(packets[1].Data));
    }

    [TsharkFact]
    public async Task Pcapng_IsReadByTsharkWithTheRepositorysLuaDissector()
    {
        using var dir = new TempSocketDirectory();
        var (file, correlationId, _) = await CaptureAsync(dir);
        var path = Path.Combine(dir.Path, "capture.pcapng");
        await File.WriteAllBytesAsync(path, file);

        var info = new System.Diagnostics.ProcessStartInfo(TsharkFactAttribute.ExecutablePath) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { "-X", "lua_script:" + RepoPaths.Combine("tools", "wireshark", "gateway-dgram.lua"), "-r", path, "-T", "fields", "-E", "separator=|", "-e", "gd.kind", "-e", "gd.correlation_id", "-e", "gd.fragment_offset", "-e", "gd.method", "-e", "gd.target", "-e", "gd.status" })
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["HOME"] = dir.Path; // no personal Wireshark profile
        using var tshark = System.Diagnostics.Process.Start(info)!;
        var output = tshark.StandardOutput.ReadToEndAsync();
        var error = tshark.StandardError.ReadToEndAsync();
        await tshark.WaitForExitAsync().WaitAsync(HangGuard);
        Assert.True(tshark.ExitCode == 0, await error);

        var rows = (await output).Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.Split('|')).ToList();
        Assert.Equal(4, rows.Count);
        Assert.All(rows, r => Assert.Equal(Convert.ToUInt64(correlationId, 16), Convert.ToUInt64(r[1], 16)));
        Assert.Equal(["1", "1", "2", "2"], rows.Select(r => r[0]).Order());
        var first = rows.Single(r => r[0] == "1" && r[2] == "0");
        Assert.Equal(("POST", "/a/big"), (first[3], first[4]));
        Assert.Equal("201", rows.Single(r => r[0] == "2" && r[2] == "0")[5]);
    }
}
