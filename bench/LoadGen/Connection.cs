using System.Diagnostics;
using System.Net.Sockets;

namespace Gateway.Bench.LoadGen;

/// <summary>One keep-alive connection running a closed loop: send, read the whole response, repeat.</summary>
internal sealed class Connection
{
    private readonly LoadRunner _runner;
    private readonly byte[] _request;
    private readonly byte[] _expected;
    private readonly bool _verify;
    private readonly byte[] _buffer;
    private ResponseParser _parser;
    private Socket? _socket;

    public Connection(LoadRunner runner, byte[] request, byte[] expected, bool verify, int receiveBufferSize)
    {
        _buffer = new byte[receiveBufferSize];
        _runner = runner;
        _request = request;
        _expected = expected;
        _verify = verify;
    }

    // Counters: written by this connection only, summed after the run.
    public long Completed;
    public long Non2xx;
    public long Correct;
    public long Reconnects;
    public readonly long[] Errors = new long[ErrorKinds.All.Length];
    public bool InFlight;

    public async Task<bool> ConnectAsync()
    {
        for (var attempt = 0; ; attempt++)
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(_runner.EndPoint);
                _socket = socket;
                return true;
            }
            catch (SocketException e) when (e.SocketErrorCode is SocketError.WouldBlock or SocketError.TryAgain && attempt < 200)
            {
                // The listener's backlog is full (AF_UNIX answers EAGAIN): back off and retry.
                socket.Dispose();
                await Task.Delay(5 + attempt);
            }
            catch (SocketException)
            {
                socket.Dispose();
                Errors[(int)ErrorKind.Connect]++;
                return false;
            }
        }
    }

    public void Abort()
    {
        var socket = _socket;
        _socket = null;
        socket?.Dispose();
    }

    public async Task RunAsync(int requestLimit)
    {
        var sent = 0;
        try
        {
            while (!_runner.StopRequested && (requestLimit == 0 || sent < requestLimit))
            {
                if (_socket is null)
                {
                    if (!await ConnectAsync())
                    {
                        if (requestLimit != 0)
                        {
                            return;
                        }

                        await Task.Delay(10);
                        continue;
                    }

                    Reconnects++;
                }

                sent++;
                var outcome = await ExchangeAsync();
                if (outcome is not null)
                {
                    Errors[(int)outcome.Value]++;
                    if (outcome.Value != ErrorKind.BodyMismatch)
                    {
                        Abort();
                    }
                }
            }
        }
        finally
        {
            Abort();
        }
    }

    /// <summary>Sends the request and reads the whole response; null on success, else the error.</summary>
    private async ValueTask<ErrorKind?> ExchangeAsync()
    {
        var socket = _socket!;
        var start = Stopwatch.GetTimestamp();
        InFlight = true;
        _runner.OnSent();
        try
        {
            var offset = 0;
            while (offset < _request.Length)
            {
                offset += await socket.SendAsync(_request.AsMemory(offset), SocketFlags.None);
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            InFlight = false;
            _runner.OnDone();
            return _runner.StopRequested ? ErrorKind.Timeout : ErrorKind.Send;
        }

        _parser.Reset();
        var filled = 0;
        var inBody = false;
        try
        {
            while (true)
            {
                if (filled == _buffer.Length)
                {
                    return Finish(ErrorKind.Malformed); // header block larger than the buffer
                }

                var n = await socket.ReceiveAsync(_buffer.AsMemory(filled), SocketFlags.None);
                if (n == 0)
                {
                    return Finish(ErrorKind.Eof);
                }

                filled += n;
                ReadOnlySpan<byte> data = _buffer.AsSpan(0, filled);
                if (!inBody)
                {
                    var headerLength = _parser.ParseHeaders(data);
                    if (headerLength < 0)
                    {
                        return Finish(ErrorKind.Malformed);
                    }

                    if (headerLength == 0)
                    {
                        continue;
                    }

                    inBody = true;
                    data = data[headerLength..];
                }

                var verify = _verify && _parser.Status is >= 200 and < 300;
                var result = _parser.ParseBody(data, _expected, verify);
                filled = 0;
                if (result == ParseResult.Malformed)
                {
                    return Finish(ErrorKind.Malformed);
                }

                if (result == ParseResult.Done)
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
            return Finish(_runner.StopRequested ? ErrorKind.Timeout : ErrorKind.Receive);
        }

        var status = _parser.Status;
        var error = (ErrorKind?)null;
        if (status is < 200 or >= 300)
        {
            Non2xx++;
        }
        else if (_verify && !_parser.BodyMatches)
        {
            error = ErrorKind.BodyMismatch;
        }
        else
        {
            Correct++;
        }

        _runner.Complete(this, Stopwatch.GetTimestamp() - start);
        InFlight = false;
        _runner.OnDone();
        if (_parser.ConnectionClose)
        {
            Abort(); // reconnect on the next iteration
        }

        return error;
    }

    private ErrorKind Finish(ErrorKind error)
    {
        InFlight = false;
        _runner.OnDone();
        return error;
    }
}
