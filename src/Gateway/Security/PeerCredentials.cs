using System.Net.Sockets;
using System.Runtime.InteropServices;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Connections.Features;

namespace Gateway.Security;

/// <summary>
/// The identity of the process at the other end of a Unix socket connection, as the kernel recorded it when
/// the caller connected (SO_PEERCRED). Absent when the connection is not a Unix socket (loopback TCP, TestServer):
/// such a caller is unknown, and is denied wherever an allow-list applies.
/// </summary>
internal interface IPeerCredentialsFeature
{
    int Pid { get; }

    uint Uid { get; }

    /// <summary>The primary group.</summary>
    uint Gid { get; }

    /// <summary>The caller's supplementary groups (SO_PEERGROUPS), read on first use; empty if unavailable.</summary>
    IReadOnlyList<uint> Groups { get; }
}

/// <summary>Reads SO_PEERCRED once per connection; the supplementary groups only if an allow-list needs them.</summary>
internal sealed class PeerCredentialsFeature : IPeerCredentialsFeature
{
    private const int SolSocket = 1;
    private const int SoPeerCred = 17;
    private const int SoPeerGroups = 59;

    /// <summary>NGROUPS_MAX on Linux.</summary>
    private const int MaxGroups = 65536;

    private readonly Socket _socket;
    private uint[]? _groups;

    private PeerCredentialsFeature(Socket socket, int pid, uint uid, uint gid)
    {
        _socket = socket;
        Pid = pid;
        Uid = uid;
        Gid = gid;
    }

    public int Pid { get; }

    public uint Uid { get; }

    public uint Gid { get; }

    public IReadOnlyList<uint> Groups
    {
        get
        {
            var groups = Volatile.Read(ref _groups);
            if (groups is null)
            {
                groups = ReadGroups();
                Volatile.Write(ref _groups, groups);
            }

            return groups;
        }
    }

    /// <summary>Reads <c>struct ucred { pid_t pid; uid_t uid; gid_t gid; }</c> of a connected Unix stream socket.</summary>
    public static PeerCredentialsFeature? TryRead(Socket socket)
    {
        if (socket.AddressFamily != AddressFamily.Unix)
        {
            return null;
        }

        Span<byte> ucred = stackalloc byte[12];
        try
        {
            if (socket.GetRawSocketOption(SolSocket, SoPeerCred, ucred) < ucred.Length)
            {
                return null;
            }
        }
        catch (Exception ex) when (ex is SocketException or ObjectDisposedException)
        {
            return null;
        }

        return new PeerCredentialsFeature(socket, MemoryMarshal.Read<int>(ucred), MemoryMarshal.Read<uint>(ucred[4..]), MemoryMarshal.Read<uint>(ucred[8..]));
    }

    private uint[] ReadGroups()
    {
        // ERANGE when the buffer is too small: try a typical size first, then the most a process can have.
        foreach (var count in (ReadOnlySpan<int>)[64, MaxGroups])
        {
            var buffer = new byte[count * sizeof(uint)];
            try
            {
                var length = _socket.GetRawSocketOption(SolSocket, SoPeerGroups, buffer);
                return MemoryMarshal.Cast<byte, uint>(buffer.AsSpan(0, length - (length % sizeof(uint)))).ToArray();
            }
            catch (SocketException)
            {
            }
            catch (ObjectDisposedException)
            {
                break;
            }
        }

        return [];
    }
}

/// <summary>Kestrel connection middleware on the Unix listener: attaches <see cref="IPeerCredentialsFeature"/>.</summary>
internal static class PeerCredentialsConnectionMiddleware
{
    public static Func<ConnectionDelegate, ConnectionDelegate> Create(ILogger logger) => next => connection =>
    {
        if (connection.Features.Get<IConnectionSocketFeature>()?.Socket is { } socket && PeerCredentialsFeature.TryRead(socket) is { } caller)
        {
            connection.Features.Set<IPeerCredentialsFeature>(caller);
            SecurityLog.CallerConnected(logger, caller.Uid, caller.Gid, caller.Pid, connection.ConnectionId);
        }

        return next(connection);
    };
}
