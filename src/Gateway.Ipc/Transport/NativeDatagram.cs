using System.Runtime.InteropServices;

namespace Gateway.Ipc.Transport;

/// <summary>The outcome of <see cref="NativeDatagram.TrySendTo"/>.</summary>
internal enum NativeSendResult
{
    /// <summary>The datagram is in the destination's queue.</summary>
    Sent,

    /// <summary>The destination's queue is full (EAGAIN).</summary>
    WouldBlock,

    /// <summary>Any other error; the caller repeats the send through <see cref="System.Net.Sockets.Socket"/> to get it as an exception.</summary>
    Failed,
}

/// <summary>
/// <c>sendto(2)</c> without exceptions on the hot path: <see cref="System.Net.Sockets.Socket.SendTo(ReadOnlySpan{byte}, System.Net.Sockets.SocketFlags, System.Net.SocketAddress)"/>
/// throws a <see cref="System.Net.Sockets.SocketException"/> for a full destination queue, which under load is a normal
/// outcome and costs far more than the system call.
/// </summary>
internal static partial class NativeDatagram
{
    private const int MsgDontWait = 0x40;
    private const int MsgNoSignal = 0x4000;
    private const int EIntr = 4;
    private const int EAgain = 11;

    /// <summary>One non-blocking <c>sendto</c> (<c>MSG_DONTWAIT</c>, whatever the socket's mode).</summary>
    /// <param name="socket">The socket's handle.</param>
    /// <param name="datagram">The datagram.</param>
    /// <param name="address">The destination's <c>sockaddr_un</c> bytes.</param>
    /// <returns>Whether it was sent, refused for a full queue, or failed otherwise.</returns>
    /// <exception cref="ObjectDisposedException">The socket was disposed.</exception>
    public static unsafe NativeSendResult TrySendTo(SafeHandle socket, ReadOnlySpan<byte> datagram, ReadOnlySpan<byte> address)
    {
        fixed (byte* data = datagram)
        fixed (byte* name = address)
        {
            while (true)
            {
                if (SendTo(socket, data, (nuint)datagram.Length, MsgDontWait | MsgNoSignal, name, (uint)address.Length) >= 0)
                {
                    return NativeSendResult.Sent;
                }

                switch (Marshal.GetLastPInvokeError())
                {
                    case EIntr:
                        continue;
                    case EAgain:
                        return NativeSendResult.WouldBlock;
                    default:
                        return NativeSendResult.Failed;
                }
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "sendto", SetLastError = true)]
    [DefaultDllImportSearchPaths(DllImportSearchPath.SafeDirectories)]
    private static unsafe partial nint SendTo(SafeHandle socket, byte* buffer, nuint length, int flags, byte* address, uint addressLength);
}
