using System.Buffers.Binary;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Gateway.Ipc.Protocol;

namespace Gateway.Conformance;

/// <summary>A check could not continue; its message is the row's detail.</summary>
internal sealed class CheckFailedException(string message) : Exception(message);

/// <summary>The checks, in the order they run. docs/conformance.md defines each one.</summary>
internal static class Checks
{
    // §8.1 and §8.4, copied from the hex dumps of docs/protocol.md.
    private static readonly byte[] s_vector81 = FromHexDump("""
        47 44 01 01 00 00 00 01 01 02 03 04 05 06 07 08
        00 00 13 88 00 00 00 64 03 47 45 54 00 0f 2f 65
        63 68 6f 2f 68 65 6c 6c 6f 3f 78 3d 31 37 30 30
        2d 30 61 66 37 36 35 31 39 31 36 63 64 34 33 64
        64 38 34 34 38 65 62 32 31 31 63 38 30 33 31 39
        63 2d 62 37 61 64 36 62 37 31 36 39 32 30 33 33
        33 31 2d 30 31 00 00 00 01 06 61 63 63 65 70 74
        00 0a 74 65 78 74 2f 70 6c 61 69 6e
        """);

    private static readonly byte[] s_ping84 = FromHexDump("""
        47 44 01 04 00 00 00 00 00 00 00 00 00 00 00 2a
        00 00 00 00 00 00 00 00
        """);

    private static readonly byte[] s_pong84 = FromHexDump("""
        47 44 01 05 00 00 00 00 00 00 00 00 00 00 00 2a
        00 00 00 00 00 00 00 00
        """);

    public static readonly (string Name, Func<CheckContext, Task<(CheckOutcome, string)>> Run)[] All =
    [
        ("vector-8.1", Vector81Async),
        ("ping", PingAsync),
        ("echo", EchoAsync),
        ("correlation", CorrelationAsync),
        ("ping-while-busy", PingWhileBusyAsync),
        ("retry-replay", RetryReplayAsync),
        ("retry-after-deadline", RetryAfterDeadlineAsync),
        ("at-most-once-counter", CounterAsync),
        ("duplicate-in-progress", DuplicateInProgressAsync),
        ("deadline-expiry", DeadlineExpiryAsync),
        ("deadline-respected", DeadlineRespectedAsync),
        ("cancel", CancelAsync),
        ("malformed-empty", ctx => DroppedAsync(ctx, [[]])),
        ("malformed-garbage", ctx => DroppedAsync(ctx, [Garbage()])),
        ("malformed-truncated", ctx => DroppedAsync(ctx, [s_vector81[..10], s_vector81[..23]])),
        ("malformed-bad-magic", ctx => DroppedAsync(ctx, [Patched(s_vector81, 1, (byte)'X')])),
        ("malformed-bad-version", ctx => DroppedAsync(ctx, [Patched(s_vector81, 2, 2), Patched(s_ping84, 2, 0)])),
        ("malformed-unknown-kind", ctx => DroppedAsync(ctx, [Patched(s_ping84, 3, 0), Patched(s_ping84, 3, 7), Patched(s_ping84, 3, 0xff)])),
        ("malformed-zero-id", ctx => DroppedAsync(ctx, [ZeroId(s_vector81), ZeroId(s_ping84)])),
        ("malformed-bad-flags", ctx => DroppedAsync(ctx, [Patched(s_vector81, 4, 0x80), Patched(s_ping84, 4, 0x04), Patched(s_ping84, 4, (byte)MessageFlags.Fragment)])),
        ("malformed-control-payload", ctx => DroppedAsync(ctx, [WithPayload(s_ping84), WithPayload(Frames.Control(MessageKind.Cancel, Frames.NewId(), 0))])),
        ("malformed-length-mismatch", LengthMismatchAsync),
        ("malformed-stray-fragment", ctx => DroppedAsync(ctx, [StrayFragment()])),
        ("malformed-payload", BadPayloadAsync),
        ("malformed-header-name", BadHeaderNameAsync),
        ("malformed-needless-fragments", NeedlessFragmentsAsync),
        ("client-kinds-ignored", ClientKindsAsync),
        ("unbound-sender", UnboundSenderAsync),
        ("empty-body-statuses", EmptyBodyStatusesAsync),
        ("head-like-get", HeadLikeGetAsync),
        ("header-utf8", HeaderUtf8Async),
        ("large-1MiB", ctx => LargeAsync(ctx, 1 << 20)),
        ("large-5MiB", ctx => LargeAsync(ctx, 5 << 20)),
        ("largest-message", LargestMessageAsync),
        ("too-large", TooLargeAsync),
        .. StreamChecks.All,
    ];

    internal static (CheckOutcome, string) Pass(string detail) => (CheckOutcome.Pass, detail);

    internal static (CheckOutcome, string) Fail(string detail) => (CheckOutcome.Fail, detail);

    private static (CheckOutcome, string) Skip(string detail) => (CheckOutcome.Skip, detail);

    private static async Task<Reply> NextAsync(KitClient client, CheckContext ctx, string what, TimeSpan? timeout = null)
    {
        var t = timeout ?? ctx.Timeout;
        return await client.ReceiveAsync(t, ctx.Token)
            ?? throw new CheckFailedException($"no reply to {what} within {t.TotalSeconds:0.#} s");
    }

    /// <summary>A barrier (<see cref="KitClient.BarrierAsync"/>): null when clean, else the failure naming what else arrived.</summary>
    internal static async Task<(CheckOutcome, string)?> BarrierAsync(KitClient client, CheckContext ctx, string after, Func<Reply, bool>? allowed = null)
    {
        var others = await client.BarrierAsync(ctx.Timeout, ctx.Token);
        if (others is null)
        {
            return Fail($"no PONG after {after}: the backend stopped answering");
        }

        var unexpected = others.Where(r => allowed is null || !allowed(r)).ToList();
        return unexpected.Count == 0 ? null : Fail($"unexpected after {after}: {string.Join("; ", unexpected)}");
    }

    // vector-8.1: the REQUEST of §8.1, verbatim, is answered with the echo of ECHO.md.
    private static async Task<(CheckOutcome, string)> Vector81Async(CheckContext ctx)
    {
        var client = ctx.NewClient();
        await client.SendAsync(s_vector81, ctx.Token);
        var reply = await NextAsync(client, ctx, "the §8.1 vector");
        const string expected = "GET /echo/hello?x=1\n";
        if (!reply.IsResponse(200) || reply.CorrelationId != 0x0102030405060708 || reply.Attempt != 1 || reply.IsReplay)
        {
            return Fail($"expected RESPONSE 200, id 102030405060708, attempt 1; got {reply}");
        }

        return reply.BodyText == expected && reply.GetHeader("content-type")?.StartsWith("text/plain", StringComparison.Ordinal) == true
            ? Pass($"{reply}, body \"GET /echo/hello?x=1\\n\"")
            : Fail($"body \"{Escape(reply.BodyText)}\", content-type {reply.GetHeader("content-type") ?? "(none)"}; expected \"{Escape(expected)}\", text/plain");
    }

    // ping: §8.4's PING verbatim gets §8.4's PONG verbatim (but for byte 5, the features a backend announces, §4.5.1),
    // from the backend's address; id and attempt echoed.
    private static async Task<(CheckOutcome, string)> PingAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        await client.SendAsync(s_ping84, ctx.Token);
        var pong = await NextAsync(client, ctx, "the §8.4 PING");
        var expected = (byte[])s_pong84.Clone();
        if (pong.Raw.Length > 5)
        {
            expected[5] = pong.Raw[5];
        }

        if (!pong.Raw.AsSpan().SequenceEqual(expected))
        {
            return Fail($"expected the §8.4 PONG bytes (byte 5 may announce features), got {Convert.ToHexString(pong.Raw)}");
        }

        if (Path.GetFullPath(pong.Sender) != Path.GetFullPath(ctx.BackendPath))
        {
            return Fail($"the PONG came from '{pong.Sender}', not from the backend's address '{ctx.BackendPath}' (§1)");
        }

        var id = Frames.NewId();
        await client.SendAsync(Frames.Control(MessageKind.Ping, id, 7), ctx.Token);
        pong = await NextAsync(client, ctx, "a PING with attempt 7");
        return pong.Kind == MessageKind.Pong && pong.Problem is null && pong.CorrelationId == id && pong.Attempt == 7
            ? Pass("PONG bytes as in §8.4; id and attempt echoed")
            : Fail($"expected PONG id {id:x} attempt 7, got {pong}");
    }

    // echo: a body comes back byte for byte with its content-type; x-echo-status sets the status.
    private static async Task<(CheckOutcome, string)> EchoAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        var body = RandomBytes(3000);
        var id = Frames.NewId();
        await client.SendMessageAsync(Frames.Request(id, 1, 0, "PUT", "/echo/kit", [("content-type", "application/x-kit"), ("x-echo-status", "201")], body), ctx.Token);
        var reply = await NextAsync(client, ctx, "an echo request");
        if (!reply.IsResponse(201) || reply.CorrelationId != id || reply.Attempt != 1)
        {
            return Fail($"expected RESPONSE 201 id {id:x} attempt 1, got {reply}");
        }

        return reply.Body.AsSpan().SequenceEqual(body) && reply.GetHeader("content-type") == "application/x-kit"
            ? Pass("3,000 B body and content-type echoed, status 201 from x-echo-status")
            : Fail($"body or content-type differ (content-type {reply.GetHeader("content-type") ?? "(none)"}, {reply.Body.Length} B)");
    }

    // empty-body-statuses: x-echo-status 204 and 304 with a body to echo: the RESPONSE has that status and no body (§4.2).
    private static async Task<(CheckOutcome, string)> EmptyBodyStatusesAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        foreach (var status in new[] { 204, 304 })
        {
            var id = Frames.NewId();
            await client.SendAsync(Frames.Request(id, 1, 0, "POST", "/echo/empty", [("content-type", "text/plain"), ("x-echo-status", status.ToString(CultureInfo.InvariantCulture))], "not for a 204"u8.ToArray()), ctx.Token);
            var reply = await NextAsync(client, ctx, $"an echo request with x-echo-status {status}");
            if (!reply.IsResponse(status) || reply.CorrelationId != id)
            {
                return Fail($"expected RESPONSE {status} id {id:x}, got {reply}");
            }

            if (reply.Body.Length != 0)
            {
                return Fail($"the {status} RESPONSE has a {reply.Body.Length}-byte body; 204 and 304 have none (§4.2, empty bodies; the gateway drops it and counts it)");
            }
        }

        return Pass("RESPONSE 204 and 304 with empty bodies");
    }

    // head-like-get: HEAD is answered like GET, body included: the gateway sends its length as Content-Length (§4.2).
    private static async Task<(CheckOutcome, string)> HeadLikeGetAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        var id = Frames.NewId();
        await client.SendAsync(Frames.Request(id, 1, 0, "HEAD", "/echo/head"), ctx.Token);
        var reply = await NextAsync(client, ctx, "HEAD /echo/head");
        const string expected = "HEAD /echo/head\n";
        if (!reply.IsResponse(200) || reply.CorrelationId != id)
        {
            return Fail($"expected RESPONSE 200 id {id:x}, got {reply}");
        }

        return reply.BodyText == expected
            ? Pass("RESPONSE 200 with the echo body (its length becomes the HEAD's Content-Length)")
            : Fail($"body \"{Escape(reply.BodyText)}\"; a HEAD reply carries the body GET would get, here \"{Escape(expected)}\" (§4.2, empty bodies)");
    }

    // header-utf8: a REQUEST header value in UTF-8 (what Kestrel lets through) is accepted as opaque bytes (§4.2).
    private static async Task<(CheckOutcome, string)> HeaderUtf8Async(CheckContext ctx)
    {
        var client = ctx.NewClient();
        var id = Frames.NewId();
        await client.SendAsync(Frames.Request(id, 1, 0, "GET", "/echo/utf8", [("x-kit-name", "caf\u00e9 \u2713"), ("x-echo-status", "203")]), ctx.Token);
        var reply = await NextAsync(client, ctx, "a request with a UTF-8 header value");
        return reply.IsResponse(203) && reply.CorrelationId == id && reply.BodyText == "GET /echo/utf8\n"
            ? Pass("RESPONSE 203 to a request whose header value is UTF-8")
            : Fail($"expected RESPONSE 203 with the echo body, got {reply} (§4.2, header encoding: request header values are UTF-8, opaque to a backend)");
    }

    // correlation: 256 requests in flight with different delays; every one answered once, correctly.
    private static async Task<(CheckOutcome, string)> CorrelationAsync(CheckContext ctx)
    {
        const int count = 256;
        var client = ctx.NewClient();
        var ids = new Dictionary<ulong, int>();
        for (var i = 0; i < count; i++)
        {
            var id = Frames.NewId();
            ids[id] = i;
            var delay = (i * 37 % 250).ToString(CultureInfo.InvariantCulture);
            await client.SendAsync(Frames.Request(id, 1, 0, "POST", $"/echo/{i}", [("x-echo-delay-ms", delay)], Encoding.UTF8.GetBytes($"request {i}")), ctx.Token);
        }

        var seen = new HashSet<ulong>();
        int inversions = 0, highest = -1;
        while (seen.Count < count)
        {
            var reply = await client.ReceiveAsync(ctx.Timeout, ctx.Token);
            if (reply is null)
            {
                return Fail($"{count - seen.Count} of {count} requests unanswered after {ctx.Timeout.TotalSeconds:0.#} s");
            }

            if (!ids.TryGetValue(reply.CorrelationId, out var index) || !seen.Add(reply.CorrelationId))
            {
                return Fail($"a reply for an unknown or already answered id: {reply}");
            }

            if (!reply.IsResponse(200) || reply.Attempt != 1 || reply.BodyText != $"request {index}")
            {
                return Fail($"request {index}: got {reply} with body \"{Escape(reply.BodyText)}\"");
            }

            inversions += index < highest ? 1 : 0;
            highest = Math.Max(highest, index);
        }

        return await BarrierAsync(client, ctx, "the 256 replies")
            ?? Pass($"{count}/{count} answered once with their own body; {inversions} arrived out of send order");
    }

    // ping-while-busy: a PING is answered while requests are still running (§4.4).
    private static async Task<(CheckOutcome, string)> PingWhileBusyAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        for (var i = 0; i < 8; i++)
        {
            await client.SendAsync(Frames.Request(Frames.NewId(), 1, 0, "GET", "/echo/busy", [("x-echo-delay-ms", "1000")]), ctx.Token);
        }

        var id = Frames.NewId();
        await client.SendAsync(Frames.Control(MessageKind.Ping, id, 1), ctx.Token);
        var first = await NextAsync(client, ctx, "a PING sent after 8 slow requests");
        if (first.Kind != MessageKind.Pong || first.CorrelationId != id)
        {
            return Fail($"the first reply was {first}, not the PONG: the backend does not read its socket while it works");
        }

        var rest = 0;
        while (rest < 8 && await client.ReceiveAsync(ctx.Timeout, ctx.Token) is { } reply)
        {
            rest += reply.IsResponse(200) ? 1 : 0;
        }

        return rest == 8 ? Pass("PONG before any of 8 requests delayed 1 s; all 8 answered") : Fail($"only {rest} of the 8 slow requests were answered");
    }

    // retry-replay: attempt 2 after attempt 1 finished is answered from the replay cache (§5).
    private static async Task<(CheckOutcome, string)> RetryReplayAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        var id = Frames.NewId();
        var request = Frames.Request(id, 1, 0, "POST", "/echo/replay", [("x-echo-status", "202"), ("content-type", "text/x-kit")], Encoding.UTF8.GetBytes($"replay {id}"));
        await client.SendAsync(request, ctx.Token);
        var first = await NextAsync(client, ctx, "attempt 1");
        if (!first.IsResponse(202) || first.IsReplay || first.Attempt != 1)
        {
            return Fail($"attempt 1: expected RESPONSE 202 without REPLAY, got {first}");
        }

        FrameHeader.PatchAttempt(request, 2);
        await client.SendAsync(request, ctx.Token);
        var second = await NextAsync(client, ctx, "attempt 2");
        if (second.Kind != MessageKind.Response || !second.IsReplay || second.Attempt != 2 || second.CorrelationId != id)
        {
            return Fail($"attempt 2: expected RESPONSE with REPLAY and attempt 2, got {second}");
        }

        return second.Payload.AsSpan().SequenceEqual(first.Payload)
            ? Pass("attempt 2 got the cached reply: REPLAY flag, attempt 2, same status, headers and body")
            : Fail("the replayed payload differs from the original");
    }

    // retry-after-deadline: attempt 2 arrives after attempt 1's deadline, its reply still cached: replayed (§5).
    private static async Task<(CheckOutcome, string)> RetryAfterDeadlineAsync(CheckContext ctx)
    {
        const uint budgetMs = 300;
        var client = ctx.NewClient();
        var id = Frames.NewId();
        var request = Frames.Request(id, 1, budgetMs, "POST", "/echo/late-retry", [("content-type", "text/x-kit")], Encoding.UTF8.GetBytes($"late {id}"));
        var sent = System.Diagnostics.Stopwatch.StartNew();
        await client.SendAsync(request, ctx.Token);
        var first = await NextAsync(client, ctx, "attempt 1");
        if (!first.IsResponse(200) || first.IsReplay)
        {
            return Fail($"attempt 1 (budget {budgetMs} ms): expected RESPONSE 200, got {first}");
        }

        // The protocol's own clock, not synchronisation: attempt 2 must arrive after attempt 1's deadline.
        var wait = TimeSpan.FromMilliseconds(budgetMs + 200) - sent.Elapsed;
        if (wait > TimeSpan.Zero)
        {
            await Task.Delay(wait, ctx.Token);
        }

        FrameHeader.PatchAttempt(request, 2);
        await client.SendAsync(request, ctx.Token);
        var second = await NextAsync(client, ctx, "attempt 2");
        if (second.Kind != MessageKind.Response || !second.IsReplay || second.Attempt != 2 || !second.Payload.AsSpan().SequenceEqual(first.Payload))
        {
            return Fail($"attempt 2, {sent.ElapsedMilliseconds} ms after attempt 1 (budget {budgetMs} ms): expected the cached RESPONSE with REPLAY and attempt 2, got {second}");
        }

        return Pass($"attempt 2 after attempt 1's deadline got the cached reply (REPLAY, attempt 2)");
    }

    // at-most-once-counter: three attempts of POST /counter/{name} increment once (optional route).
    private static async Task<(CheckOutcome, string)> CounterAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        var name = Guid.NewGuid().ToString("N");
        var id = Frames.NewId();
        var request = Frames.Request(id, 1, 0, "POST", $"/counter/{name}");
        await client.SendAsync(request, ctx.Token);
        var first = await NextAsync(client, ctx, "POST /counter");
        if (first.IsError(IpcErrorCode.NotFound) || first.IsResponse(404) || (first.IsResponse(200) && !long.TryParse(first.BodyText, CultureInfo.InvariantCulture, out _)))
        {
            return Skip($"no counter route (POST /counter/{{name}} got {first})");
        }

        if (!first.IsResponse(200) || first.BodyText != "1")
        {
            return Fail($"expected RESPONSE 200 \"1\", got {first} \"{Escape(first.BodyText)}\"");
        }

        foreach (ushort attempt in (ushort[])[2, 3])
        {
            FrameHeader.PatchAttempt(request, attempt);
            await client.SendAsync(request, ctx.Token);
            var retry = await NextAsync(client, ctx, $"attempt {attempt}");
            if (!retry.IsResponse(200) || !retry.IsReplay || retry.Attempt != attempt || retry.BodyText != "1")
            {
                return Fail($"attempt {attempt}: expected a REPLAY of \"1\", got {retry} \"{Escape(retry.BodyText)}\"");
            }
        }

        await client.SendAsync(Frames.Request(Frames.NewId(), 1, 0, "GET", $"/counter/{name}"), ctx.Token);
        var value = await NextAsync(client, ctx, "GET /counter");
        return value.IsResponse(200) && value.BodyText == "1"
            ? Pass("3 attempts, counter incremented once, retries replayed")
            : Fail($"GET /counter/{name} after 3 attempts: {value} \"{Escape(value.BodyText)}\" (expected \"1\")");
    }

    // duplicate-in-progress: attempt 2 while attempt 1 still runs is dropped; exactly one reply (§5).
    private static async Task<(CheckOutcome, string)> DuplicateInProgressAsync(CheckContext ctx)
    {
        const int delay = 500;
        var client = ctx.NewClient();
        var id = Frames.NewId();
        var request = Frames.Request(id, 1, 0, "POST", "/echo/dup", [("x-echo-delay-ms", $"{delay}")], Encoding.UTF8.GetBytes("once"));
        await client.SendAsync(request, ctx.Token);
        FrameHeader.PatchAttempt(request, 2);
        await client.SendAsync(request, ctx.Token);
        var first = await NextAsync(client, ctx, "a request and its duplicate");
        if (!first.IsResponse(200) || first.CorrelationId != id || first.BodyText != "once")
        {
            return Fail($"expected RESPONSE 200 \"once\", got {first}");
        }

        // A second execution would answer about `delay` ms after the first one.
        var more = await client.CollectAsync(TimeSpan.FromMilliseconds(delay * 2), ctx.Token);
        return more.Count == 0
            ? Pass($"one reply ({first}); the duplicate was dropped")
            : Fail($"{more.Count + 1} replies: {first}; {string.Join("; ", more)}");
    }

    // deadline-expiry: budget 200 ms, delay 1,500 ms: no RESPONSE; ERROR DEADLINE_EXCEEDED or nothing.
    private static async Task<(CheckOutcome, string)> DeadlineExpiryAsync(CheckContext ctx)
    {
        const int delay = 1500;
        var client = ctx.NewClient();
        var id = Frames.NewId();
        await client.SendAsync(Frames.Request(id, 1, 200, "GET", "/echo/deadline", [("x-echo-delay-ms", $"{delay}")]), ctx.Token);
        var reply = await client.ReceiveAsync(TimeSpan.FromMilliseconds(delay + 1000), ctx.Token);
        if (reply is not null && !(reply.IsError(IpcErrorCode.DeadlineExceeded) && reply.CorrelationId == id))
        {
            return Fail($"expected ERROR DEADLINE_EXCEEDED or no reply, got {reply}");
        }

        return await BarrierAsync(client, ctx, "the expired request")
            ?? Pass(reply is null ? "no reply (dropped)" : $"{reply}");
    }

    // deadline-respected: budget 0 means no deadline; a budget larger than the work is served.
    private static async Task<(CheckOutcome, string)> DeadlineRespectedAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        foreach (var budget in (uint[])[0, 10_000])
        {
            var id = Frames.NewId();
            await client.SendAsync(Frames.Request(id, 1, budget, "GET", "/echo/budget", [("x-echo-delay-ms", "300")]), ctx.Token);
            var reply = await NextAsync(client, ctx, $"budget {budget} ms");
            if (!reply.IsResponse(200) || reply.CorrelationId != id)
            {
                return Fail($"budget_ms {budget} with a 300 ms delay: expected RESPONSE 200, got {reply}");
            }
        }

        return Pass("budget 0 (none) and budget 10 s both served a 300 ms echo");
    }

    // cancel: no reply to a CANCEL; a cancelled request gets at most one reply; the backend keeps answering.
    private static async Task<(CheckOutcome, string)> CancelAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        await client.SendAsync(Frames.Control(MessageKind.Cancel, Frames.NewId(), 0), ctx.Token);
        if (await BarrierAsync(client, ctx, "a CANCEL for an unknown id") is { } failed)
        {
            return failed;
        }

        var id = Frames.NewId();
        await client.SendAsync(Frames.Request(id, 1, 0, "GET", "/echo/cancel", [("x-echo-delay-ms", "1000")]), ctx.Token);
        await client.SendAsync(Frames.Control(MessageKind.Cancel, id, 1), ctx.Token);
        var replies = await client.CollectAsync(TimeSpan.FromMilliseconds(1500), ctx.Token);
        if (replies.Count > 1 || replies.Any(r => r.CorrelationId != id || r.Problem is not null))
        {
            return Fail($"after CANCEL: {string.Join("; ", replies)}");
        }

        return await BarrierAsync(client, ctx, "a cancelled request")
            ?? Pass(replies.Count == 0 ? "no reply to CANCEL; the running request was stopped (no reply)" : $"no reply to CANCEL; the running request still answered ({replies[0]}), allowed by §4.4");
    }

    // malformed-*: datagrams that §7 says to drop are dropped; the backend keeps answering PINGs.
    private static async Task<(CheckOutcome, string)> DroppedAsync(CheckContext ctx, byte[][] datagrams)
    {
        var client = ctx.NewClient();
        foreach (var datagram in datagrams)
        {
            await client.SendAsync(datagram, ctx.Token);
        }

        return await BarrierAsync(client, ctx, $"{datagrams.Length} malformed datagram(s)")
            ?? Pass($"{datagrams.Length} datagram(s) dropped silently; PING still answered");
    }

    // malformed-length-mismatch: payload_length ≠ datagram length − 24: dropped, or ERROR MALFORMED (§7).
    private static async Task<(CheckOutcome, string)> LengthMismatchAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        var id = Frames.NewId();
        var longer = Frames.Request(id, 1, 0, "GET", "/echo/len");
        var shorter = (byte[])longer.Clone();
        BinaryPrimitives.WriteUInt32BigEndian(longer.AsSpan(20), (uint)(longer.Length - 24 + 5));
        BinaryPrimitives.WriteUInt32BigEndian(shorter.AsSpan(20), (uint)(shorter.Length - 24 - 1));
        await client.SendAsync(longer, ctx.Token);
        await client.SendAsync(shorter, ctx.Token);
        return await BarrierAsync(client, ctx, "payload_length mismatches", r => r.IsError(IpcErrorCode.Malformed) && r.CorrelationId == id)
            ?? Pass("dropped or answered ERROR MALFORMED; PING still answered");
    }

    // malformed-payload: a valid header with a payload breaking §4.1 gets ERROR MALFORMED with its id and attempt.
    private static async Task<(CheckOutcome, string)> BadPayloadAsync(CheckContext ctx)
    {
        var cases = new (string Name, byte[] Payload)[]
        {
            ("empty method", [0, 0, 1, (byte)'/', 0, 0, 0, 0, 0]),
            ("33-byte method", [33, .. Enumerable.Repeat((byte)'A', 33), 0, 1, (byte)'/', 0, 0, 0, 0, 0]),
            ("target without '/'", [3, .. "GET"u8, 0, 1, (byte)'x', 0, 0, 0, 0, 0]),
            ("10-byte traceparent", [3, .. "GET"u8, 0, 1, (byte)'/', 10, .. Enumerable.Repeat((byte)'0', 10), 0, 0, 0, 0]),
            ("target length past the end", [3, .. "GET"u8, 0xff, 0xff, (byte)'/']),
            ("header count past the end", [3, .. "GET"u8, 0, 1, (byte)'/', 0, 0, 0, 0, 3, 1, (byte)'a', 0, 0]),
        };
        var client = ctx.NewClient();
        var failures = new List<string>();
        foreach (var (name, payload) in cases)
        {
            var id = Frames.NewId();
            await client.SendAsync(Frames.RawRequest(id, 3, payload), ctx.Token);
            var reply = await NextAsync(client, ctx, name);
            if (!reply.IsError(IpcErrorCode.Malformed) || reply.CorrelationId != id || reply.Attempt != 3)
            {
                failures.Add($"{name}: {reply}");
            }
        }

        return failures.Count > 0
            ? Fail($"expected ERROR MALFORMED, id and attempt 3: {string.Join("; ", failures)}")
            : await BarrierAsync(client, ctx, "malformed payloads") ?? Pass($"{cases.Length} bad payloads answered ERROR MALFORMED");
    }

    // malformed-header-name: a REQUEST whose header name is not a lower-case token gets ERROR MALFORMED (§4.1, §7).
    private static async Task<(CheckOutcome, string)> BadHeaderNameAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        var failures = new List<string>();
        string[] names = ["X-Kit", "accept Language", "x:kit", "caf\u00e9"];
        foreach (var name in names)
        {
            var id = Frames.NewId();
            using var writer = new FrameWriter();
            writer.BeginRequest(id, 2, 0, "GET", "/echo/header-name");
            writer.AddHeader(Encoding.UTF8.GetBytes(name), "v"u8);
            writer.WriteBody([]);
            await client.SendAsync(writer.Complete().ToArray(), ctx.Token);
            var reply = await NextAsync(client, ctx, $"header name '{name}'");
            if (!reply.IsError(IpcErrorCode.Malformed) || reply.CorrelationId != id || reply.Attempt != 2)
            {
                failures.Add($"'{name}': {reply}");
            }
        }

        return failures.Count > 0
            ? Fail($"expected ERROR MALFORMED, id and attempt 2: {string.Join("; ", failures)}")
            : await BarrierAsync(client, ctx, "bad header names") ?? Pass($"{names.Length} bad header names (upper case, space, colon, non-ASCII) answered ERROR MALFORMED");
    }

    // malformed-needless-fragments: a message that fits one datagram, sent as fragments, is dropped (§6, §7).
    private static async Task<(CheckOutcome, string)> NeedlessFragmentsAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        var id = Frames.NewId();
        var message = Frames.Request(id, 1, 0, "POST", "/echo/needless", [("content-type", "text/plain")], RandomBytes(1000));
        var half = (message.Length - ProtocolConstants.HeaderSize) / 2;
        var first = Frames.Fragment(message, 0, message.AsSpan(ProtocolConstants.HeaderSize, half));
        var second = Frames.Fragment(message, (uint)half, message.AsSpan(ProtocolConstants.HeaderSize + half));
        await client.SendAsync(first, ctx.Token);
        await client.SendAsync(second, ctx.Token);
        return await BarrierAsync(client, ctx, "a 1 KB request sent as two fragments")
            ?? Pass("dropped; PING still answered");
    }

    // client-kinds-ignored: RESPONSE, ERROR and PONG sent to a backend are dropped (§7).
    private static async Task<(CheckOutcome, string)> ClientKindsAsync(CheckContext ctx)
    {
        using var response = new FrameWriter();
        response.BeginResponse(Frames.NewId(), 1, 200);
        response.WriteBody("x"u8);
        using var error = new FrameWriter();
        error.WriteError(Frames.NewId(), 1, IpcErrorCode.Internal, "x");
        return await DroppedAsync(ctx, [response.Complete().ToArray(), error.Complete().ToArray(), Frames.Control(MessageKind.Pong, Frames.NewId(), 1)]);
    }

    // unbound-sender: a datagram from an unbound socket (which cannot be replied to) harms nothing.
    private static async Task<(CheckOutcome, string)> UnboundSenderAsync(CheckContext ctx)
    {
        using (var unbound = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified))
        {
            var endpoint = new UnixDomainSocketEndPoint(ctx.BackendPath);
            await unbound.SendToAsync(s_ping84, SocketFlags.None, endpoint, ctx.Token);
            await unbound.SendToAsync(s_vector81, SocketFlags.None, endpoint, ctx.Token);
        }

        return await BarrierAsync(ctx.NewClient(), ctx, "a PING and a REQUEST from an unbound socket")
            ?? Pass("no harm; PING from a bound client still answered");
    }

    // large-*: an echo of a body that needs fragments both ways (§6).
    private static async Task<(CheckOutcome, string)> LargeAsync(CheckContext ctx, int size)
    {
        var client = ctx.NewClient();
        var body = RandomBytes(size);
        var id = Frames.NewId();
        var request = Frames.Request(id, 1, 0, "POST", "/echo/large", [("content-type", "application/octet-stream")], body);
        var sent = Frames.Split(request).Count();
        await client.SendMessageAsync(request, ctx.Token);
        var reply = await NextAsync(client, ctx, $"a {size:N0} B request");
        if (!reply.IsResponse(200) || reply.CorrelationId != id)
        {
            return Fail($"expected RESPONSE 200, got {reply}");
        }

        return reply.Body.AsSpan().SequenceEqual(body)
            ? Pass($"{size:N0} B echoed: {sent} fragments sent, {reply.Datagrams} received")
            : Fail($"the echoed body differs ({reply.Body.Length:N0} B received)");
    }

    // largest-message: the largest message the gateway sends, a 16 MiB body in a 17 MiB payload (§6), is answered.
    private static async Task<(CheckOutcome, string)> LargestMessageAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        var body = RandomBytes(ProtocolConstants.DefaultMaxBodyBytes);
        var id = Frames.NewId();
        var headers = new List<(string, string)> { ("content-type", "application/octet-stream") };
        var request = Frames.Request(id, 1, 0, "POST", "/echo/largest", headers, body);

        // Pad with header fields (1 + 9 + 2 + n bytes each) until the payload is exactly DefaultMaxMessageBytes.
        var missing = ProtocolConstants.DefaultMaxMessageBytes - (request.Length - ProtocolConstants.HeaderSize);
        while (missing >= 12)
        {
            var n = Math.Min(ushort.MaxValue, missing - 12);
            if (missing - 12 - n is > 0 and < 12)
            {
                n -= 12; // leave room for one more field
            }

            headers.Add(("x-kit-pad", new string('p', n)));
            missing -= 12 + n;
        }

        request = Frames.Request(id, 1, 0, "POST", "/echo/largest", headers, body);
        var payloadLength = request.Length - ProtocolConstants.HeaderSize;
        if (payloadLength != ProtocolConstants.DefaultMaxMessageBytes)
        {
            throw new CheckFailedException($"the kit built a {payloadLength}-byte payload instead of {ProtocolConstants.DefaultMaxMessageBytes}");
        }

        await client.SendMessageAsync(request, ctx.Token);
        var reply = await NextAsync(client, ctx, $"a {payloadLength:N0} B request", ctx.Timeout * 4);
        if (!reply.IsResponse(200) || reply.CorrelationId != id)
        {
            return Fail($"a {payloadLength:N0} B payload (16 MiB body): expected RESPONSE 200, got {reply}");
        }

        return reply.Body.AsSpan().SequenceEqual(body)
            ? Pass($"{payloadLength:N0} B payload ({body.Length:N0} B body) echoed")
            : Fail($"the echoed body differs ({reply.Body.Length:N0} B received)");
    }

    // too-large: a first fragment announcing 17 MiB + 1 is refused with one ERROR TOO_LARGE (§6).
    private static async Task<(CheckOutcome, string)> TooLargeAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        var id = Frames.NewId();
        var start = Frames.Request(id, 1, 0, "POST", "/echo/too-large", [("content-type", "application/octet-stream")], RandomBytes(2 * ProtocolConstants.MaxFragmentData));
        BinaryPrimitives.WriteUInt32BigEndian(start.AsSpan(20), ProtocolConstants.DefaultMaxMessageBytes + 1);
        const int step = ProtocolConstants.MaxFragmentData;
        var first = Frames.Fragment(start, 0, start.AsSpan(ProtocolConstants.HeaderSize, step));
        var second = Frames.Fragment(start, step, start.AsSpan(ProtocolConstants.HeaderSize + step, step));
        await client.SendAsync(first, ctx.Token);
        await client.SendAsync(second, ctx.Token);
        var reply = await NextAsync(client, ctx, "a first fragment of a 17 MiB + 1 B message");
        if (!reply.IsError(IpcErrorCode.TooLarge) || reply.CorrelationId != id || reply.Attempt != 1)
        {
            return Fail($"expected ERROR TOO_LARGE, got {reply}");
        }

        return await BarrierAsync(client, ctx, "TOO_LARGE and a second fragment")
            ?? Pass($"{reply}; the next fragment was dropped silently");
    }

    private static byte[] FromHexDump(string dump) =>
        Convert.FromHexString(dump.Replace(" ", "", StringComparison.Ordinal).Replace("\n", "", StringComparison.Ordinal));

    private static byte[] Patched(byte[] datagram, int index, byte value)
    {
        var copy = (byte[])datagram.Clone();
        copy[index] = value;
        return copy;
    }

    private static byte[] WithPayload(byte[] control)
    {
        var datagram = new byte[control.Length + 1];
        control.CopyTo(datagram, 0);
        datagram[^1] = 0x2a;
        BinaryPrimitives.WriteUInt32BigEndian(datagram.AsSpan(20), 1);
        return datagram;
    }

    private static byte[] ZeroId(byte[] datagram)
    {
        var copy = (byte[])datagram.Clone();
        copy.AsSpan(8, 8).Clear();
        return copy;
    }

    private static byte[] Garbage()
    {
        var bytes = RandomBytes(100);
        bytes[0] = (byte)'X';
        return bytes;
    }

    private static byte[] StrayFragment()
    {
        var message = Frames.Request(Frames.NewId(), 1, 0, "POST", "/echo/stray", body: RandomBytes(ProtocolConstants.MaxDatagram));
        var payload = message.AsSpan(ProtocolConstants.HeaderSize);
        return Frames.Fragment(message, ProtocolConstants.MaxFragmentData, payload[ProtocolConstants.MaxFragmentData..]);
    }

    private static byte[] RandomBytes(int length)
    {
        var bytes = new byte[length];
        Random.Shared.NextBytes(bytes);
        return bytes;
    }

    private static string Escape(string s) => s.Replace("\n", "\\n", StringComparison.Ordinal);
}
