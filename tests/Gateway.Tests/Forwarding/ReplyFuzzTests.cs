using System.Diagnostics;
using System.Globalization;
using System.Text;
using Gateway.Routing;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Xunit.Abstractions;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// Generated backend replies through a real gateway (Kestrel on a Unix socket) and a scripted backend on a real datagram
/// socket: statuses 100–999, header names and values of any bytes, duplicate and hop-by-hop fields, bodies of 0 to
/// 8,000 bytes, to GET, HEAD and POST. Every response must parse strictly as HTTP/1.1 (<see cref="Http11ResponseParser"/>)
/// and be either the backend's status with its end-to-end headers and body, or — when the reply breaks
/// docs/protocol.md section 4.2 — a 502 <c>malformed-reply</c> problem. Afterwards the gateway still answers and its
/// client has nothing pending.
/// Seed and size: GATEWAY_REPLY_FUZZ_SEED (default 1802) and GATEWAY_REPLY_FUZZ_CASES (default 600); the run stops
/// generating after 60 s whatever the count (a bound on CI time, not an assertion); seed and count are printed.
/// </summary>
public class ReplyFuzzTests(ITestOutputHelper output)
{
    private static readonly string[] CommonNames = ["content-type", "x-a", "x-dup", "cache-control", "set-cookie", "etag", "location", "date", "server", "vary", "content-encoding"];

    private static readonly string[] DroppedNames = ["connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate", "content-length"];

    private const string TChars = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    private static readonly string[] Methods = ["GET", "GET", "HEAD", "POST"];

    private sealed record Case(string Method, int Status, List<(byte[] Name, byte[] Value)> Headers, byte[] Body)
    {
        public byte[] Payload => ScriptedReplyBackend.Payload(Status, Headers, Body);

        public bool BreaksTheSpec =>
            Status is < 200 or > 599
            || Headers.Any(h => h.Name.Length == 0 || h.Name.Any(b => b >= 0x80 || !TChars.Contains((char)b, StringComparison.Ordinal)) || h.Value.Any(b => b is not ((byte)'\t' or >= 0x20 and <= 0x7e)));

        public override string ToString() =>
            $"{Method} -> status {Status}, body {Body.Length} B, headers [{string.Join(", ", Headers.Select(h => $"{Hex(h.Name)}: {Hex(h.Value)}"))}]";

        private static string Hex(byte[] bytes) => bytes.All(b => b is >= 0x21 and <= 0x7e and not (byte)',') ? Encoding.ASCII.GetString(bytes) : "0x" + Convert.ToHexString(bytes);
    }

    [Fact]
    public async Task GeneratedReplies_EachIsAWellFormedHttpResponse_TheBackendsOrA502Problem_GatewayStaysUp_NothingPending()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("GATEWAY_REPLY_FUZZ_SEED"), CultureInfo.InvariantCulture, out var s) ? s : 1802;
        var cases = int.TryParse(Environment.GetEnvironmentVariable("GATEWAY_REPLY_FUZZ_CASES"), CultureInfo.InvariantCulture, out var n) && n > 0 ? n : 600;
        var random = new Random(seed);
        using var dir = new TempSocketDirectory();
        Case? current = null;
        await using var backend = new ScriptedReplyBackend(dir.Socket("b.sock"), _ => Volatile.Read(ref current)!.Payload);
        await using var factory = new GatewayFactory(dir, ReplyMappingTests.Settings(backend.SocketPath)).StartKestrel();

        var failures = new List<string>();
        int run = 0, malformed = 0, forwarded = 0;
        var bound = Stopwatch.StartNew();
        for (; run < cases && bound.Elapsed < TimeSpan.FromSeconds(60); run++)
        {
            var c = Generate(random);
            Volatile.Write(ref current, c);
            var bytes = await RawUnixHttp.ExchangeAsync(factory.SocketPath, RawUnixHttp.Request(c.Method, "/r/fuzz", c.Method == "POST" ? "posted"u8.ToArray() : null), ReplyMappingTests.HangGuard);
            try
            {
                var response = Http11ResponseParser.Parse(bytes, c.Method == "HEAD");
                if (c.BreaksTheSpec)
                {
                    malformed++;
                    ReplyMappingTests.AssertMalformedReply(response, c.Method == "HEAD");
                }
                else
                {
                    forwarded++;
                    AssertForwarded(c, response);
                }
            }
            catch (Exception ex)
            {
                failures.Add($"case {run}: {c}: {ex.Message.ReplaceLineEndings(" ")}\n  response: {Encoding.Latin1.GetString(bytes[..Math.Min(bytes.Length, 600)]).ReplaceLineEndings("\\n ")}");
            }
        }

        output.WriteLine($"seed {seed}: {run} cases ({forwarded} forwarded, {malformed} malformed -> 502), {failures.Count} failed, {bound.Elapsed.TotalSeconds:0.#} s");
        Assert.True(failures.Count == 0, $"seed {seed} (GATEWAY_REPLY_FUZZ_SEED): {failures.Count} of {run} cases failed; first ones:\n{string.Join("\n", failures.Take(5))}");
        Assert.Equal(run, backend.Requests);
        Assert.True(forwarded > run / 4 && malformed > run / 4, $"the generator should exercise both outcomes: {forwarded} forwarded, {malformed} malformed");

        Volatile.Write(ref current, new Case("GET", 200, [("x-after"u8.ToArray(), "1"u8.ToArray())], "still up"u8.ToArray()));
        var after = Http11ResponseParser.Parse(await RawUnixHttp.ExchangeAsync(factory.SocketPath, RawUnixHttp.Request("GET", "/r/after"), ReplyMappingTests.HangGuard), headRequest: false);
        Assert.Equal("still up", Encoding.ASCII.GetString(after.Body));
        var client = factory.Services.GetRequiredService<RouteTableProvider>().Current.Backends["s"].Instances[0].Client!;
        await Eventually.UntilAsync(() => client.PendingCount == 0, ReplyMappingTests.HangGuard, TimeSpan.FromMilliseconds(10));
        Assert.Equal(0, client.PendingCount);
    }

    private static void AssertForwarded(Case c, Http11Response response)
    {
        Assert.Equal(c.Status, response.Status);
        foreach (var group in c.Headers.GroupBy(h => (Name: Encoding.ASCII.GetString(h.Name).ToLowerInvariant(), Value: Encoding.ASCII.GetString(h.Value).Trim(' ', '\t'))))
        {
            var (name, value) = group.Key;
            // Dropped by the gateway, or (an empty value) not written by Kestrel.
            if (DroppedNames.Contains(name) || name.StartsWith("proxy-", StringComparison.Ordinal) || group.First().Value.Length == 0)
            {
                continue;
            }

            var sent = response.GetAll(name).Count(v => v == value);
            Assert.True(sent >= group.Count(), $"header {name}: \"{value}\" sent {sent} times, the backend sent it {group.Count()} times");
        }

        foreach (var name in DroppedNames.Where(d => d is not ("content-length" or "connection")).Append("proxy-authenticate"))
        {
            Assert.Empty(response.GetAll(name));
        }

        Assert.All(response.GetAll("Connection"), v => Assert.Equal("close", v)); // Kestrel's, for the request's Connection: close
        var noContent = c.Status is 204 or 205 or 304;
        if (noContent)
        {
            Assert.Empty(response.Body);
            Assert.Equal(c.Status == 205 && c.Method != "HEAD" ? "0" : null, response.Get("Content-Length"));
        }
        else if (c.Method == "HEAD")
        {
            Assert.Equal(c.Body.Length.ToString(CultureInfo.InvariantCulture), response.Get("Content-Length"));
        }
        else
        {
            Assert.Equal(c.Body, response.Body);
        }
    }

    private static Case Generate(Random random)
    {
        var method = Methods[random.Next(Methods.Length)];
        int[] usual = [200, 201, 202, 204, 205, 206, 301, 302, 304, 400, 404, 418, 500, 502, 503, 599];
        var status = random.Next(2) == 0 ? usual[random.Next(usual.Length)] : random.Next(100, 1000);
        var headers = new List<(byte[], byte[])>();
        var count = random.Next(7);
        for (var i = 0; i < count; i++)
        {
            if (headers.Count > 0 && random.Next(5) == 0)
            {
                headers.Add(headers[random.Next(headers.Count)]); // a duplicate
                continue;
            }

            var name = random.Next(10) switch
            {
                < 4 => Encoding.ASCII.GetBytes(CommonNames[random.Next(CommonNames.Length)]),
                < 6 => Encoding.ASCII.GetBytes(DroppedNames[random.Next(DroppedNames.Length)]),
                < 9 => Encoding.ASCII.GetBytes(new string([.. Enumerable.Range(0, random.Next(1, 20)).Select(_ => TChars[random.Next(TChars.Length)])])),
                _ => Bytes(random, random.Next(0, 12)),
            };
            var value = random.Next(10) switch
            {
                < 6 => Encoding.ASCII.GetBytes(new string([.. Enumerable.Range(0, random.Next(0, 40)).Select(_ => (char)random.Next(0x20, 0x7f))])),
                < 7 => "text/plain; charset=utf-8"u8.ToArray(),
                < 8 => [.. "\tx y\t"u8],
                _ => Bytes(random, random.Next(0, 12)),
            };
            headers.Add((name, value));
        }

        var body = random.Next(10) switch
        {
            < 3 => [],
            < 6 => Bytes(random, random.Next(1, 100)),
            _ => Bytes(random, random.Next(100, 8000)),
        };
        return new Case(method, status, headers, body);
    }

    private static byte[] Bytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }
}
