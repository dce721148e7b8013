using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Tests.Protocol;

public class MalformedInputTests
{
    private static byte[] Request() => Convert.FromHexString(VectorTests.RequestHex);

    [Fact]
    public void TryRead_ShorterThanHeader_ReturnsFalse()
    {
        Assert.False(FrameHeader.TryRead(Request().AsSpan(0, 23), out _));
    }

    [Theory]
    [InlineData(0, 0x48, ProtocolViolation.BadMagic)]
    [InlineData(2, 2, ProtocolViolation.UnsupportedVersion)]
    [InlineData(3, 0, ProtocolViolation.UnknownKind)]
    [InlineData(3, 12, ProtocolViolation.UnknownKind)]
    [InlineData(4, 4, ProtocolViolation.BadFlags)]
    public void ReadDatagram_BadHeaderByte_ThrowsProtocolException(int offset, byte value, ProtocolViolation expected)
    {
        var bytes = Request();
        bytes[offset] = value;

        var ex = Assert.Throws<ProtocolException>(() => FrameHeader.ReadDatagram(bytes));
        Assert.Equal(expected, ex.Reason);
    }

    [Fact]
    public void ReadDatagram_ZeroCorrelationId_Throws()
    {
        var bytes = Request();
        bytes.AsSpan(8, 8).Clear();

        Assert.Equal(ProtocolViolation.ZeroCorrelationId, Assert.Throws<ProtocolException>(() => FrameHeader.ReadDatagram(bytes)).Reason);
    }

    [Theory]
    [InlineData(VectorTests.PingHex)]
    [InlineData(VectorTests.PongHex)]
    public void ReadDatagram_ControlMessageWithPayload_ThrowsBadLength(string hex)
    {
        var bytes = Convert.FromHexString(hex).Concat(new byte[] { 0xAB }).ToArray();
        bytes[23] = 1; // payload_length 1, and one payload byte

        Assert.Equal(ProtocolViolation.BadLength, Assert.Throws<ProtocolException>(() => FrameHeader.ReadDatagram(bytes)).Reason);
    }

    [Fact]
    public void ReadDatagram_FragmentFlagOnPing_Throws()
    {
        var bytes = Convert.FromHexString(VectorTests.PingHex);
        bytes[4] = (byte)MessageFlags.Fragment;

        Assert.Equal(ProtocolViolation.BadFlags, Assert.Throws<ProtocolException>(() => FrameHeader.ReadDatagram(bytes)).Reason);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(50)]
    [InlineData(99)]
    public void ReadDatagram_Truncated_ThrowsBadLength(int cut)
    {
        var bytes = Request();

        var ex = Assert.Throws<ProtocolException>(() => FrameHeader.ReadDatagram(bytes.AsSpan(0, bytes.Length - cut)));
        Assert.Equal(ProtocolViolation.BadLength, ex.Reason);
    }

    [Fact]
    public void ReadDatagram_TrailingBytes_ThrowsBadLength()
    {
        var bytes = Request().Concat(new byte[] { 1, 2 }).ToArray();

        Assert.Equal(ProtocolViolation.BadLength, Assert.Throws<ProtocolException>(() => FrameHeader.ReadDatagram(bytes)).Reason);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(ProtocolConstants.MaxUnfragmentedPayload)]
    public void ReadDatagram_FragmentOfAMessageThatFitsOneDatagram_ThrowsBadLength(int payloadLength)
    {
        var bytes = new byte[ProtocolConstants.FragmentHeaderSize + 1];
        new FrameHeader(MessageKind.Response, MessageFlags.Fragment, 1, 7, 0, (uint)payloadLength).Write(bytes);

        var ex = Assert.Throws<ProtocolException>(() => FrameHeader.ReadDatagram(bytes));
        Assert.Equal(ProtocolViolation.BadLength, ex.Reason);
        Assert.Contains("fits one datagram", ex.Message, StringComparison.Ordinal);

        // One byte more than fits: a legitimate first fragment.
        new FrameHeader(MessageKind.Response, MessageFlags.Fragment, 1, 7, 0, ProtocolConstants.MaxUnfragmentedPayload + 1).Write(bytes);
        Assert.True(FrameHeader.ReadDatagram(bytes).IsFragment);
    }

    [Theory]
    [InlineData("X-Kit")]
    [InlineData("content-Type")]
    [InlineData("a b")]
    [InlineData("a:b")]
    [InlineData("caf\u00e9")]
    [InlineData("a\u0000")]
    public void HeaderName_NotALowerCaseToken_IsBadFieldInRequests_NotATokenIsBadFieldInResponses(string name)
    {
        using var request = new FrameWriter();
        request.BeginRequest(1, 1, 0, "GET", "/");
        request.AddHeader(System.Text.Encoding.UTF8.GetBytes(name), "v"u8);
        request.WriteBody([]);
        var requestPayload = request.Complete().ToArray().AsSpan(ProtocolConstants.HeaderSize).ToArray();

        using var response = new FrameWriter();
        response.BeginResponse(1, 1, 200);
        response.AddHeader(System.Text.Encoding.UTF8.GetBytes(name), "v"u8);
        response.WriteBody([]);
        var responsePayload = response.Complete().ToArray().AsSpan(ProtocolConstants.HeaderSize).ToArray();

        Assert.Equal(ProtocolViolation.BadField, Assert.Throws<ProtocolException>(() => RequestView.Read(requestPayload)).Reason);
        if (name.Any(char.IsAsciiLetterUpper) && name.All(c => char.IsAsciiLetterOrDigit(c) || c == '-'))
        {
            Assert.Equal(1, ResponseView.Read(responsePayload).Headers.Count); // replies: any token, any case
        }
        else
        {
            Assert.Equal(ProtocolViolation.BadField, Assert.Throws<ProtocolException>(() => ResponseView.Read(responsePayload)).Reason);
        }
    }

    [Fact]
    public void HeaderName_EveryTokenCharacter_IsAccepted()
    {
        using var writer = new FrameWriter();
        writer.BeginResponse(1, 1, 200);
        writer.AddHeader("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyz"u8, "v"u8);
        writer.WriteBody([]);

        Assert.Equal(1, ResponseView.Read(writer.Complete().ToArray().AsSpan(ProtocolConstants.HeaderSize)).Headers.Count);
    }

    [Theory]
    [InlineData(1024, true)]
    [InlineData(1025, false)]
    public void ErrorRead_MessageOver1024Bytes_IsBadField(int length, bool valid)
    {
        var payload = new byte[4 + length];
        payload[1] = 6; // INTERNAL
        payload[2] = (byte)(length >> 8);
        payload[3] = (byte)length;
        payload.AsSpan(4).Fill((byte)'e');

        if (valid)
        {
            Assert.Equal(length, ErrorView.Read(payload).Message.Length);
        }
        else
        {
            Assert.Equal(ProtocolViolation.BadField, Assert.Throws<ProtocolException>(() => ErrorView.Read(payload)).Reason);
        }
    }

    [Fact]
    public void ReadDatagram_FragmentPastPayloadLength_Throws()
    {
        var bytes = new byte[ProtocolConstants.FragmentHeaderSize + 10];
        const uint payloadLength = ProtocolConstants.MaxUnfragmentedPayload + 15;
        new FrameHeader(MessageKind.Request, MessageFlags.Fragment, 1, 7, 0, payloadLength).Write(bytes);
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(bytes.AsSpan(24), payloadLength - 9); // 10 bytes run past the end

        var ex = Assert.Throws<ProtocolException>(() => FrameHeader.ReadDatagram(bytes));
        Assert.Equal(ProtocolViolation.BadLength, ex.Reason);
        Assert.Contains("runs past payload_length", ex.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(24, 0, ProtocolViolation.BadField)] // method length 0
    [InlineData(24, 33, ProtocolViolation.BadField)] // method length 33 > 32
    [InlineData(28, 0xff, ProtocolViolation.BadLength)] // target length high byte: runs past the end
    [InlineData(30, (byte)'x', ProtocolViolation.BadField)] // target does not start with '/'
    [InlineData(45, 54, ProtocolViolation.BadField)] // traceparent length 54
    public void RequestRead_BadField_Throws(int offset, byte value, ProtocolViolation expected)
    {
        var bytes = Request();
        bytes[offset] = value;

        var ex = Assert.Throws<ProtocolException>(() => RequestView.Read(bytes.AsSpan(ProtocolConstants.HeaderSize)));
        Assert.Equal(expected, ex.Reason);
    }

    [Fact]
    public void RequestRead_HeaderCountPastEnd_ThrowsBadLength()
    {
        var bytes = Request();
        bytes[103] = 2; // header_count 2, only one present

        Assert.Equal(ProtocolViolation.BadLength, Assert.Throws<ProtocolException>(() => RequestView.Read(bytes.AsSpan(ProtocolConstants.HeaderSize))).Reason);
    }

    [Theory]
    [InlineData(199)]
    [InlineData(600)]
    [InlineData(100)]
    public void ResponseRead_StatusOutOfRange_Throws(int status)
    {
        var bytes = Convert.FromHexString(VectorTests.ResponseHex);
        bytes[24] = (byte)(status >> 8);
        bytes[25] = (byte)status;

        Assert.Equal(ProtocolViolation.BadField, Assert.Throws<ProtocolException>(() => ResponseView.Read(bytes.AsSpan(ProtocolConstants.HeaderSize))).Reason);
    }

    [Fact]
    public void RandomBytes_OnlyEverThrowProtocolException()
    {
        var random = new Random(12345);
        var buffer = new byte[300];
        var seed = Request();
        for (var i = 0; i < 200_000; i++)
        {
            int length;
            if ((i & 1) == 0)
            {
                length = random.Next(buffer.Length);
                random.NextBytes(buffer.AsSpan(0, length));
            }
            else
            {
                // Mutate the vector: flip a few bytes, sometimes truncate.
                length = random.Next(2) == 0 ? seed.Length : random.Next(seed.Length);
                seed.AsSpan(0, length).CopyTo(buffer);
                for (var m = random.Next(1, 4); m > 0 && length > 0; m--)
                {
                    buffer[random.Next(length)] = (byte)random.Next(256);
                }
            }

            DecodeAll(buffer.AsSpan(0, length));
        }
    }

    internal static void DecodeAll(ReadOnlySpan<byte> datagram)
    {
        try
        {
            var header = FrameHeader.ReadDatagram(datagram);
            if (header.IsFragment)
            {
                return;
            }

            var payload = datagram[ProtocolConstants.HeaderSize..];
            switch (header.Kind)
            {
                case MessageKind.Request:
                    var request = RequestView.Read(payload);
                    foreach (var field in request.Headers)
                    {
                        _ = field.Name.Length + field.Value.Length;
                    }

                    break;
                case MessageKind.Response:
                    _ = ResponseView.Read(payload).Body.Length;
                    break;
                case MessageKind.Error:
                    _ = ErrorView.Read(payload).GetMessage();
                    break;
            }
        }
        catch (ProtocolException)
        {
        }
    }
}
