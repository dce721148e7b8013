using System.Globalization;
using System.Text;
using Gateway.Ipc.Protocol;
using static Gateway.Conformance.Checks;

namespace Gateway.Conformance;

/// <summary>
/// The checks of the streaming extension (docs/protocol.md §4.5; docs/conformance.md, "Streams"). Each one first asks
/// the backend's features (§4.5.1) and is skipped when the backend does not announce the one it needs.
/// </summary>
internal static class StreamChecks
{
    private const int UploadBytes = 600 * 1024; // more than a 256 KiB window: the backend must grant more as it reads
    private const int UploadChunk = 64 * 1024;

    public static readonly (string Name, Func<CheckContext, Task<(CheckOutcome, string)>> Run)[] All =
    [
        ("stream-announce", AnnounceAsync),
        ("stream-reply", Needs(StreamFeatures.StreamReply, ReplyAsync)),
        ("stream-reply-needs-flag", NeedsFlagAsync),
        ("stream-window", Needs(StreamFeatures.StreamReply, WindowAsync)),
        ("stream-cancel", Needs(StreamFeatures.StreamReply, CancelAsync)),
        ("stream-bad-credit", Needs(StreamFeatures.StreamReply, BadCreditAsync)),
        ("stream-retry-after-end", Needs(StreamFeatures.StreamReply, RetryAfterEndAsync)),
        ("stream-late-ignored", Needs(StreamFeatures.StreamReply, LateAsync)),
        ("stream-upload", Needs(StreamFeatures.StreamRequest, ctx => UploadAsync(ctx, duplex: false))),
        ("stream-upload-duplex", Needs(StreamFeatures.StreamRequest | StreamFeatures.StreamReply, ctx => UploadAsync(ctx, duplex: true))),
        ("stream-upload-beyond-credit", Needs(StreamFeatures.StreamRequest, BeyondCreditAsync)),
        ("stream-upload-bad-sequence", Needs(StreamFeatures.StreamRequest, ctx => BrokenUploadAsync(ctx, badEnd: false))),
        ("stream-upload-bad-end", Needs(StreamFeatures.StreamRequest, ctx => BrokenUploadAsync(ctx, badEnd: true))),
    ];

    /// <summary>Runs <paramref name="run"/> only when the backend announces <paramref name="needed"/>; otherwise the check is skipped.</summary>
    private static Func<CheckContext, Task<(CheckOutcome, string)>> Needs(StreamFeatures needed, Func<CheckContext, Task<(CheckOutcome, string)>> run) =>
        async ctx => await NeedsAsync(ctx, needed) ?? await run(ctx);

    /// <summary>The echo's i-th chunk (docs/conformance.md): "chunk i", dots up to <paramref name="size"/> bytes, a newline.</summary>
    public static byte[] EchoChunk(int i, int size)
    {
        var line = Encoding.ASCII.GetBytes(string.Create(CultureInfo.InvariantCulture, $"chunk {i}"));
        var chunk = new byte[size];
        chunk.AsSpan().Fill((byte)'.');
        line.AsSpan(0, Math.Min(line.Length, size)).CopyTo(chunk);
        chunk[^1] = (byte)'\n';
        return chunk;
    }

    private static byte[] EchoChunks(int count, int size) => [.. Enumerable.Range(1, count).SelectMany(i => EchoChunk(i, size))];

    private static async Task<StreamFeatures> FeaturesAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        var id = Frames.NewId();
        await client.SendAsync(Frames.Control(MessageKind.Ping, id, 1), ctx.Token);
        var pong = await client.ReceiveAsync(ctx.Timeout, ctx.Token);
        return pong is { Kind: MessageKind.Pong, Problem: null } && pong.CorrelationId == id
            ? (StreamFeatures)pong.Raw[5]
            : throw new CheckFailedException("no PONG to a PING");
    }

    private static async Task<(CheckOutcome, string)?> NeedsAsync(CheckContext ctx, StreamFeatures needed)
    {
        var features = await FeaturesAsync(ctx);
        return (features & needed) == needed
            ? null
            : (CheckOutcome.Skip, $"the backend's PONG announces features 0x{(byte)features:x2}, not {needed} (§4.5.1)");
    }

    private static async Task<Reply> NextAsync(KitClient client, CheckContext ctx, string what)
    {
        var reply = await client.ReceiveAsync(ctx.Timeout, ctx.Token)
            ?? throw new CheckFailedException($"nothing within {ctx.Timeout.TotalSeconds:0.#} s while waiting for {what}");
        return reply.Problem is null ? reply : throw new CheckFailedException($"while waiting for {what}: {reply}");
    }

    /// <summary>Asks for the echo's stream of <paramref name="count"/> pieces of <paramref name="size"/> bytes and waits for its head.</summary>
    private static async Task<(KitClient Client, ulong Id, Reply Head)> OpenReplyStreamAsync(CheckContext ctx, int count, int size)
    {
        var client = ctx.NewClient();
        var id = Frames.NewId();
        await client.SendAsync(StreamRequest(id, 1, count, size), ctx.Token);
        var head = await NextAsync(client, ctx, "RESPONSE_HEAD");
        return head.Kind == MessageKind.ResponseHead && head.Status == 200 && head.CorrelationId == id && head.Attempt == 1
            ? (client, id, head)
            : throw new CheckFailedException($"expected RESPONSE_HEAD 200 for id {id:x}, attempt 1; got {head}");
    }

    /// <summary>Sends a REQUEST_HEAD and waits for the backend's first CREDIT for it (§4.5.5).</summary>
    private static async Task<(KitClient Client, ulong Id, Reply Credit)> OpenUploadAsync(CheckContext ctx, string target, IEnumerable<(string Name, string Value)>? headers = null)
    {
        var client = ctx.NewClient();
        var id = Frames.NewId();
        await client.SendAsync(Frames.RequestHead(id, 1, "POST", target, headers), ctx.Token);
        var credit = await NextAsync(client, ctx, "the first CREDIT");
        return credit.Kind == MessageKind.Credit && credit.CorrelationId == id
            ? (client, id, credit)
            : throw new CheckFailedException($"expected a CREDIT for the REQUEST_HEAD (§4.5.5); got {credit}");
    }

    /// <summary>The next message that is not a CREDIT (a backend may still grant credit for an upload it is about to refuse).</summary>
    private static async Task<Reply> NextAfterCreditsAsync(KitClient client, CheckContext ctx, string what)
    {
        var reply = await NextAsync(client, ctx, what);
        while (reply.Kind == MessageKind.Credit)
        {
            reply = await NextAsync(client, ctx, what);
        }

        return reply;
    }

    /// <summary>Asks for the echo's stream of <paramref name="count"/> chunks of <paramref name="size"/> bytes, with STREAM_REPLY.</summary>
    private static byte[] StreamRequest(ulong id, ushort attempt, int count, int size, StreamFeatures features = StreamFeatures.StreamReply) =>
        Frames.Request(id, attempt, 0, "GET", "/echo/stream", [("x-echo-stream-count", count.ToString(CultureInfo.InvariantCulture)), ("x-echo-stream-chunk-bytes", size.ToString(CultureInfo.InvariantCulture))], features: features);

    /// <summary>Reads a reply stream's CHUNKs until its END, checking the order (§4.5.4); fails on anything else.</summary>
    private static async Task<(byte[] Data, int Chunks)> ReadToEndAsync(KitClient client, CheckContext ctx, ulong id, ushort attempt, long granted, long alreadyReceived = 0, int chunks = 0, List<byte>? data = null)
    {
        data ??= [];
        long received = alreadyReceived;
        while (true)
        {
            var reply = await NextAsync(client, ctx, $"CHUNK {chunks} or END");
            if (reply.CorrelationId != id || reply.Attempt != attempt)
            {
                throw new CheckFailedException($"expected the stream of id {id:x}, attempt {attempt}; got {reply}");
            }

            switch (reply.Kind)
            {
                case MessageKind.Chunk when reply.Sequence != chunks:
                    throw new CheckFailedException($"CHUNK sequence {reply.Sequence} where {chunks} was next (§4.5.4)");
                case MessageKind.Chunk:
                    received += reply.Body.Length;
                    if (received > granted)
                    {
                        throw new CheckFailedException($"{received} B of CHUNK data with {granted} B of credit granted (§4.5.5)");
                    }

                    data.AddRange(reply.Body);
                    chunks++;
                    break;
                case MessageKind.End when reply.Value != chunks:
                    throw new CheckFailedException($"END says {reply.Value} chunks; {chunks} were sent (§4.5.4)");
                case MessageKind.End:
                    return ([.. data], chunks);
                default:
                    throw new CheckFailedException($"expected CHUNK {chunks} or END; got {reply}");
            }
        }
    }

    // stream-announce: the PONG's features byte (§4.5.1). Informative: a backend without streams passes and the rest skip.
    private static async Task<(CheckOutcome, string)> AnnounceAsync(CheckContext ctx)
    {
        var features = await FeaturesAsync(ctx);
        if (((byte)features & 0xfc) != 0)
        {
            return Fail($"the PONG's features byte is 0x{(byte)features:x2}: bits 2-7 are 0 (§4.5.1)");
        }

        return Pass(features == StreamFeatures.None ? "no features announced: the stream checks are skipped" : $"features 0x{(byte)features:x2} ({features})");
    }

    // stream-reply: RESPONSE_HEAD, then CHUNKs 0, 1, 2 … within the credit, then END with their count (§4.5.2).
    private static async Task<(CheckOutcome, string)> ReplyAsync(CheckContext ctx)
    {
        var (client, id, head) = await OpenReplyStreamAsync(ctx, 5, 64);

        await client.SendAsync(Frames.StreamControl(MessageKind.Credit, id, 1, 1_000_000), ctx.Token);
        var (data, chunks) = await ReadToEndAsync(client, ctx, id, 1, 1_000_000);
        var expected = EchoChunks(5, 64);
        if (!data.AsSpan().SequenceEqual(expected))
        {
            return Fail($"the stream's data is \"{Encoding.ASCII.GetString(data)}\"; expected \"{Encoding.ASCII.GetString(expected)}\"");
        }

        return await BarrierAsync(client, ctx, "the END")
            ?? Pass($"RESPONSE_HEAD 200 ({head.GetHeader("content-type")}), {chunks} CHUNK(s) in order, {data.Length} B as expected, END {chunks}");
    }

    // stream-reply-needs-flag: without STREAM_REPLY in the REQUEST, the same request gets one RESPONSE (§4.5.1).
    private static async Task<(CheckOutcome, string)> NeedsFlagAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        var id = Frames.NewId();
        await client.SendAsync(StreamRequest(id, 1, 3, 16, StreamFeatures.None), ctx.Token);
        var reply = await NextAsync(client, ctx, "the RESPONSE");
        var expected = EchoChunks(3, 16);
        if (!reply.IsResponse(200) || !reply.Body.AsSpan().SequenceEqual(expected))
        {
            return Fail($"expected one RESPONSE 200 with the 3 chunks' bytes; got {reply} \"{Encoding.ASCII.GetString(reply.Body)}\"");
        }

        return await BarrierAsync(client, ctx, "the RESPONSE") ?? Pass($"{reply}: the stream collected into one RESPONSE");
    }

    // stream-window: with 2,500 B granted, at most 2,500 B of CHUNK data come and no END; more credit brings the rest (§4.5.5).
    private static async Task<(CheckOutcome, string)> WindowAsync(CheckContext ctx)
    {
        var (client, id, _) = await OpenReplyStreamAsync(ctx, 6, 1000);

        await client.SendAsync(Frames.StreamControl(MessageKind.Credit, id, 1, 2500), ctx.Token);
        var first = await client.BarrierAsync(ctx.Timeout, ctx.Token) ?? throw new CheckFailedException("no PONG after the CREDIT");
        var data = new List<byte>();
        var chunks = 0;
        foreach (var reply in first)
        {
            if (reply.Kind != MessageKind.Chunk || reply.Sequence != chunks || reply.CorrelationId != id || reply.Problem is not null)
            {
                return Fail($"with 2,500 B of credit, expected CHUNK {chunks} or nothing; got {reply}");
            }

            data.AddRange(reply.Body);
            chunks++;
            if (data.Count > 2500)
            {
                return Fail($"{data.Count} B of CHUNK data with 2,500 B of credit (§4.5.5)");
            }
        }

        var before = data.Count;
        await client.SendAsync(Frames.StreamControl(MessageKind.Credit, id, 1, 10_000), ctx.Token);
        var (all, total) = await ReadToEndAsync(client, ctx, id, 1, 12_500, before, chunks, data);
        return all.AsSpan().SequenceEqual(EchoChunks(6, 1000))
            ? Pass($"{before} B within 2,500 B of credit and no END; after 10,000 more: the rest, {total} CHUNK(s), END")
            : Fail("the stream's data differs from the echo's 6 chunks of 1,000 B");
    }

    // stream-cancel: CANCEL stops a streamed reply: nothing more for it, no END, no ERROR; its later CREDIT is late (§4.5.6).
    private static async Task<(CheckOutcome, string)> CancelAsync(CheckContext ctx)
    {
        var (client, id, _) = await OpenReplyStreamAsync(ctx, 1_000_000, 100);

        await client.SendAsync(Frames.StreamControl(MessageKind.Credit, id, 1, 1000), ctx.Token);
        await client.SendAsync(Frames.Control(MessageKind.Cancel, id, 1), ctx.Token);
        await client.SendAsync(Frames.StreamControl(MessageKind.Credit, id, 1, 1_000_000), ctx.Token);
        var after = await client.BarrierAsync(ctx.Timeout, ctx.Token) ?? throw new CheckFailedException("no PONG after the CANCEL");
        after.AddRange(await client.CollectAsync(TimeSpan.FromMilliseconds(300), ctx.Token));
        var data = after.Where(r => r.Kind == MessageKind.Chunk).Sum(r => r.Body.Length);
        var wrong = after.Where(r => r.Kind != MessageKind.Chunk || r.CorrelationId != id || r.Problem is not null).ToList();
        if (wrong.Count > 0)
        {
            return Fail($"after CANCEL: {string.Join("; ", wrong)} (a cancelled stream sends no END and no ERROR)");
        }

        return data > 1000
            ? Fail($"{data} B of CHUNK data: the CREDIT sent after the CANCEL was used")
            : Pass($"{data} B (of 1,000 B granted before the CANCEL), then nothing: no END, no ERROR, the later CREDIT unused");
    }

    // stream-bad-credit: a CREDIT of 0 for an open reply stream breaks it: ERROR MALFORMED, no CHUNK, no END (§7).
    private static async Task<(CheckOutcome, string)> BadCreditAsync(CheckContext ctx)
    {
        var (client, id, _) = await OpenReplyStreamAsync(ctx, 5, 10);

        await client.SendAsync(Frames.StreamControl(MessageKind.Credit, id, 1, 0u), ctx.Token);
        var reply = await NextAsync(client, ctx, "ERROR MALFORMED");
        if (!reply.IsError(IpcErrorCode.Malformed) || reply.CorrelationId != id)
        {
            return Fail($"a CREDIT of 0 must break the stream with ERROR MALFORMED (§7); got {reply}");
        }

        await client.SendAsync(Frames.StreamControl(MessageKind.Credit, id, 1, 1000), ctx.Token);
        return await BarrierAsync(client, ctx, "the ERROR and a valid CREDIT") ?? Pass($"{reply}; then nothing, even with credit");
    }

    // stream-retry-after-end: a retry of a request whose streamed reply ended is not executed: ERROR INTERNAL, REPLAY (§4.5.6).
    private static async Task<(CheckOutcome, string)> RetryAfterEndAsync(CheckContext ctx)
    {
        var (client, id, _) = await OpenReplyStreamAsync(ctx, 2, 10);

        await client.SendAsync(Frames.StreamControl(MessageKind.Credit, id, 1, 1000), ctx.Token);
        await ReadToEndAsync(client, ctx, id, 1, 1000);
        await client.SendAsync(StreamRequest(id, 2, 2, 10), ctx.Token);
        var retry = await NextAsync(client, ctx, "the answer to the retry");
        if (!retry.IsError(IpcErrorCode.Internal) || !retry.IsReplay || retry.Attempt != 2)
        {
            return Fail($"a retry after the stream ended must get ERROR INTERNAL with REPLAY, attempt 2 (§4.5.6); got {retry}");
        }

        return await BarrierAsync(client, ctx, "the retry") ?? Pass($"{retry}");
    }

    // stream-late-ignored: CHUNK, END and CREDIT (valid or not) for no open stream are dropped without a reply (§7).
    private static async Task<(CheckOutcome, string)> LateAsync(CheckContext ctx)
    {
        var client = ctx.NewClient();
        var id = Frames.NewId();
        byte[][] stray =
        [
            Frames.Chunk(id, 1, 0, "late"u8),
            Frames.StreamControl(MessageKind.End, id, 1, 1),
            Frames.StreamControl(MessageKind.Credit, id, 1, 1000),
            Frames.StreamControl(MessageKind.Credit, Frames.NewId(), 1, 0u),
            Frames.StreamControl(MessageKind.End, Frames.NewId(), 1, [1, 2]),
        ];
        foreach (var datagram in stray)
        {
            await client.SendAsync(datagram, ctx.Token);
        }

        return await BarrierAsync(client, ctx, "CHUNK, END and CREDIT for no stream") ?? Pass($"{stray.Length} stray stream datagrams dropped without a reply");
    }

    private static byte[] UploadData()
    {
        var data = new byte[UploadBytes];
        new Random(UploadBytes).NextBytes(data);
        return data;
    }

    // stream-upload(-duplex): REQUEST_HEAD, CHUNKs within the backend's CREDITs, END; the echo's reply has the bytes back,
    // as one RESPONSE, or (duplex: STREAM_REPLY and x-echo-stream: 1) as a reply stream running beside the upload (§4.5.3).
    private static async Task<(CheckOutcome, string)> UploadAsync(CheckContext ctx, bool duplex)
    {
        var client = ctx.NewClient();
        var id = Frames.NewId();
        var data = UploadData();
        (string, string)[] headers = duplex ? [("content-type", "application/octet-stream"), ("x-echo-stream", "1")] : [("content-type", "application/octet-stream")];
        await client.SendAsync(Frames.RequestHead(id, 1, "POST", duplex ? "/echo/duplex" : "/echo/upload", headers, duplex ? StreamFeatures.StreamReply : StreamFeatures.None), ctx.Token);

        long credit = 0, grants = 0;
        var sent = 0;
        uint sequence = 0;
        Reply? head = null, end = null, response = null;
        var echoed = new List<byte>();
        var replyChunks = 0u;
        const long replyWindow = 1L << 30;

        // One loop: send what the credit allows, and take whatever the backend sends (CREDIT, head, CHUNK, END).
        while (response is null && end is null)
        {
            if (sent < data.Length && credit > 0)
            {
                var n = (int)Math.Min(Math.Min(credit, UploadChunk), data.Length - sent);
                await client.SendAsync(Frames.Chunk(id, 1, sequence++, data.AsSpan(sent, n)), ctx.Token);
                sent += n;
                credit -= n;
                if (sent == data.Length)
                {
                    await client.SendAsync(Frames.StreamControl(MessageKind.End, id, 1, sequence), ctx.Token);
                }

                continue;
            }

            var reply = await NextAsync(client, ctx, sent < data.Length ? "CREDIT" : "the reply");
            if (reply.CorrelationId != id)
            {
                return Fail($"a message for another id: {reply}");
            }

            switch (reply.Kind)
            {
                case MessageKind.Credit:
                    credit += reply.Value;
                    grants++;
                    break;
                case MessageKind.ResponseHead when duplex && head is null:
                    head = reply;
                    await client.SendAsync(Frames.StreamControl(MessageKind.Credit, id, 1, (uint)replyWindow), ctx.Token);
                    break;
                case MessageKind.Chunk when head is not null && reply.Sequence == replyChunks:
                    echoed.AddRange(reply.Body);
                    replyChunks++;
                    break;
                case MessageKind.End when head is not null && reply.Value == replyChunks:
                    end = reply;
                    break;
                case MessageKind.Response when !duplex:
                    response = reply;
                    break;
                default:
                    return Fail($"after {sent} B sent: unexpected {reply}");
            }
        }

        var back = response?.Body ?? [.. echoed];
        if (sent != data.Length)
        {
            return Fail($"the backend replied ({response?.ToString() ?? "END"}) after {sent} of {data.Length} B");
        }

        if (response is not null && !response.IsResponse(200))
        {
            return Fail($"expected RESPONSE 200; got {response}");
        }

        if (!back.AsSpan().SequenceEqual(data))
        {
            return Fail($"{back.Length} B came back, not the {data.Length} B sent");
        }

        return await BarrierAsync(client, ctx, "the upload's reply", r => r.Kind == MessageKind.Credit && r.CorrelationId == id)
            ?? Pass($"{data.Length:N0} B uploaded in {sequence} CHUNK(s) within {grants} CREDIT(s); " +
                (duplex ? $"echoed as a stream of {replyChunks} CHUNK(s) while it was sent" : "echoed in one RESPONSE"));
    }

    // stream-upload-beyond-credit: CHUNK data beyond the credit breaks the upload: ERROR MALFORMED (§4.5.5, §7).
    // The echo waits 2 s before it reads (x-echo-delay-ms), so the backend grants nothing beyond its first CREDIT meanwhile.
    private static async Task<(CheckOutcome, string)> BeyondCreditAsync(CheckContext ctx)
    {
        var (client, id, credit) = await OpenUploadAsync(ctx, "/echo/over", [("x-echo-delay-ms", "2000")]);

        // Exactly one byte more than granted, in CHUNKs that each fit a datagram.
        var total = (long)credit.Value + 1;
        var data = new byte[ProtocolConstants.MaxChunkData];
        uint sequence = 0;
        for (long sent = 0; sent < total;)
        {
            var n = (int)Math.Min(data.Length, total - sent);
            await client.SendAsync(Frames.Chunk(id, 1, sequence++, data.AsSpan(0, n)), ctx.Token);
            sent += n;
        }

        var reply = await NextAfterCreditsAsync(client, ctx, "ERROR MALFORMED");

        return reply.IsError(IpcErrorCode.Malformed) && reply.CorrelationId == id
            ? await BarrierAsync(client, ctx, "the ERROR", r => r.Kind == MessageKind.Credit) ?? Pass($"{total} B sent with {credit.Value} B granted: {reply}")
            : Fail($"{total} B sent with {credit.Value} B granted: expected ERROR MALFORMED (§4.5.5); got {reply}");
    }

    // stream-upload-bad-sequence / -bad-end: a CHUNK out of sequence, or an END with the wrong count, breaks the upload:
    // ERROR MALFORMED (§4.5.4, §7).
    private static async Task<(CheckOutcome, string)> BrokenUploadAsync(CheckContext ctx, bool badEnd)
    {
        var (client, id, _) = await OpenUploadAsync(ctx, "/echo/broken");

        if (badEnd)
        {
            await client.SendAsync(Frames.Chunk(id, 1, 0, "abc"u8), ctx.Token);
            await client.SendAsync(Frames.StreamControl(MessageKind.End, id, 1, 2), ctx.Token);
        }
        else
        {
            await client.SendAsync(Frames.Chunk(id, 1, 1, "abc"u8), ctx.Token);
        }

        var reply = await NextAfterCreditsAsync(client, ctx, "ERROR MALFORMED");

        var what = badEnd ? "END 2 after one CHUNK" : "CHUNK sequence 1 first";
        return reply.IsError(IpcErrorCode.Malformed) && reply.CorrelationId == id
            ? await BarrierAsync(client, ctx, "the ERROR", r => r.Kind == MessageKind.Credit) ?? Pass($"{what}: {reply}")
            : Fail($"{what}: expected ERROR MALFORMED (§4.5.4); got {reply}");
    }
}
