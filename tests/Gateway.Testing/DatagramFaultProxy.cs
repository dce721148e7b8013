using System.Net;
using System.Net.Sockets;
using Gateway.Ipc.Protocol;

namespace Gateway.Testing;

/// <summary>
/// A fault-injecting datagram relay between one client and one backend, over real sockets: the client sends to
/// <see cref="SocketPath"/>; the relay forwards from its own bound socket (one sender address, so the backend's
/// replay cache sees one client) and relays replies back, dropping or duplicating RESPONSE/ERROR replies on demand.
/// </summary>
public sealed class DatagramFaultProxy : IAsyncDisposable
{
    private readonly Socket _front;
    private readonly Socket _back;
    private readonly UnixDomainSocketEndPoint _backend;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _frontLoop;
    private readonly Task _backLoop;
    private readonly Lock _gate = new();
    private readonly List<FrameHeader> _requests = [];
    private readonly List<FrameHeader> _replies = [];
    private EndPoint? _client;
    private int _dropReplies;

    public DatagramFaultProxy(string socketPath, string upstreamPath, string backendPath)
    {
        SocketPath = socketPath;
        _backend = new UnixDomainSocketEndPoint(backendPath);
        _front = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        _front.Bind(new UnixDomainSocketEndPoint(socketPath));
        _back = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        _back.Bind(new UnixDomainSocketEndPoint(upstreamPath));
        _frontLoop = Task.Run(FrontLoopAsync);
        _backLoop = Task.Run(BackLoopAsync);
    }

    public string SocketPath { get; }

    /// <summary>Every further RESPONSE/ERROR reply is sent twice.</summary>
    public bool DuplicateReplies { get; set; }

    /// <summary>Completes when a reply has been dropped.</summary>
    public TaskCompletionSource ReplyDropped { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>Drops the next <paramref name="count"/> RESPONSE/ERROR replies.</summary>
    public void DropReplies(int count) => Interlocked.Exchange(ref _dropReplies, count);

    /// <summary>Headers of the REQUEST datagrams relayed to the backend.</summary>
    public IReadOnlyList<FrameHeader> Requests
    {
        get
        {
            lock (_gate)
            {
                return [.. _requests];
            }
        }
    }

    /// <summary>Headers of the replies relayed to the client (a duplicated one twice).</summary>
    public IReadOnlyList<FrameHeader> Replies
    {
        get
        {
            lock (_gate)
            {
                return [.. _replies];
            }
        }
    }

    private async Task FrontLoopAsync()
    {
        var buffer = new byte[ProtocolConstants.MaxDatagram];
        while (!_stop.IsCancellationRequested)
        {
            var result = await _front.ReceiveFromAsync(buffer, SocketFlags.None, new UnixDomainSocketEndPoint("/x"), _stop.Token);
            _client = result.RemoteEndPoint;
            if (FrameHeader.TryRead(buffer.AsSpan(0, result.ReceivedBytes), out var header) && header.Kind == MessageKind.Request)
            {
                lock (_gate)
                {
                    _requests.Add(header);
                }
            }

            await _back.SendToAsync(buffer.AsMemory(0, result.ReceivedBytes), SocketFlags.None, _backend, _stop.Token);
        }
    }

    private async Task BackLoopAsync()
    {
        var buffer = new byte[ProtocolConstants.MaxDatagram];
        while (!_stop.IsCancellationRequested)
        {
            var result = await _back.ReceiveFromAsync(buffer, SocketFlags.None, new UnixDomainSocketEndPoint("/x"), _stop.Token);
            var datagram = buffer.AsMemory(0, result.ReceivedBytes);
            var isReply = FrameHeader.TryRead(datagram.Span, out var header) && header.Kind is MessageKind.Response or MessageKind.Error;
            if (isReply && Interlocked.Decrement(ref _dropReplies) >= 0)
            {
                ReplyDropped.TrySetResult();
                continue;
            }

            if (isReply)
            {
                lock (_gate)
                {
                    _replies.Add(header);
                }
            }

            if (_client is { } client)
            {
                await _front.SendToAsync(datagram, SocketFlags.None, client, _stop.Token);
                if (isReply && DuplicateReplies)
                {
                    lock (_gate)
                    {
                        _replies.Add(header);
                    }

                    await _front.SendToAsync(datagram, SocketFlags.None, client, _stop.Token);
                }
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _front.Dispose();
        _back.Dispose();
        try
        {
            await Task.WhenAll(_frontLoop, _backLoop);
        }
        catch (Exception ex) when (ex is OperationCanceledException or SocketException or ObjectDisposedException)
        {
            // Stopped.
        }

        _stop.Dispose();
    }
}
