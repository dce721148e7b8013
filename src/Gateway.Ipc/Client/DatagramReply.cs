using System.Buffers;
using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Client;

/// <summary>
/// A RESPONSE or ERROR received by <see cref="DatagramClient"/>. Its payload lives in a pooled buffer that
/// <see cref="Dispose"/> returns: dispose the reply once its payload (and every view over it) is no longer used.
/// </summary>
public sealed class DatagramReply : IDisposable
{
    private readonly FrameHeader _header;
    private readonly int _length;
    private byte[]? _rented;
    private ReassembledMessage? _owner;
    private int _disposed;

    private DatagramReply(FrameHeader header, byte[]? rented, ReassembledMessage? owner, int length)
    {
        _header = header;
        _rented = rented;
        _owner = owner;
        _length = length;
    }

    /// <summary>
    /// The body of a streamed reply (<see cref="Kind"/> is <see cref="MessageKind.ResponseHead"/>; then <see cref="Response"/>
    /// is the head, without body), else <see langword="null"/>. Disposing the reply disposes it.
    /// </summary>
    public ReplyStream? Stream { get; private init; }

    /// <summary>Whether this is the head of a streamed reply (see <see cref="Stream"/>).</summary>
    public bool IsStreamed => Stream is not null;

    /// <summary><see cref="MessageKind.Response"/>, <see cref="MessageKind.ResponseHead"/> (a streamed reply) or <see cref="MessageKind.Error"/>.</summary>
    public MessageKind Kind => _header.Kind;

    /// <summary>The header's flags, e.g. <see cref="MessageFlags.Replay"/> (never <see cref="MessageFlags.Fragment"/>).</summary>
    public MessageFlags Flags => _header.Flags & ~MessageFlags.Fragment;

    /// <summary>The attempt the backend answered.</summary>
    public ushort Attempt => _header.Attempt;

    /// <summary>The request's correlation ID.</summary>
    public ulong CorrelationId => _header.CorrelationId;

    /// <summary>The payload; already validated (<see cref="ResponseView.Read"/> or <see cref="ErrorView.Read"/> succeeds).</summary>
    /// <exception cref="ObjectDisposedException">The reply was disposed.</exception>
    public ReadOnlyMemory<byte> Payload
    {
        get
        {
            ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
            if (_owner is not null)
            {
                return _owner.Payload;
            }

            return _rented is null ? ReadOnlyMemory<byte>.Empty : _rented.AsMemory(0, _length);
        }
    }

    /// <summary>The decoded RESPONSE (or the RESPONSE_HEAD of a streamed reply: no body).</summary>
    /// <exception cref="InvalidOperationException"><see cref="Kind"/> is not <see cref="MessageKind.Response"/> or <see cref="MessageKind.ResponseHead"/>.</exception>
    public ResponseView Response => Kind is MessageKind.Response or MessageKind.ResponseHead
        ? ResponseView.Read(Payload.Span)
        : throw new InvalidOperationException($"The reply is a {Kind}, not a Response.");

    /// <summary>The decoded ERROR.</summary>
    /// <exception cref="InvalidOperationException"><see cref="Kind"/> is not <see cref="MessageKind.Error"/>.</exception>
    public ErrorView Error => Kind == MessageKind.Error
        ? ErrorView.Read(Payload.Span)
        : throw new InvalidOperationException($"The reply is a {Kind}, not an Error.");

    /// <summary>Returns the payload buffer to the pool. Idempotent.</summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        var rented = _rented;
        _rented = null;
        if (rented is not null)
        {
            ArrayPool<byte>.Shared.Return(rented);
        }

        _owner?.Dispose();
        _owner = null;
        Stream?.Dispose();
    }

    /// <summary>The head of a streamed reply, copied from the receive buffer, with its stream.</summary>
    internal static DatagramReply Streamed(FrameHeader header, ReadOnlySpan<byte> payload, ReplyStream stream)
    {
        var rented = ArrayPool<byte>.Shared.Rent(Math.Max(payload.Length, 1));
        payload.CopyTo(rented);
        return new DatagramReply(header, rented, null, payload.Length) { Stream = stream };
    }

    /// <summary>A reply whose payload is copied from the receive buffer into a pooled buffer.</summary>
    internal static DatagramReply Copy(FrameHeader header, ReadOnlySpan<byte> payload)
    {
        byte[]? rented = null;
        if (!payload.IsEmpty)
        {
            rented = ArrayPool<byte>.Shared.Rent(payload.Length);
            payload.CopyTo(rented);
        }

        return new DatagramReply(header, rented, null, payload.Length);
    }

    /// <summary>A reply that takes ownership of a reassembled message.</summary>
    internal static DatagramReply FromReassembled(ReassembledMessage message) =>
        new(message.Header, null, message, message.Payload.Length);

    /// <summary>A reply without payload (PONG).</summary>
    internal static DatagramReply Empty(FrameHeader header) => new(header, null, null, 0);
}
