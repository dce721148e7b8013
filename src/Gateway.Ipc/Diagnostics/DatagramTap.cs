namespace Gateway.Ipc.Diagnostics;

/// <summary>Whether a datagram left the client or arrived at it.</summary>
public enum DatagramDirection
{
    /// <summary>Sent by the client to the backend.</summary>
    Sent,

    /// <summary>Received by the client from the backend.</summary>
    Received,
}

/// <summary>
/// Sees the datagrams that clients sharing a <see cref="DatagramTap"/> send and receive (a live capture: tcpdump cannot see
/// AF_UNIX). Called synchronously on the client's send or receive path, so an implementation must return at once: filter
/// first, copy what it keeps, hand it to another thread, never block and never throw.
/// </summary>
public interface IDatagramObserver
{
    /// <summary>Called for each message sent and each datagram received.</summary>
    /// <param name="direction">Sent or received.</param>
    /// <param name="backendPath">The backend socket the client talks to.</param>
    /// <param name="data">
    /// <see cref="DatagramDirection.Sent"/>: the whole message as it is handed to the client's send path, just before the
    /// first send (so that its reply is never observed before it; a message larger than one datagram leaves as fragments,
    /// docs/protocol.md section 6). A message the backend's full queue holds back is observed once, when it is first
    /// handed over; if it then fails or is abandoned, its request fails with the reason. <see cref="DatagramDirection.Received"/>:
    /// one datagram from the backend's address, before it is validated (it may be malformed). For a raw client, the raw
    /// request or reply bytes. Valid only during the call.
    /// </param>
    void OnDatagram(DatagramDirection direction, string backendPath, ReadOnlySpan<byte> data);
}

/// <summary>
/// A point where an <see cref="IDatagramObserver"/> can be attached to every client created with it
/// (<see cref="Client.DatagramClientOptions.Tap"/>, <see cref="Raw.RawDatagramClientOptions.Tap"/>). With no observer
/// attached, a client pays one field read and a null check per datagram.
/// </summary>
public sealed class DatagramTap
{
    private IDatagramObserver? _observer;

    /// <summary>The observer, or <see langword="null"/> when nobody is watching. Settable at any time from any thread.</summary>
    public IDatagramObserver? Observer
    {
        get => Volatile.Read(ref _observer);
        set => Volatile.Write(ref _observer, value);
    }
}
