using System.Runtime.InteropServices;

namespace Gateway.Ipc.Transport;

/// <summary>
/// The (device, inode) pair of a file, read with <c>lstat(2)</c>: two paths name the same file iff their
/// identities are equal. Used to unlink a socket file only if it is still the one we bound.
/// </summary>
internal readonly record struct FileIdentity(ulong Device, ulong Inode)
{
    // struct stat begins with st_dev (8 bytes) and st_ino (8 bytes) on the 64-bit Linux ABIs (x86_64, the generic
    // layout of arm64, riscv64, loongarch64). 256 bytes covers the whole struct on all of them.
    private const int StatBufferSize = 256;

    /// <summary>Reads the identity of <paramref name="path"/> without following a symbolic link.</summary>
    /// <param name="path">The path.</param>
    /// <param name="identity">The identity when the file exists.</param>
    /// <returns>Whether the file exists and its identity could be read.</returns>
    public static bool TryGet(string path, out FileIdentity identity)
    {
        identity = default;
        if (!IsSupported)
        {
            return false;
        }

        var buffer = new byte[StatBufferSize];
        if (NativeMethods.LStat(path, buffer) != 0)
        {
            return false;
        }

        identity = new FileIdentity(BitConverter.ToUInt64(buffer, 0), BitConverter.ToUInt64(buffer, 8));
        return true;
    }

    /// <summary>Whether this process's ABI has the layout assumed above.</summary>
    public static bool IsSupported =>
        RuntimeInformation.ProcessArchitecture is Architecture.X64 or Architecture.Arm64 or Architecture.RiscV64 or Architecture.LoongArch64;

    /// <summary>Deletes <paramref name="path"/> if it still is the file <paramref name="expected"/> identifies.</summary>
    /// <param name="path">The path.</param>
    /// <param name="expected">The identity recorded when the file was created.</param>
    /// <returns>Whether the file was deleted.</returns>
    /// <remarks>A small window remains between the check and the unlink; it is harmless when the directory is private.</remarks>
    public static bool DeleteIfSame(string path, FileIdentity expected)
    {
        if (!TryGet(path, out var actual) || actual != expected)
        {
            return false;
        }

        try
        {
            File.Delete(path);
            return true;
        }
        catch (IOException)
        {
            return false;
        }
        catch (UnauthorizedAccessException)
        {
            return false;
        }
    }

    private static class NativeMethods
    {
        [DllImport("libc", EntryPoint = "lstat", SetLastError = true, ExactSpelling = true)]
        [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
        public static extern int LStat([MarshalAs(UnmanagedType.LPUTF8Str)] string path, [Out] byte[] buffer);
    }
}
