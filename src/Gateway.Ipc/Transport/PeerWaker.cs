using System.Net;
using System.Net.Sockets;

namespace Gateway.Ipc.Transport;

/// <summary>
/// Sleeps until a destination's receive queue has room, using the kernel's peer wake for connected Unix datagram
/// sockets (PLATFORM.md, "Where the gateway's wake-ups go"): a socket <c>connect()</c>ed to the destination reports
/// <c>POLLOUT</c> only while the destination's queue has room, and is woken when the destination reads a datagram.
/// </summary>
/// <remarks>
/// <para>
/// The waiter socket is unbound and <b>never sends or receives</b>: the messages still go out through the sender's own
/// (bound, unconnected) socket, so the backend's replies still reach the client's reply socket, which stays
/// unconnected (no purge of queued replies when a backend dies, no change to who may write to it). The waiter only
/// answers "is there room now?" and sleeps in <c>poll(2)</c> until there is. An unconnected socket cannot do this: it
/// always reports writable, so a sender using <c>sendto</c> could only retry (yield, back off) or wait for its own
/// datagrams to be freed.
/// </para>
/// <para>
/// Restarts: the waiter is connected to the socket that was bound at the path when it connected. When the backend is
/// restarted, the old socket is dead and the waiter reports writable at once; the caller then finds the new backend's
/// queue full (a wake that found no room) and calls <see cref="Reconnect"/>, which connects to whatever is bound at the
/// path now. When nothing is (ENOENT, ECONNREFUSED), <see cref="WaitForRoom"/> sleeps for the timed fallback instead;
/// the sender's next <c>sendto</c> then reports the absent backend itself.
/// </para>
/// <para>Used by one thread at a time (the send queue's sending thread); <see cref="Dispose"/> may race with it.</para>
/// </remarks>
internal sealed class PeerWaker : IDisposable
{
    private static readonly TimeSpan FallbackSleep = TimeSpan.FromMilliseconds(2);

    private readonly SocketAddressEndPoint _destination;
    private Socket? _socket;
    private bool _disposed;

    public PeerWaker(SocketAddress destination)
    {
        _destination = new SocketAddressEndPoint(destination);
    }

    /// <summary>Whether the waiter is connected to a live destination socket (false before the first wait, or when connecting failed).</summary>
    public bool IsConnected => Volatile.Read(ref _socket) is not null;

    /// <summary>
    /// Sleeps until the destination's queue has room or <paramref name="timeout"/> passes (whichever is first).
    /// </summary>
    /// <param name="timeout">The longest wait; positive.</param>
    /// <returns><see langword="true"/> when the kernel reported room (the caller should send now); <see langword="false"/> on timeout,
    /// or when the waiter could not connect (the caller then slept for the timeout).</returns>
    public bool WaitForRoom(TimeSpan timeout)
    {
        var socket = Volatile.Read(ref _socket) ?? Connect();
        if (socket is null)
        {
            // Nothing to connect to (absent or stale path): a short timed sleep; the caller's next send reports the error.
            Thread.Sleep(timeout < FallbackSleep ? timeout : FallbackSleep);
            return false;
        }

        try
        {
            return socket.Poll(timeout, SelectMode.SelectWrite);
        }
        catch (ObjectDisposedException)
        {
            return false;
        }
        catch (SocketException)
        {
            Reconnect();
            return false;
        }
    }

    /// <summary>Drops the current connection and connects to whatever is bound at the destination's path now.</summary>
    public void Reconnect()
    {
        Interlocked.Exchange(ref _socket, null)?.Dispose();
        _ = Connect();
    }

    public void Dispose()
    {
        Volatile.Write(ref _disposed, true);
        Interlocked.Exchange(ref _socket, null)?.Dispose();
    }

    private Socket? Connect()
    {
        if (Volatile.Read(ref _disposed))
        {
            return null;
        }

        var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        try
        {
            socket.Connect(_destination);
        }
        catch (SocketException)
        {
            socket.Dispose();
            return null;
        }

        if (Interlocked.CompareExchange(ref _socket, socket, null) is not null || Volatile.Read(ref _disposed))
        {
            socket.Dispose();
            if (Volatile.Read(ref _disposed))
            {
                Interlocked.Exchange(ref _socket, null)?.Dispose();
            }

            return Volatile.Read(ref _socket);
        }

        return socket;
    }
}
