using System.Buffers;
using System.Buffers.Binary;
using System.Net;
using System.Net.Sockets;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Transport;

/// <summary>
/// Sends whole encoded messages over an <c>AF_UNIX</c>/<c>SOCK_DGRAM</c> socket: as one datagram when the
/// message fits in <see cref="ProtocolConstants.MaxDatagram"/> bytes, otherwise as fragments exactly as
/// <c>docs/protocol.md</c> section 6 prescribes.
/// </summary>
/// <remarks>
/// <para>
/// Fragments: each carries a copy of the message's 24-byte header with the <c>FRAGMENT</c> flag set (its
/// <c>payload_length</c> stays the length of the whole payload), then the <c>u32</c> <c>fragment_offset</c>,
/// then as many payload bytes as <see cref="ProtocolConstants.MaxDatagram"/> allows. They are sent in order,
/// one at a time, from one pooled buffer. Only REQUEST and RESPONSE messages can be fragmented.
/// </para>
/// <para>
/// Errors: every failure to deliver is reported as a <see cref="DatagramSendException"/> whose
/// <see cref="DatagramSendException.Failure"/> classifies the cause (see <see cref="DatagramSendException.Classify"/>);
/// cancellation through the caller's token surfaces as <see cref="OperationCanceledException"/>. An
/// <see cref="ArgumentException"/> means the frame itself is not a valid whole message (a caller bug).
/// </para>
/// <para>
/// A send to a backend whose receive queue is full waits (silently, see PLATFORM.md) until the backend reads or
/// the token fires; use the overload with a send timeout, or a token with a deadline, for every send.
/// All methods are thread-safe as far as the socket is (concurrent sends of different messages may interleave
/// their fragments, which is harmless: reassembly is keyed per message).
/// </para>
/// </remarks>
public static class DatagramSender
{
    /// <summary>
    /// Tries to send one datagram without waiting. The socket must be in non-blocking mode
    /// (<c>socket.Blocking = false</c>). Allocation-free.
    /// </summary>
    /// <param name="socket">A non-blocking <c>AF_UNIX</c> datagram socket.</param>
    /// <param name="datagram">The datagram, at most <see cref="ProtocolConstants.MaxDatagram"/> bytes.</param>
    /// <param name="destination">The destination address.</param>
    /// <returns><see langword="true"/> when the datagram was queued; <see langword="false"/> when the destination's queue is full.</returns>
    /// <exception cref="DatagramSendException">The datagram could not be delivered (absent backend, too large, closed socket).</exception>
    /// <exception cref="InvalidOperationException">The socket is in blocking mode.</exception>
    public static bool TrySend(Socket socket, ReadOnlySpan<byte> datagram, SocketAddress destination)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(destination);
        if (datagram.Length > ProtocolConstants.MaxDatagram)
        {
            throw new ArgumentException($"A datagram has at most {ProtocolConstants.MaxDatagram} bytes.", nameof(datagram));
        }

        if (socket.Blocking)
        {
            throw new InvalidOperationException("TrySend needs a socket in non-blocking mode.");
        }

        try
        {
            // sendto(MSG_DONTWAIT) straight to libc: a full queue (EAGAIN) is the common case under load, and
            // Socket.SendTo reports it by throwing, which costs more than the send itself.
            switch (NativeDatagram.TrySendTo(socket.SafeHandle, datagram, destination.Buffer.Span[..destination.Size]))
            {
                case NativeSendResult.Sent:
                    return true;
                case NativeSendResult.WouldBlock:
                    return false;
            }

            // A real error (absent destination, too large, ...): let the managed call report it as a SocketException
            // with the runtime's errno mapping. It fails the same way (or, if the destination appeared meanwhile, sends).
            socket.SendTo(datagram, SocketFlags.None, destination);
            return true;
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.WouldBlock)
        {
            return false;
        }
        catch (SocketException ex)
        {
            throw DatagramSendException.FromSocketException(ex);
        }
        catch (ObjectDisposedException ex)
        {
            throw Closed(ex);
        }
    }

    /// <summary>
    /// Sends a complete encoded message (header + payload, as produced by <see cref="FrameWriter.Complete"/>),
    /// fragmenting it when it is larger than <see cref="ProtocolConstants.MaxDatagram"/>. Waits as long as the
    /// destination's queue is full, until <paramref name="cancellationToken"/> fires.
    /// </summary>
    /// <param name="socket">An <c>AF_UNIX</c> datagram socket (bound, if replies are expected).</param>
    /// <param name="frame">The whole message. It must not be modified until the returned task completes.</param>
    /// <param name="destination">The destination address.</param>
    /// <param name="cancellationToken">Cancels the send; a message may then be partly sent.</param>
    /// <returns>A task that completes when every datagram has been queued at the destination.</returns>
    /// <exception cref="DatagramSendException">The message could not be delivered.</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired.</exception>
    /// <exception cref="ArgumentException"><paramref name="frame"/> is not a valid whole message.</exception>
    public static ValueTask SendMessageAsync(Socket socket, ReadOnlyMemory<byte> frame, SocketAddress destination, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(destination);
        var kind = ValidateFrame(frame.Span);
        if (frame.Length <= ProtocolConstants.MaxDatagram)
        {
            return SendDatagramAsync(socket, frame, destination, cancellationToken);
        }

        if (kind is not (MessageKind.Request or MessageKind.Response))
        {
            throw new ArgumentException($"A {kind} message is never fragmented and must fit in one datagram.", nameof(frame));
        }

        return SendFragmentsAsync(socket, frame, destination, cancellationToken);
    }

    /// <summary>
    /// Like <see cref="SendMessageAsync(Socket, ReadOnlyMemory{byte}, SocketAddress, CancellationToken)"/>, with a
    /// deadline of its own: when the destination's queue stays full for <paramref name="sendTimeout"/>, the send
    /// is abandoned with <see cref="DatagramFailure.BackendOverloaded"/>. When the socket is non-blocking and the
    /// message fits in one datagram, it is first tried without waiting, which needs no timer and allocates nothing.
    /// </summary>
    /// <param name="socket">An <c>AF_UNIX</c> datagram socket.</param>
    /// <param name="frame">The whole message. It must not be modified until the returned task completes.</param>
    /// <param name="destination">The destination address.</param>
    /// <param name="sendTimeout">The longest time to wait for queue space (<see cref="Timeout.InfiniteTimeSpan"/> = no limit).</param>
    /// <param name="timeProvider">The clock that measures <paramref name="sendTimeout"/>.</param>
    /// <param name="cancellationToken">The caller's token.</param>
    /// <returns>A task that completes when every datagram has been queued at the destination.</returns>
    /// <exception cref="DatagramSendException">The message could not be delivered, or the deadline passed (<see cref="DatagramFailure.BackendOverloaded"/>).</exception>
    /// <exception cref="OperationCanceledException"><paramref name="cancellationToken"/> fired.</exception>
    public static ValueTask SendMessageAsync(Socket socket, ReadOnlyMemory<byte> frame, SocketAddress destination, TimeSpan sendTimeout, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(socket);
        ArgumentNullException.ThrowIfNull(timeProvider);
        if (!socket.Blocking && frame.Length <= ProtocolConstants.MaxDatagram)
        {
            ValidateFrame(frame.Span);
            if (TrySend(socket, frame.Span, destination))
            {
                return default;
            }
        }

        return SendWithDeadlineAsync(socket, frame, destination, sendTimeout, timeProvider, cancellationToken);
    }

    private static async ValueTask SendWithDeadlineAsync(Socket socket, ReadOnlyMemory<byte> frame, SocketAddress destination, TimeSpan sendTimeout, TimeProvider timeProvider, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        using var deadline = new CancellationTokenSource(sendTimeout, timeProvider);
        using var link = cancellationToken.UnsafeRegister(static state => ((CancellationTokenSource)state!).Cancel(), deadline);
        try
        {
            await SendMessageAsync(socket, frame, destination, deadline.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException ex) when (cancellationToken.IsCancellationRequested)
        {
            throw new OperationCanceledException(ex.Message, ex, cancellationToken);
        }
        catch (OperationCanceledException ex)
        {
            throw new DatagramSendException(DatagramFailure.BackendOverloaded, SocketError.Success, $"The destination's receive queue stayed full for the send timeout of {sendTimeout}.", ex);
        }
    }

    private static ValueTask SendDatagramAsync(Socket socket, ReadOnlyMemory<byte> datagram, SocketAddress destination, CancellationToken cancellationToken)
    {
        ValueTask<int> send;
        try
        {
            send = socket.SendToAsync(datagram, SocketFlags.None, destination, cancellationToken);
        }
        catch (SocketException ex)
        {
            return ValueTask.FromException(DatagramSendException.FromSocketException(ex));
        }
        catch (ObjectDisposedException ex)
        {
            return ValueTask.FromException(Closed(ex));
        }

        if (send.IsCompletedSuccessfully)
        {
            _ = send.Result;
            return default;
        }

        return AwaitSendAsync(send);
    }

    private static async ValueTask AwaitSendAsync(ValueTask<int> send)
    {
        try
        {
            await send.ConfigureAwait(false);
        }
        catch (SocketException ex)
        {
            throw DatagramSendException.FromSocketException(ex);
        }
        catch (ObjectDisposedException ex)
        {
            throw Closed(ex);
        }
    }

    private static async ValueTask SendFragmentsAsync(Socket socket, ReadOnlyMemory<byte> frame, SocketAddress destination, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(ProtocolConstants.MaxDatagram);
        try
        {
            frame.Span[..ProtocolConstants.HeaderSize].CopyTo(buffer);
            FrameHeader.AddFlags(buffer, MessageFlags.Fragment);
            var payload = frame[ProtocolConstants.HeaderSize..];
            var offset = 0;
            while (offset < payload.Length)
            {
                var count = Math.Min(ProtocolConstants.MaxFragmentData, payload.Length - offset);
                BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(ProtocolConstants.HeaderSize), (uint)offset);
                payload.Span.Slice(offset, count).CopyTo(buffer.AsSpan(ProtocolConstants.FragmentHeaderSize));
                await SendDatagramAsync(socket, buffer.AsMemory(0, ProtocolConstants.FragmentHeaderSize + count), destination, cancellationToken).ConfigureAwait(false);
                offset += count;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private static MessageKind ValidateFrame(ReadOnlySpan<byte> frame)
    {
        FrameHeader header;
        try
        {
            header = FrameHeader.ReadDatagram(frame);
        }
        catch (ProtocolException ex)
        {
            throw new ArgumentException($"The frame is not a valid encoded message: {ex.Message}", nameof(frame), ex);
        }

        if (header.IsFragment)
        {
            throw new ArgumentException("The frame must be a whole message, not a fragment.", nameof(frame));
        }

        return header.Kind;
    }

    private static DatagramSendException Closed(Exception inner) =>
        new(DatagramFailure.Closed, SocketError.OperationAborted, "The socket was closed.", inner);
}
