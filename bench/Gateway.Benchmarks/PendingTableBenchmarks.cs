using System.Net;
using System.Net.Sockets;
using BenchmarkDotNet.Attributes;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Client;
using Gateway.Ipc.Protocol;

namespace Gateway.Benchmarks;

/// <summary>
/// The client's pending table and completion path: <see cref="DatagramClient.SendAsync"/> of a GET without body to an
/// in-process Unix datagram socket (in a per-run temp directory) that answers with a RESPONSE carrying the request's
/// correlation ID. One operation = pending entry added, reply timer started, <c>sendto</c>, the client's receive thread
/// matches the reply, the caller resumes on the thread pool, entry removed, reply disposed.
/// </summary>
/// <remarks>
/// <para>
/// <see cref="Answerer"/>: <c>Raw</c> is a dedicated thread that receives and answers with the library's
/// <see cref="FrameWriter"/> and allocates nothing per request, so the allocated bytes (MemoryDiagnoser counts every
/// thread of the process) are the client's; <c>Server</c> is the library's <see cref="DatagramBackendServer"/>
/// (<c>RunHandlersInline</c>, a handler returning a cached response), so its per-request cost is counted too.
/// </para>
/// <para>
/// Nothing can hang: every reply is awaited with a reply timeout (a lost reply fails the benchmark after
/// <see cref="ReplyTimeout"/>), the answering thread polls with a timeout and checks a stop flag, and cleanup disposes
/// the client and waits (bounded) for its receive loop, the answering thread and the server to end.
/// </para>
/// </remarks>
[MemoryDiagnoser]
public class PendingTableBenchmarks
{
    /// <summary>Requests in flight at once in <see cref="ConcurrentRoundTrips"/>.</summary>
    public const int Concurrency = 32;

    private static readonly TimeSpan ReplyTimeout = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan StopTimeout = TimeSpan.FromSeconds(10);
    private static readonly BackendResponse CachedResponse = BackendResponse.Text("GET /echo/hello\n");

    private readonly FrameWriter[] _writers = new FrameWriter[Concurrency];
    private readonly Task<DatagramReply>[] _tasks = new Task<DatagramReply>[Concurrency];
    private string? _directory;
    private RawAnswerer? _raw;
    private DatagramBackendServer? _server;
    private DatagramClient? _client;

    /// <summary>Who answers: <c>Raw</c> (allocation-free thread) or <c>Server</c> (<see cref="DatagramBackendServer"/>).</summary>
    [Params("Raw", "Server")]
    public string Answerer { get; set; } = "Raw";

    [GlobalSetup]
    public void Setup()
    {
        // A per-run directory (several benchmark processes may run at once); sun_path holds at most 107 bytes.
        _directory = Directory.CreateTempSubdirectory("gw-bench-").FullName;
        var path = Path.Combine(_directory, "backend.sock");
        if (System.Text.Encoding.UTF8.GetByteCount(path) > 107)
        {
            throw new InvalidOperationException($"The socket path '{path}' is longer than 107 bytes; set TMPDIR to a shorter directory.");
        }

        if (Answerer == "Raw")
        {
            _raw = new RawAnswerer(path);
        }
        else
        {
            _server = new DatagramBackendServer(
                new DatagramBackendOptions { SocketPath = path, RunHandlersInline = true },
                static (_, _) => ValueTask.FromResult(CachedResponse));
            _server.StartAsync().WaitAsync(StopTimeout).GetAwaiter().GetResult();
        }

        _client = new DatagramClient(new DatagramClientOptions { BackendPath = path });
        for (var i = 0; i < _writers.Length; i++)
        {
            _writers[i] = new FrameWriter();
        }

        // Fail here, with a message, rather than in the first iteration if the path does not work.
        var length = RoundTrip().WaitAsync(ReplyTimeout + ReplyTimeout).GetAwaiter().GetResult();
        if (length == 0)
        {
            throw new InvalidOperationException("The answerer replied with an empty payload.");
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        // The client first: it fails whatever is still pending and its receive loop ends (it polls every 50 ms).
        if (_client is not null)
        {
            _client.DisposeAsync().AsTask().WaitAsync(StopTimeout).GetAwaiter().GetResult();
            _client = null;
        }

        _raw?.Dispose();
        _raw = null;
        if (_server is not null)
        {
            using (var drain = new CancellationTokenSource(StopTimeout))
            {
                _server.StopAsync(drain.Token).WaitAsync(StopTimeout).GetAwaiter().GetResult();
            }

            _server.DisposeAsync().AsTask().WaitAsync(StopTimeout).GetAwaiter().GetResult();
            _server = null;
        }

        foreach (var writer in _writers)
        {
            writer?.Dispose();
        }

        if (_directory is not null && Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }

        _directory = null;
    }

    /// <summary>One request in flight: a single SendAsync round trip.</summary>
    [Benchmark]
    public async Task<int> RoundTrip()
    {
        var client = _client!;
        var w = _writers[0];
        w.BeginRequest(client.NextCorrelationId(), 1, 30_000, "GET", "/echo/hello");
        using var reply = await client.SendAsync(w.Complete(), ReplyTimeout).ConfigureAwait(false);
        return reply.Payload.Length;
    }

    /// <summary>32 requests sent at once, then their replies awaited: the pending table holds up to 32 entries.</summary>
    [Benchmark(OperationsPerInvoke = Concurrency)]
    public async Task<int> ConcurrentRoundTrips()
    {
        var client = _client!;
        for (var i = 0; i < Concurrency; i++)
        {
            var w = _writers[i];
            w.BeginRequest(client.NextCorrelationId(), 1, 30_000, "GET", "/echo/hello");
            _tasks[i] = client.SendAsync(w.Complete(), ReplyTimeout);
        }

        var total = 0;
        for (var i = 0; i < Concurrency; i++)
        {
            using var reply = await _tasks[i].ConfigureAwait(false);
            total += reply.Payload.Length;
        }

        return total;
    }

    /// <summary>
    /// A backend socket served by one dedicated thread: waits in poll() (100 ms, then checks the stop flag), receives a
    /// datagram and answers a REQUEST with a RESPONSE (200, content-type, 16-byte body) with its correlation ID and
    /// attempt, sent to the request's sender. No allocation per request.
    /// </summary>
    private sealed class RawAnswerer : IDisposable
    {
        private const int PollMicroseconds = 100_000;

        private static readonly int MaxAddressSize = SocketAddress.GetMaximumAddressSize(AddressFamily.Unix);

        private readonly Socket _socket;
        private readonly Thread _thread;
        private volatile bool _stopping;

        public RawAnswerer(string path)
        {
            _socket = new Socket(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
            try
            {
                _socket.Bind(new UnixDomainSocketEndPoint(path));

                // A blocking send waits while the client's receive queue is full, but not forever.
                _socket.SendTimeout = 5_000;
            }
            catch
            {
                _socket.Dispose();
                throw;
            }

            _thread = new Thread(Run) { IsBackground = true, Name = "bench answerer" };
            _thread.Start();
        }

        public void Dispose()
        {
            _stopping = true;
            if (!_thread.Join(StopTimeout))
            {
                throw new InvalidOperationException("The answering thread did not stop.");
            }

            _socket.Dispose();
        }

        private void Run()
        {
            var buffer = GC.AllocateUninitializedArray<byte>(ProtocolConstants.MaxDatagram + 1);
            var sender = new SocketAddress(AddressFamily.Unix, MaxAddressSize);
            using var writer = new FrameWriter();
            while (!_stopping)
            {
                try
                {
                    if (!_socket.Poll(PollMicroseconds, SelectMode.SelectRead))
                    {
                        continue;
                    }

                    sender.Size = MaxAddressSize;
                    var received = _socket.ReceiveFrom(buffer, SocketFlags.None, sender);
                    var header = FrameHeader.ReadDatagram(buffer.AsSpan(0, received));
                    if (header.Kind != MessageKind.Request || header.IsFragment)
                    {
                        continue;
                    }

                    writer.BeginResponse(header.CorrelationId, header.Attempt, 200);
                    writer.AddHeader("content-type"u8, "text/plain; charset=utf-8"u8);
                    writer.WriteBody("GET /echo/hello\n"u8);
                    _socket.SendTo(writer.Complete().Span, SocketFlags.None, sender);
                }
                catch (Exception ex) when (ex is SocketException or ProtocolException)
                {
                    // A lost reply shows as the client's reply timeout, which fails the benchmark.
                }
            }
        }
    }
}
