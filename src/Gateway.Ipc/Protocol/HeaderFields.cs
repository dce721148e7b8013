using System.Text;

namespace Gateway.Ipc.Protocol;

/// <summary>The header fields of a decoded message; enumerate with <c>foreach</c> without allocating.</summary>
public readonly ref struct HeaderFields
{
    private readonly ReadOnlySpan<byte> _encoded;

    internal HeaderFields(ReadOnlySpan<byte> encoded, int count)
    {
        _encoded = encoded;
        Count = count;
    }

    /// <summary>Number of header fields.</summary>
    public int Count { get; }

    /// <summary>Gets an enumerator.</summary>
    /// <returns>The enumerator.</returns>
    public Enumerator GetEnumerator() => new(_encoded, Count);

    /// <summary>Returns the value of the first field named <paramref name="name"/> (lower-case ASCII), or null.</summary>
    /// <param name="name">The lower-case name.</param>
    /// <returns>The value decoded as UTF-8, or <see langword="null"/>.</returns>
    public string? GetValue(string name)
    {
        foreach (var field in this)
        {
            if (Ascii.EqualsIgnoreCase(field.Name, name))
            {
                return Encoding.UTF8.GetString(field.Value);
            }
        }

        return null;
    }

    /// <summary>The bytes a header name may have: RFC 9110 <c>tchar</c> without upper-case letters.</summary>
    private static readonly System.Buffers.SearchValues<byte> LowerCaseTokenBytes =
        System.Buffers.SearchValues.Create("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"u8);

    /// <summary>The bytes of an RFC 9110 token.</summary>
    private static readonly System.Buffers.SearchValues<byte> TokenBytes =
        System.Buffers.SearchValues.Create("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"u8);

    /// <summary>Validates the encoded fields and returns the number of bytes they occupy.</summary>
    internal static int Validate(ReadOnlySpan<byte> encoded, int count, bool lowerCaseNames)
    {
        var reader = new PayloadReader(encoded);
        for (var i = 0; i < count; i++)
        {
            var name = reader.ReadStr8("header name");
            if (name.IsEmpty)
            {
                ProtocolException.Throw(ProtocolViolation.BadField, $"Header field {i} has an empty name.");
            }

            if (name.IndexOfAnyExcept(lowerCaseNames ? LowerCaseTokenBytes : TokenBytes) is var bad and >= 0)
            {
                ProtocolException.Throw(ProtocolViolation.BadField, lowerCaseNames
                    ? $"Header field {i}'s name has byte 0x{name[bad]:x2} at offset {bad}, not a lower-case token character (request header names are RFC 9110 tchar without A-Z)."
                    : $"Header field {i}'s name has byte 0x{name[bad]:x2} at offset {bad}, not a token character (RFC 9110 tchar).");
            }

            reader.ReadStr16("header value");
        }

        return reader.Position;
    }

    /// <summary>Enumerates header fields.</summary>
    public ref struct Enumerator
    {
        private PayloadReader _reader;
        private int _remaining;

        internal Enumerator(ReadOnlySpan<byte> encoded, int count)
        {
            _reader = new PayloadReader(encoded);
            _remaining = count;
            Current = default;
        }

        /// <summary>The current field.</summary>
        public HeaderField Current { get; private set; }

        /// <summary>Advances to the next field.</summary>
        /// <returns>Whether there was one.</returns>
        public bool MoveNext()
        {
            if (_remaining == 0)
            {
                return false;
            }

            _remaining--;
            var name = _reader.ReadStr8("header name");
            var value = _reader.ReadStr16("header value");
            Current = new HeaderField(name, value);
            return true;
        }
    }
}

/// <summary>One header field: name (lower-case ASCII) and value bytes.</summary>
public readonly ref struct HeaderField
{
    internal HeaderField(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        Name = name;
        Value = value;
    }

    /// <summary>The name bytes (ASCII, lower case by convention).</summary>
    public ReadOnlySpan<byte> Name { get; }

    /// <summary>The value bytes (UTF-8).</summary>
    public ReadOnlySpan<byte> Value { get; }
}
