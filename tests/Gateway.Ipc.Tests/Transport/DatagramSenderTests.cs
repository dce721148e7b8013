using System.Net;
using System.Net.Sockets;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Transport;
using Gateway.Testing;
using Microsoft.Extensions.Time.Testing;

namespace Gateway.Ipc.Tests.Transport;

public class DatagramSenderTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    internal static Socket BoundSocket(string path)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new UnixDomainSocketEndPoint(path));
        return socket;
    }

    internal static SocketAddress Address(string path) => new UnixDomainSocketEndPoint(path).Serialize();

    internal static byte[] Request(ulong correlationId, byte[] body)
    {
        using var writer = new FrameWriter();
        writer.BeginRequest(correlationId, 1, 0, "POST", "/upload");
        writer.WriteBody(body);
        return writer.Complete().ToArray();
    }

    /// <summary>Creates a socket file nobody reads: bound, then closed without unlinking.</summary>
    internal static void CreateStaleSocketFile(string path)
    {
        using var socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        socket.Bind(new SocketAddressEndPoint(Address(path)));
    }

    [Fact]
    public async Task SendMessageAsync_5MiBMessage_FragmentsPerSpecAndReassemblesByteExact()
    {
        using var dir = new TempSocketDirectory();
        using var receiver = BoundSocket(dir.Socket("r"));
        using var sender = BoundSocket(dir.Socket("s"));
        var body = new byte[5 * 1024 * 1024];
        new Random(5).NextBytes(body);
        var frame = Request(0x1122334455667788, body);
        var expectedFragments = (frame.Length - ProtocolConstants.HeaderSize + ProtocolConstants.MaxFragmentData - 1) / ProtocolConstants.MaxFragmentData;

        var send = DatagramSender.SendMessageAsync(sender, frame, Address(dir.Socket("r")), CancellationToken.None).AsTask();

        using var reassembler = new Reassembler();
        var buffer = new byte[ProtocolConstants.MaxDatagram + 1];
        var from = new SocketAddress(AddressFamily.Unix, SocketAddress.GetMaximumAddressSize(AddressFamily.Unix));
        var sizes = new List<int>();
        var offsets = new List<uint>();
        ReassembledMessage? message = null;
        while (message is null)
        {
            from.Size = SocketAddress.GetMaximumAddressSize(AddressFamily.Unix);
            var n = await receiver.ReceiveFromAsync(buffer, SocketFlags.None, from).AsTask().WaitAsync(HangGuard);
            var header = FrameHeader.ReadDatagram(buffer.AsSpan(0, n));
            Assert.True(header.IsFragment);
            Assert.Equal((uint)body.Length + (uint)(frame.Length - body.Length - ProtocolConstants.HeaderSize), header.PayloadLength);
            sizes.Add(n);
            offsets.Add(FrameHeader.ReadFragmentOffset(buffer.AsSpan(0, n)));
            var result = reassembler.Add(from.Buffer.Span[..from.Size], buffer.AsSpan(0, n), out message);
            Assert.NotEqual(ReassemblyResult.OutOfOrder, result);
        }

        await send.WaitAsync(HangGuard);
        using (message)
        {
            Assert.True(frame.AsSpan().SequenceEqual(message.Message.Span));
        }

        Assert.Equal(expectedFragments, sizes.Count);
        Assert.All(sizes[..^1], size => Assert.Equal(ProtocolConstants.MaxDatagram, size));
        Assert.Equal(Enumerable.Range(0, sizes.Count).Select(i => (uint)(i * ProtocolConstants.MaxFragmentData)), offsets);
    }

    [Fact]
    public async Task SendMessageAsync_MessageThatFits_IsOneIdenticalDatagram()
    {
        using var dir = new TempSocketDirectory();
        using var receiver = BoundSocket(dir.Socket("r"));
        using var sender = BoundSocket(dir.Socket("s"));
        var frame = Request(9, new byte[ProtocolConstants.MaxDatagram - 100]);
        Assert.True(frame.Length <= ProtocolConstants.MaxDatagram);

        await DatagramSender.SendMessageAsync(sender, frame, Address(dir.Socket("r")), CancellationToken.None);

        var buffer = new byte[ProtocolConstants.MaxDatagram + 1];
        var n = receiver.Receive(buffer);
        Assert.True(frame.AsSpan().SequenceEqual(buffer.AsSpan(0, n)));
    }

    [Fact]
    public async Task SendMessageAsync_NoSocketFile_BackendAbsent()
    {
        using var dir = new TempSocketDirectory();
        using var sender = BoundSocket(dir.Socket("s"));

        var ex = await Assert.ThrowsAsync<DatagramSendException>(async () =>
            await DatagramSender.SendMessageAsync(sender, Request(1, []), Address(dir.Socket("missing")), CancellationToken.None));

        Assert.Equal(DatagramFailure.BackendAbsent, ex.Failure);
        Assert.Equal(SocketError.AddressNotAvailable, ex.SocketError);
    }

    [Fact]
    public async Task SendMessageAsync_StaleSocketFile_BackendAbsent()
    {
        using var dir = new TempSocketDirectory();
        using var sender = BoundSocket(dir.Socket("s"));
        CreateStaleSocketFile(dir.Socket("stale"));
        Assert.True(File.Exists(dir.Socket("stale")));

        var ex = await Assert.ThrowsAsync<DatagramSendException>(async () =>
            await DatagramSender.SendMessageAsync(sender, Request(1, []), Address(dir.Socket("stale")), CancellationToken.None));

        Assert.Equal(DatagramFailure.BackendAbsent, ex.Failure);
        Assert.Equal(SocketError.ConnectionRefused, ex.SocketError);
    }

    [Fact]
    public async Task SendMessageAsync_WithSendTimeout_FullQueue_BackendOverloadedOnlyAfterTheTimeout()
    {
        using var dir = new TempSocketDirectory();
        using var stalled = BoundSocket(dir.Socket("r"));
        using var sender = BoundSocket(dir.Socket("s"));
        sender.Blocking = false;
        var destination = Address(dir.Socket("r"));
        var frame = Request(1, [1, 2, 3]);
        var queued = 0;
        while (DatagramSender.TrySend(sender, frame, destination))
        {
            queued++;
        }

        var time = new FakeTimeProvider();
        var send = DatagramSender.SendMessageAsync(sender, frame, destination, TimeSpan.FromSeconds(1), time, CancellationToken.None).AsTask();
        time.Advance(TimeSpan.FromMilliseconds(999));
        var pendingBeforeTimeout = !send.IsCompleted;
        time.Advance(TimeSpan.FromMilliseconds(1));
        var ex = await Assert.ThrowsAsync<DatagramSendException>(() => send.WaitAsync(HangGuard));

        Assert.InRange(queued, 1, 64);
        Assert.True(pendingBeforeTimeout);
        Assert.Equal(DatagramFailure.BackendOverloaded, ex.Failure);
    }

    [Fact]
    public async Task SendMessageAsync_WithSendTimeout_CallerCancels_OperationCanceled()
    {
        using var dir = new TempSocketDirectory();
        using var stalled = BoundSocket(dir.Socket("r"));
        using var sender = BoundSocket(dir.Socket("s"));
        sender.Blocking = false;
        var destination = Address(dir.Socket("r"));
        var frame = Request(1, [1, 2, 3]);
        while (DatagramSender.TrySend(sender, frame, destination))
        {
        }

        using var cts = new CancellationTokenSource();
        var send = DatagramSender.SendMessageAsync(sender, frame, destination, TimeSpan.FromSeconds(1), new FakeTimeProvider(), cts.Token).AsTask();
        await cts.CancelAsync();

        var ex = await Assert.ThrowsAnyAsync<OperationCanceledException>(() => send.WaitAsync(HangGuard));
        Assert.Equal(cts.Token, ex.CancellationToken);
    }

    [Fact]
    public void TrySend_BlockingSocket_Throws()
    {
        using var dir = new TempSocketDirectory();
        using var sender = BoundSocket(dir.Socket("s"));

        Assert.Throws<InvalidOperationException>(() => DatagramSender.TrySend(sender, Request(1, []), Address(dir.Socket("s"))));
    }

    [Fact]
    public async Task SendMessageAsync_NotAWholeMessage_ArgumentException()
    {
        using var dir = new TempSocketDirectory();
        using var sender = BoundSocket(dir.Socket("s"));
        var frame = Request(1, [1, 2]);
        frame[^1] = 0;
        var truncated = frame[..^1];

        await Assert.ThrowsAsync<ArgumentException>(async () =>
            await DatagramSender.SendMessageAsync(sender, truncated, Address(dir.Socket("s")), CancellationToken.None));
    }

    [Fact]
    public void Classify_MapsSocketErrorsToFailures()
    {
        Assert.Equal(DatagramFailure.BackendAbsent, DatagramSendException.Classify(SocketError.AddressNotAvailable));
        Assert.Equal(DatagramFailure.BackendAbsent, DatagramSendException.Classify(SocketError.ConnectionRefused));
        Assert.Equal(DatagramFailure.TooLarge, DatagramSendException.Classify(SocketError.MessageSize));
        Assert.Equal(DatagramFailure.Closed, DatagramSendException.Classify(SocketError.OperationAborted));
    }
}
