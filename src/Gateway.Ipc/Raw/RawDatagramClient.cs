using System.Buffers;
using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

using Gateway.Ipc.Client;
using Gateway.Ipc.Diagnostics;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Transport;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Gateway.Ipc.Raw;

/// <summary>
/// Talks to an unmodified datagram server — one that <c>recvfrom</c>s a request and <c>sendto</c>s its reply
/// to the sender's address — without any envelope. Correlation comes from the socket: every exchange in
/// flight owns its own bound client socket (a Linux abstract name), so the reply's destination identifies
/// the request.
/// </summary>
/// <remarks>
/// Sockets are pooled. A socket whose exchange timed out or was cancelled is retired (closed), never reused,
/// so a late reply can never reach the next request; before reuse, anything still queued on a socket is
/// drained and counted as late. Concurrency is capped by <see cref="RawDatagramClientOptions.MaxConcurrency"/>.
/// </remarks>
public sealed partial class RawDatagramClient : IAsyncDisposable, IDisposable
{
    private readonly RawDatagramClientOptions _options;
    private readonly TimeProvider _timeProvider;
    private readonly DropLogThrottle _dropLog;
    private readonly ILogger _logger;
    private readonly SocketAddress _serverAddress;
    private readonly ConcurrentBag<Socket> _idle = [];
    private readonly SemaphoreSlim _slots;
    private readonly string _namePrefix;
    private long _nameCounter;
    private int _inFlight;
    private int _disposed;

    /// <summary>Creates a client for the server bound at <see cref="RawDatagramClientOptions.ServerPath"/>.</summary>
    /// <param name="options">The options.</param>
    /// <param name="timeProvider">Time source for timeouts; <see cref="TimeProvider.System"/> by default.</param>
    /// <param name="loggerFactory">Logger factory.</param>
    public RawDatagramClient(RawDatagramClientOptions options, TimeProvider? timeProvider = null, ILoggerFactory? loggerFactory = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentException.ThrowIfNullOrEmpty(options.ServerPath);
        ArgumentOutOfRangeException.ThrowIfLessThan(options.MaxConcurrency, 1);
        _options = options;
        _timeProvider = timeProvider ?? TimeProvider.System;
        _dropLog = new DropLogThrottle(_timeProvider);
        _logger = (ILogger?)loggerFactory?.CreateLogger<RawDatagramClient>() ?? NullLogger.Instance;
        _serverAddress = new UnixDomainSocketEndPoint(options.ServerPath).Serialize();
        _slots = new SemaphoreSlim(options.MaxConcurrency, options.MaxConcurrency);
        _namePrefix = "gw-raw-" + Convert.ToHexStringLower(Transport.SecureRandom.GetBytes(6)) + "-";
    }

    /// <summary>Path of the server's socket.</summary>
    public string ServerPath => _options.ServerPath;

    /// <summary>Exchanges in flight.</summary>
    public int InFlight => Volatile.Read(ref _inFlight);

    /// <summary>Sockets waiting in the pool.</summary>
    public int IdleSockets => _idle.Count;

    /// <summary>Counters.</summary>
    public RawDatagramClientStatistics Statistics { get; } = new();

    /// <summary>
    /// Sends <paramref name="request"/> as one datagram and returns the first datagram the server sends back.
    /// </summary>
    /// <param name="request">The datagram to send (at most <see cref="ProtocolConstants.MaxDatagram"/> bytes).</param>
    /// <param name="timeout">How long to wait for a free socket and for the reply.</param>
    /// <param name="cancellationToken">The caller's cancellation (distinct from the timeout).</param>
    /// <returns>The reply; dispose it to return its buffer.</returns>
    /// <exception cref="DatagramException">Timeout, backend absent or overloaded, request too large, client closed.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired.</exception>
    public async Task<RawReply> ExchangeAsync(ReadOnlyMemory<byte> request, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
        if (request.Length > ProtocolConstants.MaxDatagram)
        {
            throw new DatagramException(DatagramFailure.TooLarge, ServerPath, $"The request has {request.Length} bytes; one datagram carries at most {ProtocolConstants.MaxDatagram}.");
        }

        using var timeoutSource = new CancellationTokenSource(timeout, _timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeoutSource.Token);
        var token = linked.Token;

        try
        {
            await _slots.WaitAsync(token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            Interlocked.Increment(ref Statistics.Overloaded);
            throw new DatagramException(DatagramFailure.BackendOverloaded, ServerPath, $"All {_options.MaxConcurrency} exchanges with {ServerPath} stayed busy for {timeout.TotalSeconds:0.###} s.");
        }

        Interlocked.Increment(ref _inFlight);
        var socket = RentSocket();
        var reuse = false;
        var buffer = ArrayPool<byte>.Shared.Rent(ProtocolConstants.MaxDatagram + 1);
        try
        {
            await SendAsync(socket, request, token, cancellationToken, timeoutSource.Token).ConfigureAwait(false);
            _options.Tap?.Observer?.OnDatagram(DatagramDirection.Sent, ServerPath, request.Span);
            var sender = new SocketAddress(AddressFamily.Unix, SocketAddress.GetMaximumAddressSize(AddressFamily.Unix));
            while (true)
            {
                sender.Size = SocketAddress.GetMaximumAddressSize(AddressFamily.Unix);
                int received;
                var senderUid = -1L;
                try
                {
                    if (_options.ExpectedReplyUid is null)
                    {
                        received = await socket.ReceiveFromAsync(buffer.AsMemory(0, ProtocolConstants.MaxDatagram + 1), SocketFlags.None, sender, token).ConfigureAwait(false);
                    }
                    else
                    {
                        // Wait for a datagram without consuming it, then read it with its sender's credentials (recvmsg).
                        _ = await socket.ReceiveFromAsync(buffer.AsMemory(0, 1), SocketFlags.Peek, sender, token).ConfigureAwait(false);
                        if (!CredentialReceiver.TryReceive(socket, buffer.AsSpan(0, ProtocolConstants.MaxDatagram + 1), sender.Buffer.Span, out var result))
                        {
                            continue;
                        }

                        sender.Size = Math.Min(result.AddressLength, sender.Buffer.Length);
                        senderUid = result.Uid;
                        received = result.Truncated ? ProtocolConstants.MaxDatagram + 1 : result.Length;
                    }
                }
                catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                {
                    Interlocked.Increment(ref Statistics.Timeouts);
                    throw new DatagramException(DatagramFailure.Timeout, ServerPath, $"No reply from {ServerPath} within {timeout.TotalSeconds:0.###} s.");
                }

                if (!UnixAddress.SameAddress(sender.Buffer.Span[..sender.Size], _serverAddress.Buffer.Span[.._serverAddress.Size]))
                {
                    Interlocked.Increment(ref Statistics.SpoofedDatagrams);
                    var level = _dropLog.Next(out var demoted);
                    if (demoted > 0)
                    {
                        Log.DropsDemoted(_logger, demoted, ServerPath);
                    }

                    Log.Spoofed(_logger, level, ServerPath);
                    continue;
                }

                if (_options.ExpectedReplyUid is { } expectedUid && senderUid != expectedUid)
                {
                    Interlocked.Increment(ref Statistics.ForeignUidDatagrams);
                    Log.ForeignUid(_logger, senderUid, ServerPath, expectedUid);
                    continue;
                }

                _options.Tap?.Observer?.OnDatagram(DatagramDirection.Received, ServerPath, buffer.AsSpan(0, Math.Min(received, ProtocolConstants.MaxDatagram)));

                if (received > ProtocolConstants.MaxDatagram)
                {
                    Interlocked.Increment(ref Statistics.OversizedDatagrams);
                    throw new DatagramException(DatagramFailure.MalformedReply, ServerPath, $"The reply from {ServerPath} is larger than {ProtocolConstants.MaxDatagram} bytes.");
                }

                Interlocked.Increment(ref Statistics.Exchanges);
                reuse = true;
                var reply = new RawReply(buffer, received);
                buffer = null;
                return reply;
            }
        }
        finally
        {
            if (buffer is not null)
            {
                ArrayPool<byte>.Shared.Return(buffer);
            }

            ReturnSocket(socket, reuse);
            Interlocked.Decrement(ref _inFlight);
            _slots.Release();
        }
    }

    private async ValueTask SendAsync(Socket socket, ReadOnlyMemory<byte> request, CancellationToken token, CancellationToken callerToken, CancellationToken timeoutToken)
    {
        using var sendTimeout = new CancellationTokenSource(_options.SendTimeout, _timeProvider);
        using var sendLinked = CancellationTokenSource.CreateLinkedTokenSource(token, sendTimeout.Token);
        try
        {
            await socket.SendToAsync(request, SocketFlags.None, _serverAddress, sendLinked.Token).ConfigureAwait(false);
        }
        catch (SocketException ex)
        {
            throw Classify(ex);
        }
        catch (OperationCanceledException) when (!callerToken.IsCancellationRequested)
        {
            Interlocked.Increment(ref Statistics.Overloaded);
            if (timeoutToken.IsCancellationRequested && !sendTimeout.IsCancellationRequested)
            {
                Interlocked.Increment(ref Statistics.Timeouts);
                throw new DatagramException(DatagramFailure.Timeout, ServerPath, $"The request could not even be sent to {ServerPath} in time (its receive queue is full).");
            }

            throw new DatagramException(DatagramFailure.BackendOverloaded, ServerPath, $"{ServerPath} is not reading: its receive queue stayed full for {_options.SendTimeout.TotalSeconds:0.###} s.");
        }
    }

    private DatagramException Classify(SocketException ex)
    {
        Interlocked.Increment(ref Statistics.SendFailures);
        return ex.SocketErrorCode switch
        {
            SocketError.AddressNotAvailable or SocketError.ConnectionRefused or SocketError.AddressFamilyNotSupported
                => new DatagramException(DatagramFailure.BackendAbsent, ServerPath, $"Nothing is listening on {ServerPath} ({ex.SocketErrorCode})."),
            SocketError.MessageSize => new DatagramException(DatagramFailure.TooLarge, ServerPath, $"The request is larger than {ServerPath} accepts in one datagram."),
            SocketError.NoBufferSpaceAvailable or SocketError.WouldBlock => new DatagramException(DatagramFailure.BackendOverloaded, ServerPath, $"{ServerPath} is overloaded ({ex.SocketErrorCode})."),
            _ => new DatagramException(DatagramFailure.BackendAbsent, ServerPath, $"Sending to {ServerPath} failed: {ex.SocketErrorCode}."),
        };
    }

    private Socket RentSocket()
    {
        while (_idle.TryTake(out var socket))
        {
            if (Drain(socket))
            {
                return socket;
            }
        }

        var created = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        try
        {
            var name = _namePrefix + Interlocked.Increment(ref _nameCounter).ToString(System.Globalization.CultureInfo.InvariantCulture);
            if (_options.ReplyDirectory is { } directory)
            {
                // A file the server can reach from another network namespace. Names are never reused, so
                // Dispose() unlinking the bound path cannot remove another socket's file.
                var path = Path.Combine(directory, name + ".sock");
                created.Bind(new UnixDomainSocketEndPoint(path));
                File.SetUnixFileMode(path, _options.ReplyFileMode);
            }
            else
            {
                // An abstract name: nothing on disk, nothing to unlink, unique per socket.
                created.Bind(new UnixDomainSocketEndPoint("\0" + name));
            }

            if (_options.ExpectedReplyUid is not null)
            {
                CredentialReceiver.EnablePassCredentials(created);
            }
        }
        catch
        {
            created.Dispose();
            throw;
        }

        Interlocked.Increment(ref Statistics.SocketsCreated);
        return created;
    }

    /// <summary>Discards datagrams queued on a pooled socket; returns false if the socket is unusable.</summary>
    private bool Drain(Socket socket)
    {
        try
        {
            while (socket.Available > 0)
            {
                var scratch = ArrayPool<byte>.Shared.Rent(ProtocolConstants.MaxDatagram + 1);
                try
                {
                    socket.Receive(scratch, SocketFlags.None); // Available > 0: returns at once
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(scratch);
                }

                Interlocked.Increment(ref Statistics.LateDatagrams);
            }

            return true;
        }
        catch (SocketException)
        {
            socket.Dispose();
            return false;
        }
    }

    private void ReturnSocket(Socket socket, bool reuse)
    {
        if (reuse && Volatile.Read(ref _disposed) == 0)
        {
            _idle.Add(socket);
            return;
        }

        // Timed out, cancelled or failed: a late reply may still arrive, so this socket is never reused.
        Interlocked.Increment(ref Statistics.RetiredSockets);
        socket.Dispose();
    }

    /// <summary>Closes the pooled sockets. Exchanges in flight fail.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        while (_idle.TryTake(out var socket))
        {
            socket.Dispose();
        }
    }

    /// <inheritdoc/>
    public ValueTask DisposeAsync()
    {
        Dispose();
        return default;
    }

    private static partial class Log
    {
        [LoggerMessage(EventId = 3001, Message = "Dropped a datagram from an address other than the raw server {ServerPath}")]
        public static partial void Spoofed(ILogger logger, LogLevel level, string serverPath);

        [LoggerMessage(3003, LogLevel.Warning, "{Count} more datagrams from addresses other than the raw server {ServerPath} were dropped since the last such warning (logged at Debug; all are counted).")]
        public static partial void DropsDemoted(ILogger logger, long count, string serverPath);

        [LoggerMessage(3002, LogLevel.Debug, "Dropped a datagram from raw server {ServerPath}'s address sent by uid {SenderUid} (-1: no credentials); replies are accepted only from uid {ExpectedUid}.")]
        public static partial void ForeignUid(ILogger logger, long senderUid, string serverPath, uint expectedUid);
    }
}

/// <summary>Options of a <see cref="RawDatagramClient"/>.</summary>
public sealed class RawDatagramClientOptions
{
    /// <summary>Path of the server's datagram socket.</summary>
    public string ServerPath { get; set; } = "";

    /// <summary>Where the client shows the datagrams it sends and receives to an observer (a live capture); <see langword="null"/> = nowhere.</summary>
    /// <value>The default value is <see langword="null"/>.</value>
    public DatagramTap? Tap { get; set; }

    /// <summary>
    /// Maximum exchanges in flight (each holds its own socket); further requests wait within their timeout.
    /// <value>The default value is 64.</value>
    /// </summary>
    public int MaxConcurrency { get; set; } = 64;

    /// <summary>
    /// How long a send may wait while the server's receive queue is full.
    /// <value>The default value is 1 second.</value>
    /// </summary>
    public TimeSpan SendTimeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Directory in which the client sockets are bound as files instead of Linux abstract names. Abstract names
    /// exist only inside one network namespace, so a server in another one (e.g. another container that shares
    /// only a volume) cannot reply to them; the directory must be visible to the server at the same path.
    /// <value>The default value is <see langword="null"/> (abstract names).</value>
    /// </summary>
    public string? ReplyDirectory { get; set; }

    /// <summary>
    /// Mode of the socket files bound in <see cref="ReplyDirectory"/>; the server needs write permission to reply.
    /// <value>The default value is 0660 (owner and group).</value>
    /// </summary>
    public UnixFileMode ReplyFileMode { get; set; } = UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite;

    /// <summary>
    /// When set, a reply is accepted only from a process of this uid (<c>SCM_CREDENTIALS</c>, see
    /// <see cref="DatagramClientOptions.ExpectedReplyUid"/>); a datagram from another uid is dropped, counted in
    /// <see cref="RawDatagramClientStatistics.ForeignUidDatagrams"/>, and the exchange keeps waiting.
    /// <value>The default value is <see langword="null"/> (no uid check).</value>
    /// </summary>
    public uint? ExpectedReplyUid { get; set; }
}

/// <summary>Counters of a <see cref="RawDatagramClient"/>; read them with <c>Interlocked.Read</c>.</summary>
public sealed class RawDatagramClientStatistics
{
#pragma warning disable CA1051 // Public fields so callers and the client can use Interlocked on them.
    /// <summary>Completed exchanges.</summary>
    public long Exchanges;

    /// <summary>Exchanges that got no reply in time.</summary>
    public long Timeouts;

    /// <summary>Datagrams found queued on a pooled socket before reuse (late replies), discarded.</summary>
    public long LateDatagrams;

    /// <summary>Datagrams from an address other than the server, discarded.</summary>
    public long SpoofedDatagrams;

    /// <summary>Datagrams from the server's address but another uid than <see cref="RawDatagramClientOptions.ExpectedReplyUid"/>, discarded.</summary>
    public long ForeignUidDatagrams;

    /// <summary>Replies larger than one datagram allows.</summary>
    public long OversizedDatagrams;

    /// <summary>Sockets closed instead of reused (after a timeout, cancellation or failure).</summary>
    public long RetiredSockets;

    /// <summary>Sockets created.</summary>
    public long SocketsCreated;

    /// <summary>Sends that failed.</summary>
    public long SendFailures;

    /// <summary>Requests refused because the server or the concurrency cap was saturated.</summary>
    public long Overloaded;
#pragma warning restore CA1051
}

/// <summary>A raw reply: the datagram's bytes in a pooled buffer.</summary>
public sealed class RawReply : IDisposable
{
    private byte[]? _buffer;
    private readonly int _length;

    internal RawReply(byte[] buffer, int length)
    {
        _buffer = buffer;
        _length = length;
    }

    /// <summary>The datagram.</summary>
    public ReadOnlyMemory<byte> Payload => _buffer is { } b ? b.AsMemory(0, _length) : ReadOnlyMemory<byte>.Empty;

    /// <summary>Returns the buffer to the pool.</summary>
    public void Dispose()
    {
        var buffer = Interlocked.Exchange(ref _buffer, null);
        if (buffer is not null)
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }
}
