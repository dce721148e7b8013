using BenchmarkDotNet.Attributes;
using Gateway.Ipc.Protocol;

namespace Gateway.Benchmarks;

/// <summary>
/// The wire codec on the hot path: a request with 5 headers and a 1 KiB body, and its response, encoded into a
/// reused <see cref="FrameWriter"/> and decoded with the ref-struct views. Target: 0 B allocated per operation.
/// </summary>
[MemoryDiagnoser]
public class CodecBenchmarks
{
    private const string TraceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    private static readonly (string Name, string Value)[] RequestHeaders =
    [
        ("Host", "localhost"),
        ("Content-Type", "application/json"),
        ("Accept", "application/json"),
        ("User-Agent", "bench/1.0"),
        ("X-Request-Id", "3f2b9c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f"),
    ];

    private static readonly (byte[] Name, byte[] Value)[] RequestHeadersUtf8 = Array.ConvertAll(
        RequestHeaders, h => (System.Text.Encoding.ASCII.GetBytes(h.Name.ToLowerInvariant()), System.Text.Encoding.UTF8.GetBytes(h.Value)));

    private readonly byte[] _body = new byte[1024];
    private FrameWriter _writer = null!;
    private byte[] _requestDatagram = null!;
    private byte[] _responseDatagram = null!;

    [GlobalSetup]
    public void Setup()
    {
        Random.Shared.NextBytes(_body);
        _writer = new FrameWriter();
        EncodeRequest();
        _requestDatagram = _writer.WrittenMemory.ToArray();
        EncodeResponse();
        _responseDatagram = _writer.WrittenMemory.ToArray();
    }

    [GlobalCleanup]
    public void Cleanup() => _writer.Dispose();

    [Benchmark]
    public int EncodeRequest()
    {
        var w = _writer;
        w.BeginRequest(42, 1, 30_000, "POST", "/echo/orders?id=17", TraceParent);
        foreach (var (name, value) in RequestHeaders)
        {
            w.AddHeader(name, value);
        }

        w.WriteBody(_body);
        return w.Complete().Length;
    }

    [Benchmark]
    public int EncodeRequestUtf8Headers()
    {
        var w = _writer;
        w.BeginRequest(42, 1, 30_000, "POST", "/echo/orders?id=17", TraceParent);
        foreach (var (name, value) in RequestHeadersUtf8)
        {
            w.AddHeader(name, value);
        }

        w.WriteBody(_body);
        return w.Complete().Length;
    }

    [Benchmark]
    public int DecodeRequest()
    {
        var header = FrameHeader.ReadDatagram(_requestDatagram);
        var view = RequestView.Read(_requestDatagram.AsSpan(ProtocolConstants.HeaderSize));
        var total = (int)header.CorrelationId + view.Method.Length + view.Target.Length + view.TraceParent.Length;
        foreach (var field in view.Headers)
        {
            total += field.Name.Length + field.Value.Length;
        }

        return total + view.Body.Length;
    }

    [Benchmark]
    public int EncodeResponse()
    {
        var w = _writer;
        w.BeginResponse(42, 1, 200);
        w.AddHeader("content-type", "application/json");
        w.AddHeader("cache-control", "no-store");
        w.WriteBody(_body);
        return w.Complete().Length;
    }

    [Benchmark]
    public int DecodeResponse()
    {
        var header = FrameHeader.ReadDatagram(_responseDatagram);
        var view = ResponseView.Read(_responseDatagram.AsSpan(ProtocolConstants.HeaderSize));
        var total = (int)header.CorrelationId + view.Status;
        foreach (var field in view.Headers)
        {
            total += field.Name.Length + field.Value.Length;
        }

        return total + view.Body.Length;
    }
}
