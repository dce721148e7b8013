using Gateway.Ipc.Backend;
using Gateway.Ipc.Protocol;
using Gateway.Testing;

namespace Gateway.Ipc.Tests.Backend;

/// <summary>The backend's per-client reply queues: a client that stops reading delays only its own replies.</summary>
public sealed class ReplyQueueTests : IAsyncLifetime
{
    private readonly TempSocketDirectory _dir = new();
    private DatagramBackendServer? _server;

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_server is not null)
        {
            await _server.DisposeAsync();
        }

        _dir.Dispose();
    }

    [Fact]
    public async Task ClientThatStoppedReading_DoesNotBlockRepliesToAnotherClient_AndGetsAllItsRepliesOnceItReads()
    {
        const int Count = 40;
        var returned = 0;
        var allReturned = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        _server = new DatagramBackendServer(
            new DatagramBackendOptions
            {
                SocketPath = _dir.Socket("b.sock"),

                // Far longer than the test: a stalled client's replies must not be dropped by the timeout, nor may the
                // other client's reply get through only because they were.
                ReplySendTimeout = TimeSpan.FromMinutes(10),
            },
            (request, _) =>
            {
                var response = BackendResponse.Text(request.CorrelationId.ToString(System.Globalization.CultureInfo.InvariantCulture));
                if (request.CorrelationId <= Count && Interlocked.Increment(ref returned) == Count)
                {
                    allReturned.SetResult();
                }

                return ValueTask.FromResult(response);
            });
        await _server.StartAsync();
        using var silent = new TestClient(_server.SocketPath);
        using var other = new TestClient(_server.SocketPath);

        for (ulong id = 1; id <= Count; id++)
        {
            silent.SendRequest(id);
        }

        await allReturned.Task.WaitAsync(TestClient.ReceiveTimeout);

        // The silent client's queue (~11 datagrams) is full: most of its replies wait in its reply queue.
        for (ulong id = 1000; id < 1010; id++)
        {
            other.SendRequest(id);
            var reply = await other.ReceiveAsync();
            Assert.Equal(id, reply.Header.CorrelationId);
            Assert.Equal(id.ToString(System.Globalization.CultureInfo.InvariantCulture), reply.BodyText);
        }

        // None of the silent client's replies was dropped while it read nothing. (InFlight is no evidence either
        // way: a handler's concurrency slot is released before its reply is sent.)
        Assert.Equal(0, _server.Statistics.ReplyFailures);

        // Now it reads: every reply arrives, once.
        var ids = new HashSet<ulong>();
        for (var i = 0; i < Count; i++)
        {
            var reply = await silent.ReceiveAsync();
            Assert.Equal(MessageKind.Response, reply.Header.Kind);
            Assert.True(ids.Add(reply.Header.CorrelationId));
        }

        Assert.Equal(Count, ids.Count);
        Assert.Equal(0, _server.Statistics.ReplyFailures);
    }
}
