using System.Net;
using System.Net.Sockets;
using Gateway.Ipc.Protocol;

namespace Gateway.Conformance.Tests;

/// <summary>A scripted backend: answers each valid datagram with whatever <c>respond</c> returns (or nothing).</summary>
internal sealed class FakeBackend : IAsyncDisposable
{
    private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;

    public FakeBackend(string path, Func<FrameHeader, byte[], byte[]?> respond, Func<byte[], byte[]?>? onInvalid = null)
    {
        Path = path;
        _socket.Bind(new UnixDomainSocketEndPoint(path));
        _loop = Task.Run(() => LoopAsync(respond, onInvalid));
    }

    public string Path { get; }

    /// <summary>A backend that answers PING with PONG and ignores everything else.</summary>
    public static FakeBackend PingOnly(string path) =>
        new(path, (header, _) => header.Kind == MessageKind.Ping ? Control(MessageKind.Pong, header.CorrelationId, header.Attempt) : null);

    public static byte[] Control(MessageKind kind, ulong id, ushort attempt)
    {
        using var writer = new FrameWriter();
        writer.WriteControl(kind, id, attempt);
        return writer.Complete().ToArray();
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _socket.Dispose();
        try
        {
            await _loop;
        }
        catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
        {
        }

        _stop.Dispose();
    }

    private async Task LoopAsync(Func<FrameHeader, byte[], byte[]?> respond, Func<byte[], byte[]?>? onInvalid)
    {
        var buffer = new byte[ProtocolConstants.MaxDatagram + 1];
        var address = new SocketAddress(AddressFamily.Unix, SocketAddress.GetMaximumAddressSize(AddressFamily.Unix));
        var size = address.Size;
        while (!_stop.IsCancellationRequested)
        {
            address.Size = size;
            var n = await _socket.ReceiveFromAsync(buffer, SocketFlags.None, address, _stop.Token);
            var datagram = buffer.AsSpan(0, n).ToArray();
            byte[]? reply;
            try
            {
                reply = respond(FrameHeader.ReadDatagram(datagram), datagram);
            }
            catch (ProtocolException)
            {
                reply = onInvalid?.Invoke(datagram);
            }

            if (reply is not null && address.Size > 2)
            {
                // The EndPoint overload: SendToAsync with the received SocketAddress got ECONNREFUSED for abstract names.
                await _socket.SendToAsync(reply, SocketFlags.None, new UnixDomainSocketEndPoint("/").Create(address), _stop.Token);
            }
        }
    }
}
