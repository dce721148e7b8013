using System.Buffers.Binary;

namespace Gateway.Ipc.Protocol;

/// <summary>Sequential reader over a payload; every read checks bounds and throws <see cref="ProtocolException"/>.</summary>
internal ref struct PayloadReader
{
    private readonly ReadOnlySpan<byte> _payload;
    private int _position;

    public PayloadReader(ReadOnlySpan<byte> payload)
    {
        _payload = payload;
        _position = 0;
    }

    public readonly int Position => _position;

    public readonly ReadOnlySpan<byte> Rest => _payload[_position..];

    public ushort ReadUInt16(string field)
    {
        Need(2, field);
        var value = BinaryPrimitives.ReadUInt16BigEndian(_payload[_position..]);
        _position += 2;
        return value;
    }

    public ReadOnlySpan<byte> ReadStr8(string field)
    {
        Need(1, field);
        int length = _payload[_position];
        _position++;
        return Take(length, field);
    }

    public ReadOnlySpan<byte> ReadStr16(string field)
    {
        int length = ReadUInt16(field);
        return Take(length, field);
    }

    private ReadOnlySpan<byte> Take(int length, string field)
    {
        Need(length, field);
        var value = _payload.Slice(_position, length);
        _position += length;
        return value;
    }

    private readonly void Need(int count, string field)
    {
        if (_payload.Length - _position < count)
        {
            ProtocolException.Throw(ProtocolViolation.BadLength, $"The field '{field}' runs past the end of the payload.");
        }
    }
}
