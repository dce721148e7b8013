using System.Net.Sockets;
using System.Security.Cryptography;
using Gateway.Ipc.Protocol;

namespace Gateway.Bench.Chaos;

/// <summary>
/// Sends hostile datagrams, at a steady rate, to the gateway's reply sockets (spoofed replies with random
/// correlation IDs, random bytes, mutated and truncated frames) and to the backends' sockets (random bytes,
/// mutated and truncated frames, replies where requests belong). Half are sent from an unbound socket (no
/// return address), half from a bound one whose replies are drained. Nothing here is a well-formed request.
/// </summary>
internal sealed class Injector : IAsyncDisposable
{
    private readonly Func<IReadOnlyList<string>> _replySockets;
    private readonly IReadOnlyList<string> _backendSockets;
    private readonly Random _random;
    private readonly Socket _unbound = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly Socket _bound = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
    private readonly CancellationTokenSource _stop = new();
    private readonly byte[] _requestTemplate;
    private readonly Task _loop;
    private readonly Task _drain;
    private long _toGateway;
    private long _toBackends;
    private int _disposed;

    public Injector(Func<IReadOnlyList<string>> replySockets, IReadOnlyList<string> backendSockets, int seed, int perSecond)
    {
        _replySockets = replySockets;
        _backendSockets = backendSockets;
        _random = new Random(seed);
        _bound.Bind(new UnixDomainSocketEndPoint("\0gw-chaos-injector-" + Convert.ToHexString(RandomNumberGenerator.GetBytes(6))));
        _unbound.Blocking = false;
        _bound.Blocking = false;
        using (var writer = new FrameWriter())
        {
            writer.BeginRequest(1, 1, 1000, "GET", "/counter/injected");
            _requestTemplate = writer.Complete().ToArray();
        }

        _loop = Task.Run(() => LoopAsync(perSecond));
        _drain = Task.Run(DrainAsync);
    }

    public long ToGateway => Interlocked.Read(ref _toGateway);

    public long ToBackends => Interlocked.Read(ref _toBackends);

    private async Task LoopAsync(int perSecond)
    {
        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(10));
        var perTick = Math.Max(1, perSecond / 100);
        while (await WaitAsync(timer))
        {
            for (var i = 0; i < perTick; i++)
            {
                var replies = _replySockets();
                var toGateway = replies.Count > 0 && _random.Next(2) == 0;
                var target = toGateway ? replies[_random.Next(replies.Count)] : _backendSockets[_random.Next(_backendSockets.Count)];
                var datagram = toGateway ? ForGateway() : ForBackend();
                var socket = _random.Next(2) == 0 ? _unbound : _bound;
                try
                {
                    // Non-blocking: a full receive queue drops the datagram (never stalls the injector).
                    socket.SendTo(datagram, SocketFlags.None, new UnixDomainSocketEndPoint(target));
                    Interlocked.Increment(ref toGateway ? ref _toGateway : ref _toBackends);
                }
                catch (SocketException)
                {
                    // Absent (killed backend), full queue: lost.
                }
            }
        }
    }

    private async Task<bool> WaitAsync(PeriodicTimer timer)
    {
        try
        {
            return await timer.WaitForNextTickAsync(_stop.Token);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    private async Task DrainAsync()
    {
        var buffer = new byte[ProtocolConstants.MaxDatagram];
        while (!_stop.IsCancellationRequested)
        {
            try
            {
                await _bound.ReceiveAsync(buffer, SocketFlags.None, _stop.Token);
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (SocketException)
            {
            }
        }
    }

    /// <summary>A spoofed reply (RESPONSE/ERROR/PONG, random correlation ID), random bytes, or a damaged frame.</summary>
    private byte[] ForGateway()
    {
        var correlation = (ulong)_random.NextInt64();
        using var writer = new FrameWriter();
        switch (_random.Next(5))
        {
            case 0:
                return RandomBytes();
            case 1:
                writer.WriteError(correlation, 1, IpcErrorCode.Internal, "spoofed");
                return writer.Complete().ToArray();
            case 2:
                writer.WriteControl(MessageKind.Pong, correlation);
                return writer.Complete().ToArray();
            default:
                writer.BeginResponse(correlation, 1, 200);
                writer.AddHeader("content-type", "text/plain");
                writer.WriteBody("spoofed"u8);
                var frame = writer.Complete().ToArray();
                return _random.Next(3) switch
                {
                    0 => Mutate(frame),
                    1 => frame[.._random.Next(frame.Length)],
                    _ => frame,
                };
        }
    }

    /// <summary>Random bytes, a mutated or truncated request frame, or a reply sent where requests belong.</summary>
    private byte[] ForBackend()
    {
        switch (_random.Next(4))
        {
            case 0:
                return RandomBytes();
            case 1:
                return Mutate(_requestTemplate);
            case 2:
                return _requestTemplate[.._random.Next(_requestTemplate.Length)];
            default:
                using (var writer = new FrameWriter())
                {
                    writer.BeginResponse((ulong)_random.NextInt64(), 1, 200);
                    return writer.Complete().ToArray();
                }
        }
    }

    private byte[] RandomBytes()
    {
        var bytes = new byte[_random.Next(0, 512)];
        _random.NextBytes(bytes);
        return bytes;
    }

    private byte[] Mutate(byte[] frame)
    {
        var copy = frame.ToArray();
        for (var i = _random.Next(1, 5); i > 0; i--)
        {
            copy[_random.Next(copy.Length)] ^= (byte)_random.Next(1, 256);
        }

        return copy;
    }

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        await _stop.CancelAsync();
        await Task.WhenAll(_loop, _drain);
        _unbound.Dispose();
        _bound.Dispose();
        _stop.Dispose();
    }
}
