using System.Buffers.Binary;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Tests.Protocol;

namespace Gateway.Ipc.Tests.Fuzz;

/// <summary>
/// Seeded generator of hostile datagrams: random bytes, and mutations of the spec's test vectors
/// (docs/protocol.md section 8, <see cref="VectorTests"/>): bit flips, truncations, corrupted length fields,
/// random payloads behind valid headers, fragment headers with absurd totals and offsets, valid frames with
/// unknown correlation IDs (late or duplicate replies), and rare datagrams larger than <see cref="ProtocolConstants.MaxDatagram"/>.
/// </summary>
internal sealed class DatagramFuzzer
{
    /// <summary>The buffer must hold an oversized datagram.</summary>
    public const int BufferSize = ProtocolConstants.MaxDatagram + 1024;

    private static readonly byte[][] Vectors =
    [
        Convert.FromHexString(VectorTests.RequestHex),
        Convert.FromHexString(VectorTests.ResponseHex),
        Convert.FromHexString(VectorTests.ErrorHex),
        Convert.FromHexString(VectorTests.PingHex),
        Convert.FromHexString(VectorTests.PongHex),
    ];

    private readonly Random _random;

    public DatagramFuzzer(int seed)
    {
        _random = new Random(seed);
    }

    /// <summary>How many datagrams of each strategy were generated.</summary>
    public int[] Strategies { get; } = new int[10];

    public Random Random => _random;

    /// <summary>Writes the next datagram into <paramref name="buffer"/> and returns its length.</summary>
    public int Next(byte[] buffer)
    {
        if (_random.Next(20_000) == 0)
        {
            // Larger than the protocol allows: the receiver sees a full buffer.
            Strategies[9]++;
            var length = ProtocolConstants.MaxDatagram + 1 + _random.Next(512);
            Vectors[1].CopyTo(buffer, 0);
            return length;
        }

        var strategy = _random.Next(9);
        Strategies[strategy]++;
        var vector = Vectors[_random.Next(Vectors.Length)];
        switch (strategy)
        {
            case 0:
            {
                // Random bytes, mostly short, sometimes starting with the magic so the header parser gets further.
                var length = _random.Next(8) == 0 ? _random.Next(4096) : _random.Next(64);
                _random.NextBytes(buffer.AsSpan(0, length));
                if (length >= 3 && _random.Next(2) == 0)
                {
                    buffer[0] = 0x47;
                    buffer[1] = 0x44;
                    buffer[2] = 1;
                }

                return length;
            }

            case 1:
            {
                // Bit flips.
                vector.CopyTo(buffer, 0);
                for (var flips = _random.Next(1, 5); flips > 0; flips--)
                {
                    var bit = _random.Next(vector.Length * 8);
                    buffer[bit / 8] ^= (byte)(1 << (bit % 8));
                }

                return vector.Length;
            }

            case 2:
                // Truncation.
                vector.CopyTo(buffer, 0);
                return _random.Next(vector.Length);

            case 3:
            {
                // Corrupted payload_length (or, for a request, a corrupted inner length field).
                vector.CopyTo(buffer, 0);
                var field = buffer.AsSpan(20, 4);
                var value = BinaryPrimitives.ReadUInt32BigEndian(field);
                BinaryPrimitives.WriteUInt32BigEndian(field, _random.Next(3) switch
                {
                    0 => (uint)_random.NextInt64(uint.MaxValue + 1L),
                    1 => value + (uint)_random.Next(-3, 4),
                    _ => value,
                });
                if (vector.Length > 28)
                {
                    // Also a length inside the payload (str8/str16 prefixes, header_count).
                    buffer[24 + _random.Next(vector.Length - 24)] = (byte)_random.Next(256);
                }

                return vector.Length;
            }

            case 4:
            {
                // A fragment header: FRAGMENT flag, absurd or plausible totals and offsets.
                vector.CopyTo(buffer, 0);
                buffer[3] = (byte)(_random.Next(4) == 0 ? _random.Next(1, 7) : (_random.Next(2) == 0 ? 1 : 2));
                buffer[4] |= (byte)MessageFlags.Fragment;
                RandomCorrelationId(buffer);
                var data = _random.Next(1, 600);
                _random.NextBytes(buffer.AsSpan(28, data));
                uint total = _random.Next(10) switch
                {
                    < 5 => (uint)_random.NextInt64(uint.MaxValue + 1L), // absurd: almost always above every limit
                    < 9 => (uint)(data + _random.Next(4096)), // plausible: held until completed, replaced or expired
                    _ => (uint)data - (uint)_random.Next(Math.Min(data, 3) + 1), // shorter than the data
                };
                BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(20), total);
                BinaryPrimitives.WriteUInt32BigEndian(buffer.AsSpan(24), _random.Next(3) == 0 ? (uint)_random.NextInt64(uint.MaxValue + 1L) : 0u);
                return 28 + data;
            }

            case 5:
            {
                // A valid header of any kind, flags mostly 0, consistent payload_length, random payload.
                var payload = _random.Next(4) == 0 ? 0 : _random.Next(300);
                var header = new FrameHeader(
                    (MessageKind)_random.Next(0, 8),
                    _random.Next(8) == 0 ? (MessageFlags)_random.Next(256) : MessageFlags.None,
                    (ushort)_random.Next(4),
                    (ulong)_random.NextInt64(),
                    (uint)_random.Next(3) * 1000,
                    (uint)payload);
                header.Write(buffer);
                _random.NextBytes(buffer.AsSpan(ProtocolConstants.HeaderSize, payload));
                return ProtocolConstants.HeaderSize + payload;
            }

            case 6:
                // The vector unchanged but for a random correlation ID: late, duplicate or unknown replies; fresh
                // requests, pings and cancels for a backend.
                vector.CopyTo(buffer, 0);
                RandomCorrelationId(buffer);
                return vector.Length;

            case 7:
            {
                // Random bytes overwritten inside the vector.
                vector.CopyTo(buffer, 0);
                for (var m = _random.Next(1, 4); m > 0; m--)
                {
                    buffer[_random.Next(vector.Length)] = (byte)_random.Next(256);
                }

                return vector.Length;
            }

            default:
            {
                // The vector with junk appended (length mismatch) or a control frame with a payload.
                vector.CopyTo(buffer, 0);
                var extra = _random.Next(1, 100);
                _random.NextBytes(buffer.AsSpan(vector.Length, extra));
                return vector.Length + extra;
            }
        }
    }

    private void RandomCorrelationId(byte[] buffer)
    {
        // Sometimes 0 (malformed), else a random ID.
        BinaryPrimitives.WriteUInt64BigEndian(buffer.AsSpan(8), _random.Next(50) == 0 ? 0 : (ulong)_random.NextInt64(1, long.MaxValue));
    }
}
