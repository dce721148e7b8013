using System.Net;
using System.Net.Sockets;
using Gateway.Ipc.Protocol;

namespace Gateway.Bench.Chaos;

/// <summary>
/// A datagram relay in front of one backend instance that drops, duplicates and delays its replies at random
/// (seeded). The gateway sends to <see cref="SocketPath"/>; the relay forwards from one bound socket (so the
/// backend's replay cache sees one sender) and relays replies back. Survives the backend being killed: a send to
/// a dead backend is dropped, as the kernel would drop it.
/// </summary>
internal sealed class FaultProxy : IAsyncDisposable
{
    private readonly Socket _front;
    private readonly Socket _back;
    private readonly UnixDomainSocketEndPoint _backend;
    private readonly CancellationTokenSource _stop = new();
    private readonly Random _random;
    private readonly Lock _gate = new();
    private readonly Task _frontLoop;
    private readonly Task _backLoop;
    private readonly double _drop;
    private readonly double _duplicate;
    private readonly double _delay;
    private EndPoint? _client;
    private long _replies;
    private long _dropped;
    private long _duplicated;
    private long _delayed;

    public FaultProxy(string socketPath, string upstreamPath, string backendPath, int seed, double drop, double duplicate, double delay)
    {
        SocketPath = socketPath;
        _random = new Random(seed);
        (_drop, _duplicate, _delay) = (drop, duplicate, delay);
        _backend = new UnixDomainSocketEndPoint(backendPath);
        _front = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        _front.Bind(new UnixDomainSocketEndPoint(socketPath));
        _back = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        _back.Bind(new UnixDomainSocketEndPoint(upstreamPath));
        _frontLoop = Task.Run(FrontLoopAsync);
        _backLoop = Task.Run(BackLoopAsync);
    }

    public string SocketPath { get; }

    public long Replies => Interlocked.Read(ref _replies);

    public long Dropped => Interlocked.Read(ref _dropped);

    public long Duplicated => Interlocked.Read(ref _duplicated);

    public long Delayed => Interlocked.Read(ref _delayed);

    private async Task FrontLoopAsync()
    {
        var buffer = new byte[ProtocolConstants.MaxDatagram];
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                var result = await _front.ReceiveFromAsync(buffer, SocketFlags.None, new UnixDomainSocketEndPoint("/x"), _stop.Token);
                if (result.RemoteEndPoint is UnixDomainSocketEndPoint { } from && from.ToString() is { Length: > 0 })
                {
                    _client = from;
                }

                await SendAsync(_back, buffer.AsMemory(0, result.ReceivedBytes), _backend);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (SocketException)
            {
                // A receive error on a datagram socket is about one datagram: go on.
            }
        }
    }

    private async Task BackLoopAsync()
    {
        var buffer = new byte[ProtocolConstants.MaxDatagram];
        while (!_stop.IsCancellationRequested)
        {
            SocketReceiveFromResult result;
            try
            {
                result = await _back.ReceiveFromAsync(buffer, SocketFlags.None, new UnixDomainSocketEndPoint("/x"), _stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (SocketException)
            {
                continue;
            }

            if (_client is not { } client)
            {
                continue;
            }

            var datagram = buffer.AsMemory(0, result.ReceivedBytes);
            var isReply = FrameHeader.TryRead(datagram.Span, out var header) && header.Kind is MessageKind.Response or MessageKind.Error;
            if (!isReply)
            {
                await SendAsync(_front, datagram, client);
                continue;
            }

            Interlocked.Increment(ref _replies);
            double roll;
            int delayMs;
            lock (_gate)
            {
                roll = _random.NextDouble();
                delayMs = _random.Next(100, 900);
            }

            if (roll < _drop)
            {
                Interlocked.Increment(ref _dropped);
            }
            else if (roll < _drop + _duplicate)
            {
                Interlocked.Increment(ref _duplicated);
                await SendAsync(_front, datagram, client);
                await SendAsync(_front, datagram, client);
            }
            else if (roll < _drop + _duplicate + _delay)
            {
                // Late: beyond the attempt timeout for most delays, so the gateway has retried or given up.
                Interlocked.Increment(ref _delayed);
                var copy = datagram.ToArray();
                _ = Task.Delay(delayMs, _stop.Token).ContinueWith(_ => SendAsync(_front, copy, client), TaskScheduler.Default);
            }
            else
            {
                await SendAsync(_front, datagram, client);
            }
        }
    }

    private async Task SendAsync(Socket socket, ReadOnlyMemory<byte> datagram, EndPoint to)
    {
        if (_stop.IsCancellationRequested)
        {
            return;
        }

        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop.Token);
        timeout.CancelAfter(TimeSpan.FromSeconds(1)); // a receiver that stopped reading: drop, as a full queue would
        try
        {
            await socket.SendToAsync(datagram, SocketFlags.None, to, timeout.Token);
        }
        catch (Exception ex) when (ex is SocketException or OperationCanceledException or ObjectDisposedException)
        {
            // The backend is dead (killed) or stuck: the datagram is lost.
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
        }

        _stop.Dispose();
    }
}
