using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;

namespace Gateway.Benchmarks;

/// <summary>
/// The client's pending table and completion path: <see cref="DatagramClient.SendAsync"/> of a small REQUEST to an
/// in-process socket that answers every datagram at once with a RESPONSE carrying the same correlation ID. One
/// operation = add pending entry, start its timeout, send, receive loop delivers, caller resumes, entry removed and
/// reply disposed. Allocated bytes per operation are the figure to watch; the time includes two socket calls each way.
/// </summary>
[MemoryDiagnoser]
public class PendingTableBenchmarks
{
    private readonly CancellationTokenSource _stop = new();
    private string _directory = null!;
    private Socket _backend = null!;
    private DatagramClient _client = null!;
    private FrameWriter _writer = null!;
    private Task _echoLoop = Task.CompletedTask;

    [GlobalSetup]
    public void Setup()
    {
        _directory = Directory.CreateTempSubdirectory("gw-bench-").FullName;
        var path = Path.Combine(_directory, "backend.sock");
        _backend = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        _backend.Bind(new UnixDomainSocketEndPoint(path));
        _echoLoop = Task.Run(AnswerLoopAsync);
        _client = new DatagramClient(new DatagramClientOptions { BackendPath = path });
        _writer = new FrameWriter();
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _stop.Cancel();
        _client.Dispose();
        _backend.Dispose();
        _writer.Dispose();
        Directory.Delete(_directory, recursive: true);
    }

    [Benchmark]
    public async Task<int> RoundTrip()
    {
        var id = _client.NextCorrelationId();
        _writer.BeginRequest(id, 1, 30_000, "GET", "/echo/hello");
        _writer.AddHeader("accept", "*/*");
        using var reply = await _client.SendAsync(_writer.Complete(), TimeSpan.FromSeconds(30)).ConfigureAwait(false);
        return reply.Payload.Length;
    }

    private async Task AnswerLoopAsync()
    {
        var buffer = new byte[ProtocolConstants.MaxDatagram];
        var sender = new System.Net.SocketAddress(AddressFamily.Unix, 110);
        using var writer = new FrameWriter();
        while (!_stop.IsCancellationRequested)
        {
            sender.Size = 110;
            int received;
            try
            {
                received = await _backend.ReceiveFromAsync(buffer, SocketFlags.None, sender, _stop.Token).ConfigureAwait(false);
            }
            catch (Exception ex) when (ex is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }

            var header = FrameHeader.ReadDatagram(buffer.AsSpan(0, received));
            writer.BeginResponse(header.CorrelationId, header.Attempt, 200);
            writer.AddHeader("content-type", "text/plain; charset=utf-8");
            writer.WriteBody("GET /echo/hello\n"u8);
            await _backend.SendToAsync(writer.Complete(), SocketFlags.None, sender).ConfigureAwait(false);
        }
    }
}
