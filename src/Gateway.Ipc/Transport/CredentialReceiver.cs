using System.Net.Sockets;
using System.Runtime.InteropServices;

namespace Gateway.Ipc.Transport;

/// <summary>
/// Receives a datagram together with its sender's credentials (<c>SCM_CREDENTIALS</c>), for which .NET has no
/// managed API (see PLATFORM.md): <c>recvmsg(2)</c> through P/Invoke on a socket with <c>SO_PASSCRED</c> enabled.
/// </summary>
/// <remarks>
/// With <c>SO_PASSCRED</c> on the receiving socket the kernel attaches the sender's {pid, uid, gid} to every datagram
/// it queues; only a sender with <c>CAP_SETUID</c> (root) can claim another uid. File descriptors a sender attached
/// (<c>SCM_RIGHTS</c>) and that fit the control buffer are closed at once; the rest are discarded by the kernel.
/// </remarks>
internal static partial class CredentialReceiver
{
    private const int SolSocket = 1;
    private const int SoPassCred = 16;
    private const int ScmRights = 1;
    private const int ScmCredentials = 2;
    private const int MsgCtrunc = 0x08;
    private const int MsgTrunc = 0x20;
    private const int MsgDontWait = 0x40;
    private const int MsgCmsgCloexec = 0x40000000;
    private const int EIntr = 4;
    private const int EAgain = 11;

    /// <summary>How long one poll() of <see cref="ReceiveOrWait"/> waits before its caller checks for a stop.</summary>
    public const int ReceivePollMicroseconds = 50_000;

    /// <summary>Room for one <c>SCM_CREDENTIALS</c> message and a few stray descriptors.</summary>
    private const int ControlSize = 128;

    /// <summary>The size of <c>struct cmsghdr</c>, aligned (16 on 64-bit Linux).</summary>
    private static readonly int CmsgHeaderSize = Align(IntPtr.Size + 8);

    /// <summary>Enables <c>SO_PASSCRED</c>: the kernel attaches the sender's credentials to every datagram queued from now on.</summary>
    /// <param name="socket">The receiving socket (bound).</param>
    public static void EnablePassCredentials(Socket socket) => socket.SetRawSocketOption(SolSocket, SoPassCred, [1, 0, 0, 0]);

    /// <summary>One non-blocking <c>recvmsg</c>.</summary>
    /// <param name="socket">The socket (<c>SO_PASSCRED</c> enabled).</param>
    /// <param name="buffer">Receives the datagram.</param>
    /// <param name="address">Receives the sender's <c>sockaddr_un</c> (at least <see cref="UnixAddress.MaxSize"/> bytes).</param>
    /// <param name="result">What was received.</param>
    /// <returns><see langword="false"/> if no datagram was queued (EAGAIN).</returns>
    /// <exception cref="ObjectDisposedException">The socket was disposed.</exception>
    /// <exception cref="SocketException">recvmsg failed.</exception>
    public static unsafe bool TryReceive(Socket socket, Span<byte> buffer, Span<byte> address, out CredentialReceiveResult result)
    {
        var control = stackalloc byte[ControlSize];
        fixed (byte* data = buffer)
        fixed (byte* name = address)
        {
            var iov = new IoVec { Base = data, Length = (nuint)buffer.Length };
            var message = new MsgHdr
            {
                Name = name,
                NameLength = (uint)address.Length,
                Iov = &iov,
                IovLength = 1,
                Control = control,
                ControlLength = ControlSize,
            };

            nint received;
            while (true)
            {
                received = RecvMsg(socket.SafeHandle, &message, MsgDontWait | MsgCmsgCloexec);
                if (received >= 0)
                {
                    break;
                }

                var errno = Marshal.GetLastPInvokeError();
                if (errno == EIntr)
                {
                    continue;
                }

                if (errno == EAgain)
                {
                    result = default;
                    return false;
                }

                throw new SocketException(errno, $"recvmsg failed: {Marshal.GetPInvokeErrorMessage(errno)}");
            }

            long uid = -1;
            var length = (int)Math.Min(message.ControlLength, ControlSize);
            for (var offset = 0; offset + CmsgHeaderSize <= length;)
            {
                var cmsgLength = (int)Math.Min(*(nuint*)(control + offset), (nuint)(length - offset));
                if (cmsgLength < CmsgHeaderSize)
                {
                    break;
                }

                var level = *(int*)(control + offset + IntPtr.Size);
                var type = *(int*)(control + offset + IntPtr.Size + 4);
                var payload = control + offset + CmsgHeaderSize;
                var payloadLength = cmsgLength - CmsgHeaderSize;
                if (level == SolSocket && type == ScmCredentials && payloadLength >= 12)
                {
                    uid = *(uint*)(payload + 4); // struct ucred { pid_t pid; uid_t uid; gid_t gid; }
                }
                else if (level == SolSocket && type == ScmRights)
                {
                    // Nobody asked for descriptors: do not keep them open in this process.
                    for (var i = 0; i + 4 <= payloadLength; i += 4)
                    {
                        _ = Close(*(int*)(payload + i));
                    }
                }

                offset += Align(cmsgLength);
            }

            result = new CredentialReceiveResult(
                (int)received,
                (int)message.NameLength,
                uid,
                (message.Flags & MsgTrunc) != 0,
                (message.Flags & MsgCtrunc) != 0);
            return true;
        }
    }

    /// <summary>
    /// One step of a receive loop that owns its socket: a non-blocking <see cref="TryReceive"/> first (under load the
    /// queue is rarely empty, so one system call per datagram and no exception), and only when the queue is empty a
    /// <c>poll</c> of at most <see cref="ReceivePollMicroseconds"/>, after which the caller checks for a stop and calls again.
    /// </summary>
    /// <param name="socket">The socket.</param>
    /// <param name="buffer">Receives the datagram.</param>
    /// <param name="address">Receives the sender's <c>sockaddr_un</c>.</param>
    /// <param name="result">What was received.</param>
    /// <returns><see langword="true"/> with a datagram; <see langword="false"/> after waiting (call again).</returns>
    /// <exception cref="ObjectDisposedException">The socket was disposed.</exception>
    /// <exception cref="SocketException">recvmsg failed.</exception>
    public static bool ReceiveOrWait(Socket socket, Span<byte> buffer, Span<byte> address, out CredentialReceiveResult result)
    {
        if (TryReceive(socket, buffer, address, out result))
        {
            return true;
        }

        socket.Poll(ReceivePollMicroseconds, SelectMode.SelectRead);
        return false;
    }

    private static int Align(int length) => (length + IntPtr.Size - 1) & ~(IntPtr.Size - 1);

    [LibraryImport("libc", EntryPoint = "recvmsg", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static unsafe partial nint RecvMsg(SafeHandle socket, MsgHdr* message, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static partial int Close(int fd);

    [StructLayout(LayoutKind.Sequential)]
    private unsafe struct IoVec
    {
        public byte* Base;
        public nuint Length;
    }

    /// <summary><c>struct msghdr</c> as laid out by glibc (pointer-sized fields naturally aligned).</summary>
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

/// <summary>A datagram received by <see cref="CredentialReceiver.TryReceive"/>.</summary>
/// <param name="Length">Bytes stored in the buffer.</param>
/// <param name="AddressLength">Length of the sender's address.</param>
/// <param name="Uid">The sender's uid from <c>SCM_CREDENTIALS</c>; -1 when the datagram carried none.</param>
/// <param name="Truncated">The datagram was larger than the buffer (<c>MSG_TRUNC</c>).</param>
/// <param name="ControlTruncated">Control data was lost (<c>MSG_CTRUNC</c>), e.g. descriptors that did not fit.</param>
internal readonly record struct CredentialReceiveResult(int Length, int AddressLength, long Uid, bool Truncated, bool ControlTruncated);
