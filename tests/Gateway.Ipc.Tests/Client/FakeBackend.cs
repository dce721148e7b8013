using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Transport;

namespace Gateway.Ipc.Tests.Client;

/// <summary>A request (or CANCEL) received by <see cref="FakeBackend"/>, reassembled if it was fragmented.</summary>
internal sealed record ReceivedMessage(FrameHeader Header, byte[] Payload, SocketAddress Sender)
{
    public byte[] Body => RequestView.Read(Payload).Body.ToArray();
}

/// <summary>
/// A minimal backend for client tests: binds a datagram socket, answers PINGs at once (in order with the replies
/// it sends), reassembles fragmented requests and queues every REQUEST/CANCEL for the test to answer explicitly,
/// or echoes them when <see cref="StartEcho"/> was called.
/// </summary>
internal sealed class FakeBackend : IAsyncDisposable
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);
    private readonly Channel<ReceivedMessage> _received = Channel.CreateUnbounded<ReceivedMessage>();
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private Task? _echo;

    public FakeBackend(string path, bool answerPings = true)
    {
        Path = path;
        AnswerPings = answerPings;
        Socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        Socket.Bind(new UnixDomainSocketEndPoint(path));
        _loop = Task.Run(LoopAsync);
    }

    public string Path { get; }

    public Socket Socket { get; }

    public bool AnswerPings { get; }

    /// <summary>Waits for the next REQUEST or CANCEL.</summary>
    public Task<ReceivedMessage> ReceiveAsync() => _received.Reader.ReadAsync().AsTask().WaitAsync(HangGuard);

    /// <summary>Echoes every request: status 200, body = request body, header x-attempt.</summary>
    public void StartEcho() => _echo = Task.Run(async () =>
    {
        await foreach (var request in _received.Reader.ReadAllAsync(_stop.Token))
        {
            if (request.Header.Kind == MessageKind.Request)
            {
                await ReplyAsync(request, 200, request.Body);
            }
        }
    });

    public async Task ReplyAsync(ReceivedMessage request, int status, ReadOnlyMemory<byte> body, ushort? attempt = null, MessageFlags flags = MessageFlags.None)
    {
        using var writer = new FrameWriter();
        writer.BeginResponse(request.Header.CorrelationId, attempt ?? request.Header.Attempt, status);
        writer.AddHeader("content-type", "application/octet-stream");
        writer.WriteBody(body.Span);
        writer.Complete();
        FrameHeader.AddFlags(writer.WrittenSpan, flags);
        await DatagramSender.SendMessageAsync(Socket, writer.WrittenMemory, request.Sender, _stop.Token).AsTask().WaitAsync(HangGuard);
    }

    public async Task ReplyErrorAsync(ReceivedMessage request, IpcErrorCode code, string message)
    {
        using var writer = new FrameWriter();
        writer.WriteError(request.Header.CorrelationId, request.Header.Attempt, code, message);
        await DatagramSender.SendMessageAsync(Socket, writer.WrittenMemory, request.Sender, _stop.Token).AsTask().WaitAsync(HangGuard);
    }

    /// <summary>Sends raw bytes as one datagram to <paramref name="destination"/>.</summary>
    public async Task SendRawAsync(ReadOnlyMemory<byte> datagram, SocketAddress destination) =>
        await Socket.SendToAsync(datagram, SocketFlags.None, destination, _stop.Token).AsTask().WaitAsync(HangGuard);

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        Socket.Dispose();
        try
        {
            await _loop;
        }
        catch (OperationCanceledException)
        {
        }

        if (_echo is not null)
        {
            try
            {
                await _echo;
            }
            catch (OperationCanceledException)
            {
            }
        }

        _stop.Dispose();
    }

    private async Task LoopAsync()
    {
        using var reassembler = new Reassembler();
        var buffer = new byte[ProtocolConstants.MaxDatagram + 1];
        var maxAddress = SocketAddress.GetMaximumAddressSize(AddressFamily.Unix);
        var from = new SocketAddress(AddressFamily.Unix, maxAddress);
        while (!_stop.IsCancellationRequested)
        {
            int n;
            try
            {
                from.Size = maxAddress;
                n = await Socket.ReceiveFromAsync(buffer, SocketFlags.None, from, _stop.Token);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            FrameHeader header;
            try
            {
                header = FrameHeader.ReadDatagram(buffer.AsSpan(0, n));
            }
            catch (ProtocolException)
            {
                continue;
            }

            var sender = Copy(from);
            if (header.Kind == MessageKind.Ping)
            {
                if (AnswerPings)
                {
                    var pong = new byte[ProtocolConstants.HeaderSize];
                    new FrameHeader(MessageKind.Pong, MessageFlags.None, header.Attempt, header.CorrelationId, 0, 0).Write(pong);
                    await Socket.SendToAsync(pong, SocketFlags.None, sender, _stop.Token);
                }

                continue;
            }

            if (header.IsFragment)
            {
                if (reassembler.Add(sender.Buffer.Span[..sender.Size], buffer.AsSpan(0, n), out var message) == ReassemblyResult.Completed)
                {
                    using (message)
                    {
                        _received.Writer.TryWrite(new ReceivedMessage(message!.Header, message.Payload.ToArray(), sender));
                    }
                }

                continue;
            }

            _received.Writer.TryWrite(new ReceivedMessage(header, buffer.AsSpan(ProtocolConstants.HeaderSize, n - ProtocolConstants.HeaderSize).ToArray(), sender));
        }
    }

    private static SocketAddress Copy(SocketAddress address)
    {
        var copy = new SocketAddress(AddressFamily.Unix, address.Size);
        address.Buffer.Span[..address.Size].CopyTo(copy.Buffer.Span);
        return copy;
    }
}
