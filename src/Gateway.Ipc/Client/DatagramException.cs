namespace Gateway.Ipc.Client;

/// <summary>A request sent by <see cref="DatagramClient"/> failed; <see cref="Failure"/> says why.</summary>
/// <remarks>Caller cancellation is never reported with this exception: it surfaces as <see cref="OperationCanceledException"/>.</remarks>
public sealed class DatagramException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="failure">Why the request failed.</param>
    /// <param name="backendPath">The backend socket path the request was sent to.</param>
    /// <param name="message">A human-readable description; a default one is derived from <paramref name="failure"/> when null.</param>
    /// <param name="innerException">The underlying exception, if any.</param>
    public DatagramException(DatagramFailure failure, string backendPath, string? message = null, Exception? innerException = null)
        : base(message ?? DefaultMessage(failure, backendPath), innerException)
    {
        Failure = failure;
        BackendPath = backendPath;
    }

    /// <summary>Why the request failed.</summary>
    public DatagramFailure Failure { get; }

    /// <summary>The backend socket path the request was sent to.</summary>
    public string BackendPath { get; }

    private static string DefaultMessage(DatagramFailure failure, string backendPath) => failure switch
    {
        DatagramFailure.Timeout => $"The backend '{backendPath}' did not reply in time.",
        DatagramFailure.BackendAbsent => $"The backend '{backendPath}' is not listening.",
        DatagramFailure.BackendOverloaded => $"The receive queue of backend '{backendPath}' stayed full for the whole send timeout.",
        DatagramFailure.TooLarge => $"The message exchanged with backend '{backendPath}' is larger than allowed.",
        DatagramFailure.MalformedReply => $"The backend '{backendPath}' sent a malformed reply.",
        DatagramFailure.Closed => $"The client for backend '{backendPath}' was disposed.",
        DatagramFailure.StreamAborted => $"The backend '{backendPath}' aborted its streamed reply.",
        _ => $"The request to backend '{backendPath}' failed ({failure}).",
    };
}
