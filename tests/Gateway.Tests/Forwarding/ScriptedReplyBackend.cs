using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Gateway.Ipc.Protocol;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// A backend on a real datagram socket that answers each REQUEST with whatever RESPONSE payload <see cref="Reply"/>
/// returns, byte for byte: statuses, header names and values the C# backend library would refuse to encode. PINGs are
/// answered with PONGs (the gateway's health probe). Requests and replies must fit one datagram.
/// </summary>
internal sealed class ScriptedReplyBackend : IAsyncDisposable
{
    private readonly Socket _socket;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _requests;

    public ScriptedReplyBackend(string path, Func<string, byte[]> reply)
    {
        SocketPath = path;
        Reply = reply;
        _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        _socket.Bind(new UnixDomainSocketEndPoint(path));
        _loop = Task.Run(LoopAsync);
    }

    public string SocketPath { get; }

    /// <summary>The RESPONSE payload (status, headers, body) for a request with this method.</summary>
    public Func<string, byte[]> Reply { get; set; }

    public int Requests => Volatile.Read(ref _requests);

    public Task Loop => _loop;

    /// <summary>The last exception of the request handling (a test's script or a request it could not read).</summary>
    public Exception? Error { get; private set; }

    /// <summary>A RESPONSE payload (docs/protocol.md section 4.2) from raw parts; nothing is checked.</summary>
    public static byte[] Payload(int status, IEnumerable<(byte[] Name, byte[] Value)> headers, byte[] body)
    {
        var list = headers.ToList();
        var buffer = new List<byte>();
        buffer.AddRange([(byte)(status >> 8), (byte)status, (byte)(list.Count >> 8), (byte)list.Count]);
        foreach (var (name, value) in list)
        {
            buffer.Add((byte)name.Length);
            buffer.AddRange(name);
            buffer.AddRange([(byte)(value.Length >> 8), (byte)value.Length]);
            buffer.AddRange(value);
        }

        buffer.AddRange(body);
        return [.. buffer];
    }

    public static byte[] Payload(int status, IEnumerable<(string Name, string Value)> headers, string body) =>
        Payload(status, headers.Select(h => (Encoding.Latin1.GetBytes(h.Name), Encoding.Latin1.GetBytes(h.Value))), Encoding.UTF8.GetBytes(body));

    private async Task LoopAsync()
    {
        var buffer = new byte[ProtocolConstants.MaxDatagram];
        var sender = new SocketAddress(AddressFamily.Unix, 128);
        while (!_stop.IsCancellationRequested)
        {
            sender.Size = 128; // a receive shrinks it to the sender's address
            int received;
            try
            {
                received = await _socket.ReceiveFromAsync(buffer, SocketFlags.None, sender, _stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            if (received < ProtocolConstants.HeaderSize)
            {
                continue;
            }

            var kind = (MessageKind)buffer[3];
            var attempt = BinaryPrimitives.ReadUInt16BigEndian(buffer.AsSpan(6));
            var correlationId = BinaryPrimitives.ReadUInt64BigEndian(buffer.AsSpan(8));
            byte[] payload;
            if (kind == MessageKind.Ping)
            {
                payload = [];
            }
            else if (kind == MessageKind.Request && (buffer[4] & (byte)MessageFlags.Fragment) == 0)
            {
                Interlocked.Increment(ref _requests);
                try
                {
                    var method = RequestView.Read(buffer.AsSpan(ProtocolConstants.HeaderSize, received - ProtocolConstants.HeaderSize)).GetMethod();
                    payload = Reply(method);
                }
                catch (Exception ex)
                {
                    Error = ex;
                    continue;
                }
            }
            else
            {
                continue;
            }

            var frame = new byte[ProtocolConstants.HeaderSize + payload.Length];
            frame[0] = ProtocolConstants.Magic0;
            frame[1] = ProtocolConstants.Magic1;
            frame[2] = ProtocolConstants.Version;
            frame[3] = (byte)(kind == MessageKind.Ping ? MessageKind.Pong : MessageKind.Response);
            BinaryPrimitives.WriteUInt16BigEndian(frame.AsSpan(6), attempt);
            BinaryPrimitives.WriteUInt64BigEndian(frame.AsSpan(8), correlationId);
            BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(20), (uint)payload.Length);
            payload.CopyTo(frame, ProtocolConstants.HeaderSize);
            var to = new SocketAddress(AddressFamily.Unix, sender.Size);
            sender.Buffer.Span[..sender.Size].CopyTo(to.Buffer.Span);
            try
            {
                await _socket.SendToAsync(frame, SocketFlags.None, to, _stop.Token);
            }
            catch (SocketException)
            {
                // The gateway's reply socket is gone (it stopped): nothing to answer.
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _socket.Dispose();
        await _loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        _stop.Dispose();
    }
}

/// <summary>Sends raw request bytes over the gateway's Unix socket and reads the connection to its end.</summary>
internal static class RawUnixHttp
{
    public static async Task<byte[]> ExchangeAsync(string socketPath, byte[] request, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        using var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), cts.Token);
        await socket.SendAsync(request, SocketFlags.None, cts.Token);
        using var received = new MemoryStream();
        var buffer = new byte[16 * 1024];
        while (true)
        {
            int n;
            try
            {
                n = await socket.ReceiveAsync(buffer, SocketFlags.None, cts.Token);
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
            {
                break; // an aborted connection: what arrived is judged by the parser
            }
            catch (OperationCanceledException) when (cts.IsCancellationRequested)
            {
                throw new TimeoutException($"No end of the connection within {timeout.TotalSeconds:0.#} s; received: \"{Encoding.Latin1.GetString(received.ToArray())}\"");
            }

            if (n == 0)
            {
                break;
            }

            received.Write(buffer, 0, n);
        }

        return received.ToArray();
    }

    /// <summary>A request with <c>Connection: close</c>, so that the response is the rest of the connection.</summary>
    public static byte[] Request(string method, string target, byte[]? body = null, params (string Name, string Value)[] headers)
    {
        var head = new StringBuilder($"{method} {target} HTTP/1.1\r\nHost: gateway\r\nConnection: close\r\n");
        foreach (var (name, value) in headers)
        {
            head.Append(name).Append(": ").Append(value).Append("\r\n");
        }

        if (body is not null)
        {
            head.Append("Content-Length: ").Append(body.Length).Append("\r\n");
        }

        head.Append("\r\n");
        return [.. Encoding.ASCII.GetBytes(head.ToString()), .. body ?? []];
    }
}
