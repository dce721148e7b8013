using System.Net;
using System.Net.Sockets;

namespace Gateway.Ipc.Transport;

/// <summary>
/// An <see cref="EndPoint"/> for an <c>AF_UNIX</c> address given as raw <see cref="SocketAddress"/> bytes.
/// </summary>
/// <remarks>
/// Binding with it instead of <see cref="UnixDomainSocketEndPoint"/> keeps <see cref="Socket.Dispose()"/> from
/// unlinking the bound path (which it does even when another socket has re-bound the path since, see
/// PLATFORM.md): the owner unlinks the file itself, after checking its inode.
/// </remarks>
internal sealed class SocketAddressEndPoint : EndPoint
{
    private readonly byte[] _address;

    public SocketAddressEndPoint(SocketAddress address)
    {
        _address = address.Buffer.Span[..address.Size].ToArray();
    }

    public override AddressFamily AddressFamily => AddressFamily.Unix;

    public override SocketAddress Serialize()
    {
        var result = new SocketAddress(AddressFamily.Unix, _address.Length);
        _address.CopyTo(result.Buffer.Span);
        return result;
    }

    public override EndPoint Create(SocketAddress socketAddress) => new SocketAddressEndPoint(socketAddress);

    public override string ToString() => UnixAddress.Format(_address);
}

/// <summary>Helpers for <c>AF_UNIX</c> socket addresses.</summary>
internal static class UnixAddress
{
    /// <summary>The size of a <c>sockaddr_un</c>.</summary>
    public static readonly int MaxSize = SocketAddress.GetMaximumAddressSize(AddressFamily.Unix);

    /// <summary>
    /// Whether two <c>sockaddr_un</c> byte strings name the same socket. A path ends at its first NUL: the kernel
    /// reports a path-bound socket's address with the length its owner passed to bind(2) — with or without the
    /// terminator, or the whole <c>sockaddr_un</c> as C programs passing <c>sizeof(addr)</c> do — so byte
    /// equality would reject a Python or C backend's genuine replies. Abstract names are compared whole.
    /// </summary>
    /// <param name="a">One address (family first).</param>
    /// <param name="b">The other.</param>
    /// <returns>Whether they are the same socket address.</returns>
    public static bool SameAddress(ReadOnlySpan<byte> a, ReadOnlySpan<byte> b)
    {
        if (a.Length <= 2 || b.Length <= 2)
        {
            return a.SequenceEqual(b);
        }

        if (a[0] != b[0] || a[1] != b[1])
        {
            return false;
        }

        a = a[2..];
        b = b[2..];
        if (a[0] == 0 || b[0] == 0)
        {
            return a.SequenceEqual(b);
        }

        var aEnd = a.IndexOf((byte)0);
        var bEnd = b.IndexOf((byte)0);
        return (aEnd < 0 ? a : a[..aEnd]).SequenceEqual(bEnd < 0 ? b : b[..bEnd]);
    }

    /// <summary>Formats address bytes as a path, or as <c>@name</c> for an abstract name, or <c>(unnamed)</c>.</summary>
    /// <param name="address">The <c>sockaddr_un</c> bytes (family first).</param>
    /// <returns>The printable address.</returns>
    public static string Format(ReadOnlySpan<byte> address)
    {
        if (address.Length <= 2)
        {
            return "(unnamed)";
        }

        var path = address[2..];
        if (path[0] == 0)
        {
            return "@" + System.Text.Encoding.UTF8.GetString(path[1..]);
        }

        var end = path.IndexOf((byte)0);
        return System.Text.Encoding.UTF8.GetString(end < 0 ? path : path[..end]);
    }
}
