using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Server.Kestrel.Core;

namespace Gateway.Hosting;

/// <summary>
/// A private directory for the sockets the gateway binds by default, used when the gateway runs in memory under
/// WebApplicationFactory's TestServer. There the HTTP socket is never bound, but the demo backend's datagram socket is:
/// at its default path (beside <c>Gateway:Listen:UnixSocket</c>, i.e. <c>/tmp/gateway/demo-echo.sock</c>) two factories
/// with default settings, or a factory beside a running gateway, would clash. In memory, each host gets its own
/// directory (mode 0700 under the temp directory), created on first use and removed when the host is disposed.
/// Explicitly configured paths are used as given.
/// </summary>
internal sealed class InMemorySocketDirectory : IDisposable
{
    private readonly Lock _gate = new();
    private string? _path;
    private bool _disposed;

    public InMemorySocketDirectory(bool isInMemory)
    {
        IsInMemory = isInMemory;
    }

    /// <summary>Whether the host serves HTTP in memory (TestServer) rather than on a socket (Kestrel).</summary>
    public bool IsInMemory { get; }

    /// <summary>
    /// Whether <paramref name="services"/> (the host's final registrations) serve HTTP with Kestrel, the only server that
    /// binds the gateway's socket. WebApplicationFactory replaces it with TestServer unless told to use Kestrel
    /// (registered through a factory of its own in .NET 10). The server cannot be resolved to find out: resolving Kestrel's
    /// server configures its listener, which needs the gateway's options.
    /// </summary>
    public static bool ServesOnKestrel(IServiceCollection services) =>
        services.LastOrDefault(static d => d.ServiceType == typeof(IServer)) is { ImplementationType: { } type }
        && type.Assembly == typeof(KestrelServerOptions).Assembly;

    /// <summary>The directory (created on first call), or <see langword="null"/> when not in memory.</summary>
    public string? GetPath()
    {
        if (!IsInMemory)
        {
            return null;
        }

        lock (_gate)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            return _path ??= Directory.CreateTempSubdirectory("gateway-").FullName;
        }
    }

    public void Dispose()
    {
        string? path;
        lock (_gate)
        {
            _disposed = true;
            path = _path;
            _path = null;
        }

        if (path is null)
        {
            return;
        }

        // The demo backend may unlink its socket file while this runs (its server is disposed by the same host); a few
        // passes let "directory not empty" and "file not found" from that race settle. Best effort after that: a temp
        // directory left behind is harmless.
        for (var pass = 0; pass < 5; pass++)
        {
            try
            {
                foreach (var entry in Directory.EnumerateFileSystemEntries(path))
                {
                    TryDelete(entry);
                }

                Directory.Delete(path);
                return;
            }
            catch (DirectoryNotFoundException)
            {
                return; // already gone
            }
            catch (IOException)
            {
                // An entry appeared or vanished meanwhile: look again.
            }
            catch (UnauthorizedAccessException)
            {
                return;
            }
        }
    }

    private static void TryDelete(string entry)
    {
        try
        {
            if (Directory.Exists(entry))
            {
                Directory.Delete(entry, recursive: true);
            }
            else
            {
                File.Delete(entry);
            }
        }
        catch (IOException)
        {
            // Gone already, or in use: the directory's own delete reports what is left.
        }
    }
}
