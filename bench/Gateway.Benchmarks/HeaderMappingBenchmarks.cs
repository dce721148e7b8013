using BenchmarkDotNet.Attributes;
using Gateway.Forwarding;
using Gateway.Ipc.Protocol;
using Microsoft.AspNetCore.Http;

namespace Gateway.Benchmarks;

/// <summary>
/// Header mapping as the gateway does it per request: HTTP request headers filtered by <see cref="HeaderRules"/>
/// and written into a REQUEST; a RESPONSE's header fields filtered and turned into HTTP response headers
/// (names and common values without allocating, <see cref="ResponseHeaderNames"/>).
/// </summary>
[MemoryDiagnoser]
public class HeaderMappingBenchmarks
{
    private readonly HeaderDictionary _requestHeaders = new()
    {
        ["Host"] = "localhost",
        ["User-Agent"] = "bench/1.0",
        ["Accept"] = "application/json",
        ["Content-Type"] = "application/json",
        ["Content-Length"] = "1024",
        ["Connection"] = "keep-alive",
        ["X-Request-Id"] = "3f2b9c1e-5d4a-4c7b-9e8f-1a2b3c4d5e6f",
    };

    private readonly HeaderDictionary _responseHeaders = new();
    private FrameWriter _writer = null!;
    private byte[] _responsePayload = null!;

    [GlobalSetup]
    public void Setup()
    {
        _writer = new FrameWriter();
        _writer.BeginResponse(7, 1, 200);
        _writer.AddHeader("content-type", "application/json; charset=utf-8");
        _writer.AddHeader("cache-control", "no-cache");
        _writer.AddHeader("etag", "\"abc\"");
        _writer.AddHeader("connection", "close");
        _writer.AddHeader("x-backend-node", "node-1");
        _writer.WriteBody("{}"u8);
        _responsePayload = _writer.Complete()[ProtocolConstants.HeaderSize..].ToArray();
    }

    [GlobalCleanup]
    public void Cleanup() => _writer.Dispose();

    /// <summary>Request side: filter + encode the headers of a typical request.</summary>
    [Benchmark]
    public int MapRequestHeaders()
    {
        var w = _writer;
        w.BeginRequest(42, 1, 30_000, "POST", "/echo/orders");
        foreach (var header in _requestHeaders)
        {
            if (!HeaderRules.ForwardRequestHeader(header.Key))
            {
                continue;
            }

            foreach (var value in header.Value)
            {
                w.AddHeader(header.Key, value);
            }
        }

        return w.Complete().Length;
    }

    /// <summary>Response side: decode fields, filter, convert to strings, append to HTTP headers.</summary>
    [Benchmark]
    public int MapResponseHeaders()
    {
        _responseHeaders.Clear();
        var view = ResponseView.Read(_responsePayload);
        foreach (var field in view.Headers)
        {
            if (HeaderRules.CopyResponseHeader(field.Name))
            {
                _responseHeaders.Append(ResponseHeaderNames.GetName(field.Name), ResponseHeaderNames.GetValue(field.Value));
            }
        }

        return _responseHeaders.Count;
    }
}
