using System.Buffers.Binary;
using System.Net.Sockets;
using System.Threading.Channels;
using Gateway.Ipc.Protocol;

namespace Gateway.Conformance;

/// <summary>
/// The kit's own minimal client: a datagram socket bound to a fresh abstract name, so that each check has its
/// own address (and therefore its own replay-cache keys at the backend). It sends exactly the bytes it is given
/// and delivers every message the backend sends back, reassembled (§6) and decoded, in arrival order.
/// </summary>
internal sealed class KitClient : IAsyncDisposable
{
    private static readonly UnixDomainSocketEndPoint s_template = new("/");

    private readonly Socket _socket;
    private readonly UnixDomainSocketEndPoint _backend;
    private readonly Channel<Reply> _replies = Channel.CreateUnbounded<Reply>(new() { SingleWriter = true });
    private readonly Dictionary<(MessageKind, ulong, ushort), Partial> _partials = [];
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _receiving;

    public KitClient(string backendPath)
    {
        _backend = new UnixDomainSocketEndPoint(backendPath);
        _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        // An abstract name (leading NUL) leaves no file behind; a bound sender can be replied to (§1).
        _socket.Bind(new UnixDomainSocketEndPoint($"\0gw-conformance-{Guid.NewGuid():N}"));
        _receiving = Task.Run(ReceiveLoopAsync);
    }

    /// <summary>Sends one datagram, byte for byte.</summary>
    public async Task SendAsync(ReadOnlyMemory<byte> datagram, CancellationToken cancellationToken)
    {
        await _socket.SendToAsync(datagram, SocketFlags.None, _backend, cancellationToken);
    }

    /// <summary>Sends a whole message, split into fragments when it does not fit one datagram (§6).</summary>
    public async Task SendMessageAsync(byte[] message, CancellationToken cancellationToken)
    {
        foreach (var datagram in Frames.Split(message))
        {
            await SendAsync(datagram, cancellationToken);
        }
    }

    /// <summary>The next message from the backend, or null if none arrives within <paramref name="timeout"/>.</summary>
    public async Task<Reply?> ReceiveAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        using var cts = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        cts.CancelAfter(timeout);
        try
        {
            return await _replies.Reader.ReadAsync(cts.Token);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }
        catch (ChannelClosedException)
        {
            return null;
        }
    }

    /// <summary>Every message that arrives within <paramref name="window"/>.</summary>
    public async Task<List<Reply>> CollectAsync(TimeSpan window, CancellationToken cancellationToken)
    {
        var replies = new List<Reply>();
        var until = DateTimeOffset.UtcNow + window;
        while (until - DateTimeOffset.UtcNow is { Ticks: > 0 } left && await ReceiveAsync(left, cancellationToken) is { } reply)
        {
            replies.Add(reply);
        }

        return replies;
    }

    /// <summary>
    /// A barrier: sends a PING and waits for its PONG, twice, and returns every other message that arrived
    /// meanwhile, or null if a PONG did not come within <paramref name="timeout"/>. A backend reads its socket in
    /// order, so anything it was going to send about earlier datagrams is very likely sent by then.
    /// </summary>
    public async Task<List<Reply>?> BarrierAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var others = new List<Reply>();
        for (var round = 0; round < 2; round++)
        {
            var id = Frames.NewId();
            await SendAsync(Frames.Control(MessageKind.Ping, id, 1), cancellationToken);
            while (true)
            {
                var reply = await ReceiveAsync(timeout, cancellationToken);
                if (reply is null)
                {
                    return null;
                }

                if (reply.Kind == MessageKind.Pong && reply.CorrelationId == id && reply.Problem is null)
                {
                    break;
                }

                others.Add(reply);
            }
        }

        return others;
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _socket.Dispose();
        try
        {
            await _receiving;
        }
        catch (OperationCanceledException)
        {
        }

        _stop.Dispose();
    }

    private async Task ReceiveLoopAsync()
    {
        var buffer = new byte[ProtocolConstants.MaxDatagram + 1];
        var address = new System.Net.SocketAddress(AddressFamily.Unix, System.Net.SocketAddress.GetMaximumAddressSize(AddressFamily.Unix));
        var addressSize = address.Size;
        try
        {
            while (!_stop.IsCancellationRequested)
            {
                address.Size = addressSize; // a receive shrinks it (PLATFORM.md)
                var n = await _socket.ReceiveFromAsync(buffer, SocketFlags.None, address, _stop.Token);
                OnDatagram(buffer.AsSpan(0, n), s_template.Create(address).ToString() ?? "");
            }
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException || (e is SocketException && _stop.IsCancellationRequested))
        {
        }
        finally
        {
            _replies.Writer.TryComplete();
        }
    }

    private void OnDatagram(ReadOnlySpan<byte> datagram, string sender)
    {
        var raw = datagram.ToArray();
        if (datagram.Length > ProtocolConstants.MaxDatagram)
        {
            Deliver(Reply.Invalid(raw, sender, $"a datagram larger than {ProtocolConstants.MaxDatagram} B (§1)"));
            return;
        }

        FrameHeader header;
        try
        {
            header = FrameHeader.ReadDatagram(datagram);
        }
        catch (ProtocolException e)
        {
            Deliver(Reply.Invalid(raw, sender, $"an invalid datagram: {e.Message}"));
            return;
        }

        if (!header.IsFragment)
        {
            Deliver(Reply.Decode(header, raw, datagram[ProtocolConstants.HeaderSize..].ToArray(), 1, sender));
            return;
        }

        // §6: fragments in order from offset 0, contiguous, same header.
        var offset = FrameHeader.ReadFragmentOffset(datagram);
        var data = datagram[ProtocolConstants.FragmentHeaderSize..];
        var key = (header.Kind, header.CorrelationId, header.Attempt);
        if (offset == 0)
        {
            if (ProtocolConstants.HeaderSize + header.PayloadLength <= ProtocolConstants.MaxDatagram)
            {
                Deliver(Reply.Invalid(raw, sender, "a message that fits one datagram was fragmented (§6)"));
                return;
            }

            if (header.PayloadLength > 4 * ProtocolConstants.DefaultMaxMessageBytes)
            {
                Deliver(Reply.Invalid(raw, sender, $"a fragmented message of {header.PayloadLength} B"));
                return;
            }

            _partials[key] = new Partial(header, raw, new byte[header.PayloadLength]);
        }

        if (!_partials.TryGetValue(key, out var partial) || partial.Next != offset || partial.Header != header)
        {
            _partials.Remove(key);
            Deliver(Reply.Invalid(raw, sender, $"a fragment at offset {offset} out of order or with a different header (§6)"));
            return;
        }

        data.CopyTo(partial.Payload.AsSpan((int)offset));
        partial.Next += (uint)data.Length;
        partial.Datagrams++;
        if (partial.Next == header.PayloadLength)
        {
            _partials.Remove(key);
            var whole = header with { Flags = header.Flags & ~MessageFlags.Fragment };
            Deliver(Reply.Decode(whole, partial.Raw, partial.Payload, partial.Datagrams, sender));
        }
    }

    private void Deliver(Reply reply) => _replies.Writer.TryWrite(reply);

    private sealed class Partial(FrameHeader header, byte[] raw, byte[] payload)
    {
        public FrameHeader Header { get; } = header;

        public byte[] Raw { get; } = raw;

        public byte[] Payload { get; } = payload;

        public uint Next { get; set; }

        public int Datagrams { get; set; }
    }
}

/// <summary>Builds the messages and datagrams the checks send.</summary>
internal static class Frames
{
    public static ulong NewId() => (ulong)Random.Shared.NextInt64(1, long.MaxValue);

    public static byte[] Request(ulong id, ushort attempt, uint budgetMs, string method, string target, IEnumerable<(string Name, string Value)>? headers = null, byte[]? body = null, StreamFeatures features = StreamFeatures.None)
    {
        using var writer = new FrameWriter();
        writer.BeginRequest(id, attempt, budgetMs, method, target);
        writer.SetFeatures(features);
        foreach (var (name, value) in headers ?? [])
        {
            writer.AddHeader(name, value);
        }

        writer.WriteBody(body ?? []);
        return writer.Complete().ToArray();
    }

    /// <summary>A REQUEST_HEAD (§4.5.3): a request whose body follows as CHUNKs.</summary>
    public static byte[] RequestHead(ulong id, ushort attempt, string method, string target, IEnumerable<(string Name, string Value)>? headers = null, StreamFeatures features = StreamFeatures.None)
    {
        using var writer = new FrameWriter();
        writer.BeginRequestHead(id, attempt, 0, method, target);
        writer.SetFeatures(features);
        foreach (var (name, value) in headers ?? [])
        {
            writer.AddHeader(name, value);
        }

        return writer.Complete().ToArray();
    }

    /// <summary>A CHUNK (§4.5.4).</summary>
    public static byte[] Chunk(ulong id, ushort attempt, uint sequence, ReadOnlySpan<byte> data)
    {
        using var writer = new FrameWriter();
        writer.WriteChunk(id, attempt, sequence, data);
        return writer.WrittenSpan.ToArray();
    }

    /// <summary>An END or CREDIT with a hand-made payload (which may break the rules of §4.5.4 and §4.5.5).</summary>
    public static byte[] StreamControl(MessageKind kind, ulong id, ushort attempt, byte[] payload)
    {
        var datagram = new byte[ProtocolConstants.HeaderSize + payload.Length];
        new FrameHeader(kind, MessageFlags.None, attempt, id, 0, (uint)payload.Length).Write(datagram);
        payload.CopyTo(datagram, ProtocolConstants.HeaderSize);
        return datagram;
    }

    /// <summary>An END or CREDIT carrying <paramref name="value"/>.</summary>
    public static byte[] StreamControl(MessageKind kind, ulong id, ushort attempt, uint value)
    {
        var payload = new byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(payload, value);
        return StreamControl(kind, id, attempt, payload);
    }

    public static byte[] Control(MessageKind kind, ulong id, ushort attempt)
    {
        using var writer = new FrameWriter();
        writer.WriteControl(kind, id, attempt);
        return writer.Complete().ToArray();
    }

    /// <summary>A REQUEST header with a hand-made payload (which may break the rules of §4.1).</summary>
    public static byte[] RawRequest(ulong id, ushort attempt, byte[] payload)
    {
        var datagram = new byte[ProtocolConstants.HeaderSize + payload.Length];
        new FrameHeader(MessageKind.Request, MessageFlags.None, attempt, id, 0, (uint)payload.Length).Write(datagram);
        payload.CopyTo(datagram, ProtocolConstants.HeaderSize);
        return datagram;
    }

    /// <summary>The datagrams of a message: itself if it fits, otherwise its fragments (§6).</summary>
    public static IEnumerable<byte[]> Split(byte[] message)
    {
        if (message.Length <= ProtocolConstants.MaxDatagram)
        {
            yield return message;
            yield break;
        }

        var payload = message.AsMemory(ProtocolConstants.HeaderSize);
        for (var offset = 0; offset < payload.Length; offset += ProtocolConstants.MaxFragmentData)
        {
            yield return Fragment(message, (uint)offset, payload.Span.Slice(offset, Math.Min(ProtocolConstants.MaxFragmentData, payload.Length - offset)));
        }
    }

    /// <summary>One fragment datagram: <paramref name="message"/>'s header with FRAGMENT set, the offset, the data.</summary>
    public static byte[] Fragment(ReadOnlySpan<byte> message, uint offset, ReadOnlySpan<byte> data)
    {
        var datagram = new byte[ProtocolConstants.FragmentHeaderSize + data.Length];
        message[..ProtocolConstants.HeaderSize].CopyTo(datagram);
        FrameHeader.AddFlags(datagram, MessageFlags.Fragment);
        BinaryPrimitives.WriteUInt32BigEndian(datagram.AsSpan(ProtocolConstants.HeaderSize), offset);
        data.CopyTo(datagram.AsSpan(ProtocolConstants.FragmentHeaderSize));
        return datagram;
    }
}
