using System.Net;
using System.Net.Sockets;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Transport;

namespace Gateway.Ipc.Tests.Backend;

/// <summary>
/// A plain client for backend tests: a datagram socket bound to a unique Linux abstract name (no file to clean up),
/// encoding with <see cref="FrameWriter"/> and decoding replies with the protocol views.
/// </summary>
internal sealed class TestClient : IDisposable
{
    /// <summary>Safety net against hangs only; no test asserts on time.</summary>
    public static readonly TimeSpan ReceiveTimeout = TimeSpan.FromSeconds(30);

    private readonly UnixDomainSocketEndPoint _backend;
    private readonly FrameWriter _writer = new();
    private readonly byte[] _buffer = new byte[ProtocolConstants.MaxDatagram + 1];

    public TestClient(string backendPath)
    {
        _backend = new UnixDomainSocketEndPoint(backendPath);
        Name = "gw-test-" + Guid.NewGuid().ToString("N");
        Socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        Socket.Bind(new UnixDomainSocketEndPoint("\0" + Name));
    }

    public Socket Socket { get; }

    /// <summary>The abstract name, as the backend reports it (<c>@name</c>).</summary>
    public string Address => "@" + Name;

    private string Name { get; }

    public void SendRequest(
        ulong id,
        ushort attempt = 1,
        uint budgetMs = 0,
        string method = "GET",
        string target = "/",
        IEnumerable<(string Name, string Value)>? headers = null,
        byte[]? body = null,
        string traceParent = "")
    {
        _writer.BeginRequest(id, attempt, budgetMs, method, target, traceParent);
        foreach (var (name, value) in headers ?? [])
        {
            _writer.AddHeader(name, value);
        }

        _writer.WriteBody(body ?? []);
        SendRaw(_writer.Complete().Span);
    }

    /// <summary>Encodes a request (fragmented by <see cref="DatagramSender"/> when larger than a datagram) and sends it.</summary>
    public async Task SendLargeRequestAsync(ulong id, byte[] body, ushort attempt = 1, string method = "PUT", string target = "/large")
    {
        _writer.BeginRequest(id, attempt, 0, method, target);
        _writer.WriteBody(body);
        using var timeout = new CancellationTokenSource(ReceiveTimeout);
        await DatagramSender.SendMessageAsync(Socket, _writer.Complete(), _backend.Serialize(), timeout.Token);
    }

    /// <summary>Receives one whole message, reassembling fragments.</summary>
    public async Task<Reply> ReceiveMessageAsync()
    {
        using var reassembler = new Reassembler();
        var from = new SocketAddress(AddressFamily.Unix, SocketAddress.GetMaximumAddressSize(AddressFamily.Unix));
        using var timeout = new CancellationTokenSource(ReceiveTimeout);
        while (true)
        {
            from.Size = SocketAddress.GetMaximumAddressSize(AddressFamily.Unix);
            var n = await Socket.ReceiveFromAsync(_buffer, SocketFlags.None, from, timeout.Token);
            var datagram = _buffer.AsMemory(0, n);
            var header = FrameHeader.ReadDatagram(datagram.Span);
            if (!header.IsFragment)
            {
                return new Reply(header, datagram[ProtocolConstants.HeaderSize..].ToArray(), "");
            }

            var result = reassembler.Add(from.Buffer.Span[..from.Size], datagram.Span, out var message);
            if (result == ReassemblyResult.Completed)
            {
                using (message)
                {
                    // The reassembled header has FRAGMENT cleared; keep the sender's other flags (REPLAY).
                    return new Reply(message!.Header, message.Payload.ToArray(), "");
                }
            }

            Assert.Equal(ReassemblyResult.Incomplete, result);
        }
    }

    public void SendControl(MessageKind kind, ulong id, ushort attempt = 0)
    {
        _writer.WriteControl(kind, id, attempt);
        SendRaw(_writer.WrittenSpan);
    }

    public void SendRaw(ReadOnlySpan<byte> datagram) => Socket.SendTo(datagram, SocketFlags.None, _backend);

    /// <summary>Sends a PING and waits for its PONG, proving the backend's loop processed everything sent before.</summary>
    public async Task BarrierAsync(ulong pingId = 0xB0B0)
    {
        SendControl(MessageKind.Ping, pingId);
        var reply = await ReceiveAsync();
        Assert.Equal(MessageKind.Pong, reply.Header.Kind);
        Assert.Equal(pingId, reply.Header.CorrelationId);
    }

    public async Task<Reply> ReceiveAsync()
    {
        using var timeout = new CancellationTokenSource(ReceiveTimeout);
        var result = await Socket.ReceiveFromAsync(_buffer, SocketFlags.None, new UnixDomainSocketEndPoint("/"), timeout.Token);
        var datagram = _buffer.AsSpan(0, result.ReceivedBytes);
        var header = FrameHeader.ReadDatagram(datagram);
        return new Reply(header, datagram[ProtocolConstants.HeaderSize..].ToArray(), result.RemoteEndPoint.ToString()!);
    }

    public void Dispose()
    {
        Socket.Dispose();
        _writer.Dispose();
    }
}

internal sealed record Reply(FrameHeader Header, byte[] Payload, string From)
{
    public int Status => ResponseView.Read(Payload).Status;

    public string BodyText => System.Text.Encoding.UTF8.GetString(ResponseView.Read(Payload).Body);

    public byte[] Body => ResponseView.Read(Payload).Body.ToArray();

    public string? GetHeader(string name) => ResponseView.Read(Payload).Headers.GetValue(name);

    public IpcErrorCode ErrorCode => ErrorView.Read(Payload).Code;

    public string ErrorMessage => ErrorView.Read(Payload).GetMessage();
}
