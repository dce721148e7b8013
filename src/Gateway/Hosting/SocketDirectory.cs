using System.Runtime.InteropServices;

namespace Gateway.Hosting;

/// <summary>A start-up failure the operator fixes in the configuration or on the machine: reported as its message alone.</summary>
internal sealed class StartupException(string message, Exception? innerException = null) : InvalidOperationException(message, innerException);

/// <summary>
/// Creates a directory that is to hold sockets (with its missing parents) and checks that this process may create
/// sockets in it; a failure names the configuration key, the directory and the system's reason.
/// </summary>
internal static partial class SocketDirectory
{
    private const int EEXIST = 17;
    private const int W_OK = 2;
    private const int X_OK = 1;

    /// <summary>Ensures <paramref name="directory"/> exists and is writable (creating it with <paramref name="mode"/>, narrowed by the umask).</summary>
    /// <param name="directory">The directory.</param>
    /// <param name="key">The configuration key the directory comes from, e.g. <c>Gateway:Listen:UnixSocket</c>.</param>
    /// <param name="mode">The mode of the directories created.</param>
    /// <exception cref="StartupException">The directory cannot be created or written.</exception>
    public static void Ensure(string directory, string key, UnixFileMode mode = (UnixFileMode)0b111_111_111)
    {
        directory = Path.GetFullPath(directory);
        Create(directory, directory, key, mode);
        if (Access(directory, W_OK | X_OK) != 0)
        {
            var errno = Marshal.GetLastPInvokeError();
            throw new StartupException($"{key}: cannot create sockets in the directory {directory}: {Marshal.GetPInvokeErrorMessage(errno)} (this process runs as uid {EffectiveUid().ToString(System.Globalization.CultureInfo.InvariantCulture)}). Give this user write access to it or choose another path.");
        }
    }

    private static void Create(string directory, string target, string key, UnixFileMode mode)
    {
        if (Directory.Exists(directory))
        {
            return;
        }

        var parent = Path.GetDirectoryName(directory);
        if (!string.IsNullOrEmpty(parent) && parent != directory)
        {
            Create(parent, target, key, mode);
        }

        if (Mkdir(directory, (uint)mode) == 0)
        {
            return;
        }

        var errno = Marshal.GetLastPInvokeError();
        if (errno == EEXIST && Directory.Exists(directory))
        {
            return; // created concurrently
        }

        var reason = errno == EEXIST ? "it exists and is not a directory" : Marshal.GetPInvokeErrorMessage(errno);
        var which = directory == target ? $"the directory {target}" : $"the directory {target} (at {directory})";
        throw new StartupException($"{key}: cannot create {which}: {reason}. Choose another path or create it with write access for this user.");
    }

    [LibraryImport("libc", EntryPoint = "mkdir", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Mkdir(string path, uint mode);

    [LibraryImport("libc", EntryPoint = "access", StringMarshalling = StringMarshalling.Utf8, SetLastError = true)]
    private static partial int Access(string path, int mode);

    /// <summary>The process's effective uid (geteuid(2)), for start-up messages and permission checks.</summary>
    [LibraryImport("libc", EntryPoint = "geteuid")]
    internal static partial uint EffectiveUid();
}
