using System.Net.Sockets;
using Gateway.Ipc.Client;

namespace Gateway.Ipc.Transport;

/// <summary>
/// Thrown by <see cref="DatagramSender"/> when a message could not be sent; <see cref="Failure"/> classifies the
/// cause with the same meanings as <see cref="DatagramException.Failure"/>.
/// </summary>
/// <remarks>
/// Mapping: <see cref="SocketError.AddressNotAvailable"/> (no such file), <see cref="SocketError.ConnectionRefused"/>
/// (stale socket file or not a socket), <see cref="SocketError.AccessDenied"/> and any other socket error →
/// <see cref="DatagramFailure.BackendAbsent"/>; <see cref="SocketError.MessageSize"/> →
/// <see cref="DatagramFailure.TooLarge"/>; the sender's own send deadline expiring, or
/// <see cref="SocketError.NoBufferSpaceAvailable"/> → <see cref="DatagramFailure.BackendOverloaded"/>;
/// the socket disposed or shut down → <see cref="DatagramFailure.Closed"/>.
/// Cancellation through the caller's token is not mapped: it surfaces as <see cref="OperationCanceledException"/>.
/// </remarks>
public sealed class DatagramSendException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="failure">The classified cause.</param>
    /// <param name="socketError">The socket error, or <see cref="SocketError.Success"/> when the cause was not a socket error (a deadline).</param>
    /// <param name="message">A human-readable description.</param>
    /// <param name="innerException">The underlying exception, if any.</param>
    public DatagramSendException(DatagramFailure failure, SocketError socketError, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Failure = failure;
        SocketError = socketError;
    }

    /// <summary>The classified cause.</summary>
    public DatagramFailure Failure { get; }

    /// <summary>The socket error reported by the kernel, or <see cref="SocketError.Success"/> for a send deadline.</summary>
    public SocketError SocketError { get; }

    /// <summary>Classifies a socket error.</summary>
    /// <param name="error">The socket error.</param>
    /// <returns>The failure it means for a sender.</returns>
    public static DatagramFailure Classify(SocketError error) => error switch
    {
        SocketError.MessageSize => DatagramFailure.TooLarge,
        SocketError.NoBufferSpaceAvailable => DatagramFailure.BackendOverloaded,
        SocketError.OperationAborted or SocketError.Shutdown or SocketError.NotSocket => DatagramFailure.Closed,
        _ => DatagramFailure.BackendAbsent,
    };

    internal static DatagramSendException FromSocketException(SocketException exception) =>
        new(Classify(exception.SocketErrorCode), exception.SocketErrorCode, $"Sending the datagram failed: {exception.SocketErrorCode} ({exception.Message}).", exception);
}
