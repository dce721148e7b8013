using System.Collections.Concurrent;
using Gateway.Ipc.Client;
using Gateway.Ipc.Diagnostics;
using Gateway.Ipc.Protocol;
using Gateway.Ipc.Tests.Client;
using Gateway.Testing;

namespace Gateway.Ipc.Tests.Diagnostics;

public class DatagramTapTests
{
    private static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    private sealed class Recorder : IDatagramObserver
    {
        public ConcurrentQueue<(DatagramDirection Direction, string Path, byte[] Data)> Seen { get; } = new();

        public void OnDatagram(DatagramDirection direction, string backendPath, ReadOnlySpan<byte> data) =>
            Seen.Enqueue((direction, backendPath, data.ToArray()));
    }

    private static byte[] Request(ulong id, int bodyBytes)
    {
        using var writer = new FrameWriter();
        writer.BeginRequest(id, 1, 0, "POST", "/tap");
        writer.WriteBody(new byte[bodyBytes]);
        return writer.Complete().ToArray();
    }

    [Fact]
    public async Task AnAttachedObserver_SeesEachMessageSentAndEachDatagramReceived_ADetachedOneNothing()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new FakeBackend(dir.Socket("b"));
        var tap = new DatagramTap();
        await using var client = new DatagramClient(new DatagramClientOptions { BackendPath = backend.Path, Tap = tap });
        var recorder = new Recorder();

        // Detached: nothing seen.
        var first = client.SendAsync(Request(client.NextCorrelationId(), 5), HangGuard);
        await backend.ReplyAsync(await backend.ReceiveAsync(), 200, "a"u8.ToArray());
        (await first).Dispose();
        Assert.Empty(recorder.Seen);

        tap.Observer = recorder;
        var id = client.NextCorrelationId();
        var frame = Request(id, 300_000); // fragmented on the wire: one message handed to the socket
        var second = client.SendAsync(frame, HangGuard);
        var request = await backend.ReceiveAsync();
        await backend.ReplyAsync(request, 201, "b"u8.ToArray());
        (await second).Dispose();
        client.SendCancel(id);
        await Eventually.UntilAsync(() => recorder.Seen.Count >= 3, HangGuard, TimeSpan.FromMilliseconds(5));
        tap.Observer = null;

        var seen = recorder.Seen.ToArray();
        Assert.Equal(3, seen.Length);
        Assert.Equal(DatagramDirection.Sent, seen[0].Direction);
        Assert.Equal(frame, seen[0].Data);
        Assert.All(seen, s => Assert.Equal(backend.Path, s.Path));
        var reply = seen.Single(s => s.Direction == DatagramDirection.Received);
        var header = FrameHeader.ReadDatagram(reply.Data);
        Assert.Equal((MessageKind.Response, id), (header.Kind, header.CorrelationId));
        var cancel = FrameHeader.ReadDatagram(seen[2].Direction == DatagramDirection.Sent ? seen[2].Data : seen[1].Data);
        Assert.Equal((MessageKind.Cancel, id), (cancel.Kind, cancel.CorrelationId));
    }
}
