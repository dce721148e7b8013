using System.Buffers.Binary;
using Gateway.Ipc.Protocol;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Ipc.Tests.Protocol;

public class ReassemblerTests
{
    private static readonly byte[] SenderA = [1, 0, 0x2f, 0x61, 0];
    private static readonly byte[] SenderB = [1, 0, 0x2f, 0x62, 0];

    /// <summary>Builds one fragment datagram by hand (header with FRAGMENT, fragment_offset, data).</summary>
    internal static byte[] Fragment(ulong correlationId, uint payloadLength, uint offset, ReadOnlySpan<byte> data, ushort attempt = 1, MessageKind kind = MessageKind.Response, uint budget = 0)
    {
        var datagram = new byte[ProtocolConstants.FragmentHeaderSize + data.Length];
        new FrameHeader(kind, MessageFlags.Fragment, attempt, correlationId, budget, payloadLength).Write(datagram);
        BinaryPrimitives.WriteUInt32BigEndian(datagram.AsSpan(ProtocolConstants.HeaderSize), offset);
        data.CopyTo(datagram.AsSpan(ProtocolConstants.FragmentHeaderSize));
        return datagram;
    }

    private static byte[] RandomBytes(int length, int seed)
    {
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }

    [Fact]
    public void Add_FragmentsInOrder_CompletesWithFragmentFlagClearedAndExactPayload()
    {
        using var reassembler = new Reassembler();
        var payload = RandomBytes(500_000, 1);
        var results = new List<ReassemblyResult>();
        ReassembledMessage? message = null;
        for (var offset = 0; offset < payload.Length; offset += ProtocolConstants.MaxFragmentData)
        {
            var count = Math.Min(ProtocolConstants.MaxFragmentData, payload.Length - offset);
            results.Add(reassembler.Add(SenderA, Fragment(7, (uint)payload.Length, (uint)offset, payload.AsSpan(offset, count), attempt: 3, kind: MessageKind.Request, budget: 900), out message));
        }

        Assert.Equal([ReassemblyResult.Incomplete, ReassemblyResult.Incomplete, ReassemblyResult.Completed], results);
        Assert.NotNull(message);
        using (message)
        {
            var header = FrameHeader.ReadDatagram(message.Message.Span);
            Assert.Equal(new FrameHeader(MessageKind.Request, MessageFlags.None, 3, 7, 900, (uint)payload.Length), header);
            Assert.Equal(header, message.Header);
            Assert.True(payload.AsSpan().SequenceEqual(message.Payload.Span));
        }

        Assert.Equal(0, reassembler.PartialCount);
        Assert.Equal(0, reassembler.BytesHeld);
        Assert.Equal(1, reassembler.Statistics.Completed);
    }

    [Fact]
    public void Add_WhileIncomplete_HoldsOnePartialReservingTheWholeMessage()
    {
        using var reassembler = new Reassembler();

        var result = reassembler.Add(SenderA, Fragment(7, 1000, 0, new byte[400]), out var message);

        Assert.Equal(ReassemblyResult.Incomplete, result);
        Assert.Null(message);
        Assert.Equal(1, reassembler.PartialCount);
        Assert.Equal(ProtocolConstants.HeaderSize + 1000, reassembler.BytesHeld);
    }

    [Fact]
    public void Add_UnexpectedOffset_DropsPartialAndLaterFragments()
    {
        using var reassembler = new Reassembler();
        reassembler.Add(SenderA, Fragment(7, 300, 0, new byte[100]), out _);

        var skipped = reassembler.Add(SenderA, Fragment(7, 300, 200, new byte[100]), out _);
        var late = reassembler.Add(SenderA, Fragment(7, 300, 100, new byte[100]), out var message);

        Assert.Equal(ReassemblyResult.OutOfOrder, skipped);
        Assert.Equal(ReassemblyResult.OutOfOrder, late);
        Assert.Null(message);
        Assert.Equal(0, reassembler.PartialCount);
        Assert.Equal(0, reassembler.BytesHeld);
        Assert.Equal(2, reassembler.Statistics.OutOfOrder);
    }

    [Fact]
    public void Add_ContinuationWithoutFirstFragment_IsOutOfOrder()
    {
        using var reassembler = new Reassembler();

        var result = reassembler.Add(SenderA, Fragment(7, 300, 100, new byte[100]), out _);

        Assert.Equal(ReassemblyResult.OutOfOrder, result);
        Assert.Equal(0, reassembler.PartialCount);
    }

    [Fact]
    public void Add_FragmentRunningPastPayloadLength_IsMalformed()
    {
        using var reassembler = new Reassembler();
        reassembler.Add(SenderA, Fragment(7, 300, 0, new byte[200]), out _);

        var result = reassembler.Add(SenderA, Fragment(7, 300, 200, new byte[101]), out var message);

        Assert.Equal(ReassemblyResult.Malformed, result);
        Assert.Null(message);
        Assert.Equal(1, reassembler.Statistics.Malformed);
    }

    [Fact]
    public void Add_PayloadLengthDifferentFromPartial_DropsPartialAsMalformed()
    {
        using var reassembler = new Reassembler();
        reassembler.Add(SenderA, Fragment(7, 300, 0, new byte[200]), out _);

        var result = reassembler.Add(SenderA, Fragment(7, 400, 200, new byte[100]), out _);

        Assert.Equal(ReassemblyResult.Malformed, result);
        Assert.Equal(0, reassembler.PartialCount);
    }

    [Fact]
    public void Add_NotAFragment_IsMalformed()
    {
        using var reassembler = new Reassembler();
        var datagram = new byte[ProtocolConstants.HeaderSize];
        new FrameHeader(MessageKind.Response, MessageFlags.None, 1, 7, 0, 0).Write(datagram);

        Assert.Equal(ReassemblyResult.Malformed, reassembler.Add(SenderA, datagram, out _));
        Assert.Equal(ReassemblyResult.Malformed, reassembler.Add(SenderA, [1, 2, 3], out _));
    }

    [Fact]
    public void Add_FirstFragmentAnnouncingMoreThanMaxMessageBytes_IsTooLargeOnceAndHoldsNothing()
    {
        using var reassembler = new Reassembler(maxMessageBytes: 1000);

        var first = reassembler.Add(SenderA, Fragment(7, 1001, 0, new byte[500]), out var message);
        var next = reassembler.Add(SenderA, Fragment(7, 1001, 500, new byte[501]), out _);

        Assert.Equal(ReassemblyResult.TooLarge, first);
        Assert.Null(message);
        Assert.Equal(ReassemblyResult.OutOfOrder, next);
        Assert.Equal(0, reassembler.BytesHeld);
        Assert.Equal(1, reassembler.Statistics.TooLarge);
    }

    [Fact]
    public void Add_MessageBeyondTotalBytesLimit_IsDroppedUntilMemoryIsFreed()
    {
        using var reassembler = new Reassembler(maxTotalBytes: 1500);
        reassembler.Add(SenderA, Fragment(1, 1000, 0, new byte[500]), out _);

        var refused = reassembler.Add(SenderA, Fragment(2, 1000, 0, new byte[500]), out _);
        var completed = reassembler.Add(SenderA, Fragment(1, 1000, 500, new byte[500]), out var message);
        message!.Dispose();
        var accepted = reassembler.Add(SenderA, Fragment(2, 1000, 0, new byte[500]), out _);

        Assert.Equal(ReassemblyResult.OverLimit, refused);
        Assert.Equal(ReassemblyResult.Completed, completed);
        Assert.Equal(ReassemblyResult.Incomplete, accepted);
        Assert.Equal(1, reassembler.Statistics.OverLimit);
        Assert.Equal(1024, reassembler.BytesHeld);
    }

    [Fact]
    public void Sweep_AfterTimeout_FreesPartialAndCountsIt()
    {
        var time = new FakeTimeProvider();
        using var reassembler = new Reassembler(timeout: TimeSpan.FromSeconds(10), timeProvider: time);
        reassembler.Add(SenderA, Fragment(7, 300, 0, new byte[100]), out _);

        time.Advance(TimeSpan.FromSeconds(9));
        var beforeTimeout = reassembler.Sweep();
        time.Advance(TimeSpan.FromSeconds(1));
        var atTimeout = reassembler.Sweep();
        var continuation = reassembler.Add(SenderA, Fragment(7, 300, 100, new byte[100]), out _);

        Assert.Equal(0, beforeTimeout);
        Assert.Equal(1, atTimeout);
        Assert.Equal(ReassemblyResult.OutOfOrder, continuation);
        Assert.Equal(0, reassembler.PartialCount);
        Assert.Equal(0, reassembler.BytesHeld);
        Assert.Equal(1, reassembler.Statistics.Expired);
    }

    [Fact]
    public void Add_AfterTimeout_FreesExpiredPartialsFirst()
    {
        var time = new FakeTimeProvider();
        using var reassembler = new Reassembler(maxTotalBytes: 1100, timeout: TimeSpan.FromSeconds(10), timeProvider: time);
        reassembler.Add(SenderA, Fragment(1, 1000, 0, new byte[100]), out _);
        time.Advance(TimeSpan.FromSeconds(10));

        // Would not fit next to the expired partial.
        var result = reassembler.Add(SenderA, Fragment(2, 1000, 0, new byte[100]), out _);

        Assert.Equal(ReassemblyResult.Incomplete, result);
        Assert.Equal(1, reassembler.PartialCount);
        Assert.Equal(1, reassembler.Statistics.Expired);
    }

    [Fact]
    public void Add_SameKeyFromTwoSenders_ReassemblesSeparately()
    {
        using var reassembler = new Reassembler();
        reassembler.Add(SenderA, Fragment(7, 2, 0, [0xa1]), out _);
        reassembler.Add(SenderB, Fragment(7, 2, 0, [0xb1]), out _);

        reassembler.Add(SenderB, Fragment(7, 2, 1, [0xb2]), out var fromB);
        reassembler.Add(SenderA, Fragment(7, 2, 1, [0xa2]), out var fromA);

        Assert.Equal(new byte[] { 0xa1, 0xa2 }, fromA!.Payload.ToArray());
        Assert.Equal(new byte[] { 0xb1, 0xb2 }, fromB!.Payload.ToArray());
        fromA.Dispose();
        fromB.Dispose();
        Assert.Equal(0, reassembler.PartialCount);
    }

    [Fact]
    public void Add_DifferentAttemptsOfOneRequest_AreDifferentMessages()
    {
        using var reassembler = new Reassembler();
        reassembler.Add(SenderA, Fragment(7, 2, 0, [1], attempt: 1), out _);

        var otherAttempt = reassembler.Add(SenderA, Fragment(7, 2, 1, [2], attempt: 2), out _);

        Assert.Equal(ReassemblyResult.OutOfOrder, otherAttempt);
        Assert.Equal(1, reassembler.PartialCount);
    }

    [Fact]
    public void Dispose_FreesPartialsAndRefusesFurtherFragments()
    {
        var reassembler = new Reassembler();
        reassembler.Add(SenderA, Fragment(7, 300, 0, new byte[100]), out _);

        reassembler.Dispose();

        Assert.Equal(0, reassembler.BytesHeld);
        Assert.Throws<ObjectDisposedException>(() => reassembler.Add(SenderA, Fragment(8, 300, 0, new byte[100]), out _));
    }
}
