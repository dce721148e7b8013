namespace Gateway.Ipc.Backend;

/// <summary>Handles one request received by a <see cref="DatagramBackendServer"/>.</summary>
/// <param name="request">The request; its body stays valid after the handler returns.</param>
/// <param name="cancellationToken">
/// Fires when the request's deadline passes, when the client sends CANCEL for it, or when the server shuts down
/// after its drain timeout.
/// </param>
/// <returns>The response to send; <see cref="BackendResponse.Error"/> sends an ERROR message instead.</returns>
public delegate ValueTask<BackendResponse> DatagramHandler(BackendRequest request, CancellationToken cancellationToken);

/// <summary>A class-based <see cref="DatagramHandler"/>, resolved from dependency injection as a singleton.</summary>
public interface IDatagramHandler
{
    /// <summary>Handles one request. See <see cref="DatagramHandler"/>.</summary>
    /// <param name="request">The request.</param>
    /// <param name="cancellationToken">Fires at the deadline, on CANCEL, or on shutdown.</param>
    /// <returns>The response.</returns>
    ValueTask<BackendResponse> HandleAsync(BackendRequest request, CancellationToken cancellationToken);
}
