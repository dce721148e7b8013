using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Gateway.Ipc.Transport;

/// <summary>What <see cref="UnixSocketFile.Probe"/> found at a socket path.</summary>
public enum SocketFileState
{
    /// <summary>Nothing exists at the path.</summary>
    Absent,

    /// <summary>A socket file exists but no process is bound to it (connecting is refused): safe to unlink.</summary>
    Stale,

    /// <summary>A socket is bound to the file (connecting succeeded), in this process or another: do not touch it.</summary>
    Live,
}

/// <summary>Thrown when a socket file cannot be taken over: the path is not a socket, or a live socket (of this or another process) is bound to it.</summary>
public sealed class SocketFileException : IOException
{
    /// <summary>Creates the exception.</summary>
    /// <param name="path">The socket path concerned.</param>
    /// <param name="message">The message; it names the path.</param>
    /// <param name="innerException">The cause, if any.</param>
    public SocketFileException(string path, string message, Exception? innerException = null)
        : base(message, innerException)
    {
        Path = path;
    }

    /// <summary>The socket path concerned.</summary>
    public string Path { get; }
}

/// <summary>
/// A Unix-domain socket bound to a filesystem path, with a deliberate socket-file lifecycle: a stale file left
/// by a dead process is taken over, a live one is refused, the file gets a chosen mode, and on dispose the
/// file is unlinked only if it is still the one this instance created (same device and inode).
/// </summary>
/// <remarks>
/// <para>
/// .NET's <see cref="Socket.Dispose()"/> unlinks the path a socket was bound to with a
/// <see cref="UnixDomainSocketEndPoint"/>, even if another process has re-bound that path since (for example
/// a successor that took over after this process was presumed dead). To avoid that, the socket is bound
/// through an endpoint type that <see cref="Socket"/> does not track, so <see cref="Socket.Dispose()"/> never
/// deletes anything, and <see cref="Dispose"/> deletes the file itself after comparing inodes.
/// </para>
/// <para>
/// Between <c>bind</c> and <c>chmod</c> the file briefly has the mode given by the process umask; keep socket
/// files in a directory that only the intended users can enter if that window matters.
/// </para>
/// </remarks>
public sealed class UnixSocketFile : IDisposable
{
    /// <summary>The default mode of a socket file: <c>0660</c> (owner and group may connect).</summary>
    public const UnixFileMode DefaultFileMode =
        UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.GroupRead | UnixFileMode.GroupWrite;

    private readonly FileIdentity _identity;
    private int _disposed;

    private UnixSocketFile(Socket socket, string path, FileIdentity identity)
    {
        Socket = socket;
        Path = path;
        _identity = identity;
    }

    /// <summary>The bound socket. Owned by this instance: dispose this instance, not the socket.</summary>
    public Socket Socket { get; }

    /// <summary>The full path of the socket file.</summary>
    public string Path { get; }

    /// <summary>
    /// Creates a socket of <paramref name="socketType"/> and binds it to <paramref name="path"/>: creates the
    /// directory if missing; if the path exists and is a stale socket, unlinks it; sets the file mode.
    /// </summary>
    /// <param name="path">The socket path (at most 107 bytes).</param>
    /// <param name="socketType"><see cref="SocketType.Dgram"/> or <see cref="SocketType.Stream"/>.</param>
    /// <param name="fileMode">The mode of the socket file; <see langword="null"/> means <see cref="DefaultFileMode"/>.</param>
    /// <returns>The bound socket file.</returns>
    /// <exception cref="SocketFileException">
    /// The path exists and is not a socket, or a live process is bound to it.
    /// </exception>
    public static UnixSocketFile Bind(string path, SocketType socketType, UnixFileMode? fileMode = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        path = System.IO.Path.GetFullPath(path);
        var directory = System.IO.Path.GetDirectoryName(path);
        if (!string.IsNullOrEmpty(directory))
        {
            Directory.CreateDirectory(directory);
        }

        var state = Probe(path, socketType);
        if (state == SocketFileState.Live)
        {
            throw LiveException(path, null);
        }

        if (state == SocketFileState.Stale)
        {
            File.Delete(path);
        }

        var socket = new Socket(AddressFamily.Unix, socketType, ProtocolType.Unspecified);
        UnixSocketFile? owned = null;
        try
        {
            try
            {
                socket.Bind(new UntrackedUnixEndPoint(path));
            }
            catch (SocketException ex) when (ex.SocketErrorCode == SocketError.AddressAlreadyInUse)
            {
                // Another process bound the path between our probe and our bind.
                throw LiveException(path, ex);
            }

            // Read the identity before chmod: if chmod fails we must still be able to clean up our own file.
            if (!TryGetIdentity(path, out var identity, out var isSocket) || !isSocket)
            {
                throw new SocketFileException(path, $"The socket file '{path}' vanished right after bind.");
            }

            owned = new UnixSocketFile(socket, path, identity);
            File.SetUnixFileMode(path, fileMode ?? DefaultFileMode);
            return owned;
        }
        catch
        {
            if (owned is not null)
            {
                owned.Dispose();
            }
            else
            {
                socket.Dispose();
            }

            throw;
        }
    }

    /// <summary>
    /// Finds out whether a process serves <paramref name="path"/>, by connecting a socket of
    /// <paramref name="socketType"/> to it (nothing is sent).
    /// </summary>
    /// <param name="path">The socket path.</param>
    /// <param name="socketType">The type of socket expected at the path (<see cref="SocketType.Dgram"/> or <see cref="SocketType.Stream"/>).</param>
    /// <returns><see cref="SocketFileState.Absent"/>, <see cref="SocketFileState.Stale"/> or <see cref="SocketFileState.Live"/>.</returns>
    /// <exception cref="SocketFileException">The path exists and is not a socket.</exception>
    public static SocketFileState Probe(string path, SocketType socketType)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!TryGetIdentity(path, out _, out var isSocket))
        {
            return SocketFileState.Absent;
        }

        if (!isSocket)
        {
            throw NotSocketException(path);
        }

        using var probe = new Socket(AddressFamily.Unix, socketType, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return SocketFileState.Live;
        }
        catch (SocketException ex)
        {
            return Classify(path, ex);
        }
    }

    /// <summary>Asynchronous form of <see cref="Probe"/>, for stream sockets whose connect may wait.</summary>
    /// <param name="path">The socket path.</param>
    /// <param name="socketType">The type of socket expected at the path.</param>
    /// <param name="cancellationToken">Cancels the probe.</param>
    /// <returns>What was found at the path.</returns>
    /// <exception cref="SocketFileException">The path exists and is not a socket.</exception>
    public static async ValueTask<SocketFileState> ProbeAsync(string path, SocketType socketType, CancellationToken cancellationToken = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!TryGetIdentity(path, out _, out var isSocket))
        {
            return SocketFileState.Absent;
        }

        if (!isSocket)
        {
            throw NotSocketException(path);
        }

        using var probe = new Socket(AddressFamily.Unix, socketType, ProtocolType.Unspecified);
        try
        {
            await probe.ConnectAsync(new UnixDomainSocketEndPoint(path), cancellationToken).ConfigureAwait(false);
            return SocketFileState.Live;
        }
        catch (SocketException ex)
        {
            return Classify(path, ex);
        }
    }

    /// <summary>Parses an octal file mode such as <c>"0660"</c> or <c>"660"</c>.</summary>
    /// <param name="octal">Three or four octal digits.</param>
    /// <returns>The mode.</returns>
    /// <exception cref="FormatException">The text is not an octal mode.</exception>
    public static UnixFileMode ParseFileMode(string octal)
    {
        ArgumentNullException.ThrowIfNull(octal);
        if (octal.Length is < 3 or > 4 || !octal.All(static c => c is >= '0' and <= '7'))
        {
            throw new FormatException($"'{octal}' is not an octal file mode such as 0660.");
        }

        var mode = 0;
        foreach (var c in octal)
        {
            mode = (mode * 8) + (c - '0');
        }

        return (UnixFileMode)mode;
    }

    /// <summary>
    /// Closes the socket, then unlinks the socket file if it is still the file this instance bound (same device
    /// and inode). A successor's file at the same path is left alone. Idempotent.
    /// </summary>
    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }

        // The socket was bound through UntrackedUnixEndPoint, so this does not unlink anything.
        Socket.Dispose();
        DeleteIfSame(Path, _identity);
    }

    /// <summary>Reads the identity (device and inode) of <paramref name="path"/>, if it exists.</summary>
    internal static bool TryGetIdentity(string path, out FileIdentity identity) =>
        TryGetIdentity(path, out identity, out _);

    /// <summary>
    /// Deletes <paramref name="path"/> if it still is the file <paramref name="expected"/> identifies: a successor's file
    /// at the same path is left alone. A small window remains between the check and the unlink; it is harmless when
    /// the directory is private.
    /// </summary>
    /// <returns>Whether the file was deleted.</returns>
    internal static bool DeleteIfSame(string path, FileIdentity expected)
    {
        try
        {
            if (!TryGetIdentity(path, out var current, out _) || current != expected)
            {
                return false;
            }

            File.Delete(path);
            return true;
        }
        catch (IOException)
        {
            // Already gone or not ours to delete: nothing to clean up.
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static SocketFileState Classify(string path, SocketException ex) => ex.SocketErrorCode switch
    {
        SocketError.ConnectionRefused => SocketFileState.Stale,

        // ENOENT: the file went away between stat and connect.
        SocketError.AddressNotAvailable => SocketFileState.Absent,

        // EAGAIN (listen backlog full) or EPROTOTYPE (a socket of the other type is bound): someone is there.
        SocketError.WouldBlock or SocketError.TryAgain or SocketError.ProtocolType => SocketFileState.Live,
        _ => throw new SocketFileException(path, $"Could not probe the socket file '{path}': {ex.SocketErrorCode}.", ex),
    };

    private static SocketFileException LiveException(string path, Exception? inner) =>
        new(path, $"A socket at '{path}' is in use (by this or another process). Stop whatever serves it or choose another path.", inner);

    private static SocketFileException NotSocketException(string path) =>
        new(path, $"The path '{path}' exists and is not a socket; refusing to replace it. Remove it or choose another path.");

    /// <summary>Reads the device, inode and type of <paramref name="path"/> without following a final symlink.</summary>
    internal static bool TryGetIdentity(string path, out FileIdentity identity, out bool isSocket)
    {
        const int AtFdCwd = -100;
        const int AtSymlinkNoFollow = 0x100;
        const uint StatxType = 0x1;
        const uint StatxIno = 0x100;
        const int SocketType = 0xC000;
        const int TypeMask = 0xF000;

        if (NativeMethods.Statx(AtFdCwd, path, AtSymlinkNoFollow, StatxType | StatxIno, out var buffer) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            const int ENOENT = 2;
            const int ENOTDIR = 20;
            if (errno is ENOENT or ENOTDIR)
            {
                identity = default;
                isSocket = false;
                return false;
            }

            throw new IOException($"Could not stat '{path}' (errno {errno}).");
        }

        identity = new FileIdentity(buffer.DevMajor, buffer.DevMinor, buffer.Ino);
        isSocket = (buffer.Mode & TypeMask) == SocketType;
        return true;
    }

    internal readonly record struct FileIdentity(uint DevMajor, uint DevMinor, ulong Inode);

    /// <summary>
    /// An AF_UNIX endpoint that <see cref="Socket"/> does not recognise as <see cref="UnixDomainSocketEndPoint"/>,
    /// so binding with it does not make <see cref="Socket.Dispose()"/> unlink the path.
    /// </summary>
    private sealed class UntrackedUnixEndPoint : EndPoint
    {
        private readonly UnixDomainSocketEndPoint _inner;

        public UntrackedUnixEndPoint(string path)
        {
            _inner = new UnixDomainSocketEndPoint(path);
        }

        public override AddressFamily AddressFamily => AddressFamily.Unix;

        public override SocketAddress Serialize() => _inner.Serialize();

        public override EndPoint Create(SocketAddress socketAddress) => _inner.Create(socketAddress);

        public override string ToString() => _inner.ToString();
    }

    /// <summary><c>struct statx</c> (linux/stat.h): the same layout on every architecture.</summary>
    [StructLayout(LayoutKind.Explicit, Size = 256)]
    private struct StatxBuffer
    {
        [FieldOffset(28)]
        public ushort Mode;

        [FieldOffset(32)]
        public ulong Ino;

        [FieldOffset(136)]
        public uint DevMajor;

        [FieldOffset(140)]
        public uint DevMinor;
    }

    private static class NativeMethods
    {
        // statx(2) (glibc 2.28+, musl 1.2.5+): its struct has one layout on every architecture, unlike struct stat.
        [DllImport("libc", EntryPoint = "statx", SetLastError = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int Statx(int dirfd, [MarshalAs(UnmanagedType.LPUTF8Str)] string path, int flags, uint mask, out StatxBuffer buffer);
    }
}
