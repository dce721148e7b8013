using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Gateway.Testing;

/// <summary>The test process's identity, and datagrams sent with explicit <c>SCM_CREDENTIALS</c> (no managed API).</summary>
public static partial class Credentials
{
    private const int SolSocket = 1;
    private const int ScmRights = 1;
    private const int ScmCredentials = 2;

    /// <summary>The process's real uid: what the kernel reports in <c>SCM_CREDENTIALS</c> by default.</summary>
    public static uint RealUid => GetUid();

    /// <summary>Whether the process may claim another uid in <c>SCM_CREDENTIALS</c> (it is root: uid 0, which has <c>CAP_SETUID</c> in these tests).</summary>
    public static bool CanForgeCredentials => GetEuid() == 0;

    /// <summary>
    /// Sends <paramref name="datagram"/> to <paramref name="destination"/> with <c>sendmsg</c> carrying the
    /// credentials {own pid, <paramref name="uid"/>, <paramref name="gid"/>}.
    /// </summary>
    /// <returns>0 on success, else the errno (EPERM when the process may not claim that uid).</returns>
    public static int SendWithCredentials(Socket socket, ReadOnlySpan<byte> datagram, SocketAddress destination, uint uid, uint gid) =>
        SendWithControl(socket, datagram, destination, ScmCredentials, [Environment.ProcessId, (int)uid, (int)gid]);

    /// <summary>Sends <paramref name="datagram"/> with one file descriptor attached (<c>SCM_RIGHTS</c>).</summary>
    /// <returns>0 on success, else the errno.</returns>
    public static int SendWithDescriptor(Socket socket, ReadOnlySpan<byte> datagram, SocketAddress destination, SafeHandle descriptor) =>
        SendWithControl(socket, datagram, destination, ScmRights, [(int)descriptor.DangerousGetHandle()]);

    /// <summary>
    /// <c>sendmsg</c> with one <c>SOL_SOCKET</c> control message of <paramref name="type"/> whose data is
    /// <paramref name="data"/> (32-bit values: <c>struct ucred</c> or file descriptors).
    /// </summary>
    private static unsafe int SendWithControl(Socket socket, ReadOnlySpan<byte> datagram, SocketAddress destination, int type, ReadOnlySpan<int> data)
    {
        var headerSize = (IntPtr.Size + 8 + IntPtr.Size - 1) & ~(IntPtr.Size - 1);
        var length = headerSize + (data.Length * sizeof(int));
        var control = stackalloc byte[64];
        new Span<byte>(control, 64).Clear();
        *(nuint*)control = (nuint)length;
        *(int*)(control + IntPtr.Size) = SolSocket;
        *(int*)(control + IntPtr.Size + 4) = type;
        data.CopyTo(new Span<int>(control + headerSize, data.Length));
        var address = destination.Buffer.Span[..destination.Size];
        fixed (byte* bytes = datagram)
        fixed (byte* name = address)
        {
            var iov = new IoVec { Base = bytes, Length = (nuint)datagram.Length };
            var message = new MsgHdr
            {
                Name = name,
                NameLength = (uint)address.Length,
                Iov = &iov,
                IovLength = 1,
                Control = control,
                ControlLength = (nuint)((length + IntPtr.Size - 1) & ~(IntPtr.Size - 1)),
            };
            return SendMsg(socket.SafeHandle, &message, 0) < 0 ? Marshal.GetLastPInvokeError() : 0;
        }
    }

    [LibraryImport("libc", EntryPoint = "getuid")]
    private static partial uint GetUid();

    [LibraryImport("libc", EntryPoint = "geteuid")]
    private static partial uint GetEuid();

    [LibraryImport("libc", EntryPoint = "sendmsg", SetLastError = true)]
    private static unsafe partial nint SendMsg(SafeHandle socket, MsgHdr* message, int flags);

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct MsgHdr
    {
        public byte* Name;
        public uint NameLength;
        public IoVec* Iov;
        public nuint IovLength;
        public byte* Control;
        public nuint ControlLength;
        public int Flags;
    }
}
