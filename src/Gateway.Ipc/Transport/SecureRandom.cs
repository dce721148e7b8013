namespace Gateway.Ipc.Transport;

/// <summary>
/// Unpredictable bytes for socket names and the first correlation ID, without OpenSSL: on Linux
/// <see cref="System.Security.Cryptography.RandomNumberGenerator"/> loads libcrypto and libssl (about 4 MB of resident
/// memory in a Native AOT gateway, and their start-up), while <see cref="Guid.NewGuid"/> draws from the kernel's
/// cryptographically secure generator (getrandom) through the runtime's own native shim.
/// </summary>
internal static class SecureRandom
{
    /// <summary>Fills <paramref name="destination"/> with cryptographically secure random bytes.</summary>
    public static void Fill(Span<byte> destination)
    {
        Span<byte> guid = stackalloc byte[16];
        while (!destination.IsEmpty)
        {
            Guid.NewGuid().TryWriteBytes(guid);

            // A version 4 GUID fixes 6 bits, in bytes 7 (version) and 8 (variant): use the 14 other bytes.
            var take = Math.Min(destination.Length, 7);
            guid[..take].CopyTo(destination);
            destination = destination[take..];
            take = Math.Min(destination.Length, 7);
            guid.Slice(9, take).CopyTo(destination);
            destination = destination[take..];
        }
    }

    /// <summary>Returns <paramref name="count"/> cryptographically secure random bytes.</summary>
    public static byte[] GetBytes(int count)
    {
        var bytes = new byte[count];
        Fill(bytes);
        return bytes;
    }
}
