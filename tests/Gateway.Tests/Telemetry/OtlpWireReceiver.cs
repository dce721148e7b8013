using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Net;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;

namespace Gateway.Tests.Telemetry;

/// <summary>One histogram data point as it arrived on the wire.</summary>
internal sealed record WireHistogram(string Name, string Unit, ulong Count, double Sum, IReadOnlyList<double> Bounds, IReadOnlyList<ulong> BucketCounts);

/// <summary>One metrics export request, decoded: every metric name and the histogram data points.</summary>
internal sealed record WireMetricsExport(string Protocol, IReadOnlyList<string> MetricNames, IReadOnlyList<WireHistogram> Histograms);

/// <summary>
/// An OTLP collector stand-in on loopback, on Kestrel: OTLP/HTTP protobuf (<c>POST /v1/metrics</c>, <c>/v1/traces</c>,
/// <c>/v1/logs</c>, HTTP/1.1) and OTLP/gRPC (the collector services' <c>Export</c> methods over cleartext HTTP/2 with
/// gRPC's length-prefixed framing and a <c>grpc-status</c> trailer). It decodes the protobuf it receives with a small
/// wire-format reader of its own (field numbers of opentelemetry-proto's metrics.proto and trace.proto), so a test sees
/// what an exporter really sent, as a collector would.
/// </summary>
internal sealed class OtlpWireReceiver : IAsyncDisposable
{
    private const string MetricsGrpcPath = "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export";
    private const string TraceGrpcPath = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
    private const string LogsGrpcPath = "/opentelemetry.proto.collector.logs.v1.LogsService/Export";

    private readonly WebApplication _app;
    private readonly ConcurrentQueue<WireMetricsExport> _metrics = new();
    private readonly ConcurrentQueue<string> _spanNames = new();
    private readonly ConcurrentQueue<string> _errors = new();
    private readonly SemaphoreSlim _arrived = new(0);

    private OtlpWireReceiver(WebApplication app)
    {
        _app = app;
    }

    /// <summary>The OTLP/HTTP endpoint (HTTP/1.1).</summary>
    public string HttpEndpoint { get; private set; } = "";

    /// <summary>The OTLP/gRPC endpoint (cleartext HTTP/2).</summary>
    public string GrpcEndpoint { get; private set; } = "";

    public IReadOnlyList<WireMetricsExport> MetricsExports => [.. _metrics];

    public IReadOnlyList<string> SpanNames => [.. _spanNames];

    /// <summary>Requests the receiver could not decode (wrong framing, bad protobuf): a test should assert it is empty.</summary>
    public IReadOnlyList<string> Errors => [.. _errors];

    public static async Task<OtlpWireReceiver> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Listen(IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http1);
            kestrel.Listen(IPAddress.Loopback, 0, o => o.Protocols = HttpProtocols.Http2);
        });
        var app = builder.Build();
        var receiver = new OtlpWireReceiver(app);
        app.Run(receiver.HandleAsync);
        await app.StartAsync();
        var addresses = app.Urls.ToList();
        receiver.HttpEndpoint = addresses[0];
        receiver.GrpcEndpoint = addresses[1];
        return receiver;
    }

    /// <summary>Waits (event-driven) until <paramref name="done"/> holds; a generous bound only turns a hang into a failure.</summary>
    public async Task<bool> WaitUntilAsync(Func<OtlpWireReceiver, bool> done, TimeSpan bound)
    {
        using var timeout = new CancellationTokenSource(bound);
        while (!done(this))
        {
            try
            {
                await _arrived.WaitAsync(timeout.Token);
            }
            catch (OperationCanceledException)
            {
                return done(this);
            }
        }

        return true;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
        _arrived.Dispose();
    }

    private async Task HandleAsync(HttpContext context)
    {
        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer);
        var body = buffer.ToArray();
        var path = context.Request.Path.Value;
        var grpc = context.Request.Protocol == "HTTP/2";
        try
        {
            if (grpc)
            {
                body = Unframe(body, context.Request.ContentType);
            }
            else if (context.Request.ContentType != "application/x-protobuf")
            {
                throw new InvalidDataException($"content-type {context.Request.ContentType}");
            }

            switch (path)
            {
                case "/v1/metrics" or MetricsGrpcPath:
                    _metrics.Enqueue(DecodeMetrics(body, grpc ? "grpc" : "http/protobuf"));
                    break;
                case "/v1/traces" or TraceGrpcPath:
                    foreach (var name in DecodeSpanNames(body))
                    {
                        _spanNames.Enqueue(name);
                    }

                    break;
                case "/v1/logs" or LogsGrpcPath:
                    break;
                default:
                    throw new InvalidDataException($"unexpected path {path}");
            }
        }
        catch (Exception e) when (e is InvalidDataException or ArgumentOutOfRangeException or IndexOutOfRangeException)
        {
            _errors.Enqueue($"{context.Request.Protocol} {path}: {e.Message}");
        }

        if (grpc)
        {
            context.Response.ContentType = "application/grpc";
            await context.Response.Body.WriteAsync(new byte[5]); // an empty Export*ServiceResponse, framed
            context.Response.AppendTrailer("grpc-status", "0");
        }
        else
        {
            context.Response.ContentType = "application/x-protobuf";
        }

        _arrived.Release();
    }

    private static byte[] Unframe(byte[] body, string? contentType)
    {
        if (contentType is null || !contentType.StartsWith("application/grpc", StringComparison.Ordinal))
        {
            throw new InvalidDataException($"content-type {contentType}");
        }

        if (body.Length < 5 || body[0] != 0)
        {
            throw new InvalidDataException("not an uncompressed gRPC message");
        }

        var length = BinaryPrimitives.ReadUInt32BigEndian(body.AsSpan(1));
        if (length != body.Length - 5)
        {
            throw new InvalidDataException($"gRPC frame of {length} bytes in a {body.Length}-byte body");
        }

        return body[5..];
    }

    // ExportMetricsServiceRequest.resource_metrics = 1 → ResourceMetrics.scope_metrics = 2 → ScopeMetrics.metrics = 2
    // → Metric { name = 1, unit = 3, histogram = 9 → Histogram.data_points = 1 → HistogramDataPoint { count = 4 (fixed64),
    // sum = 5 (double), bucket_counts = 6 (fixed64, packed), explicit_bounds = 7 (double, packed) } }.
    private static WireMetricsExport DecodeMetrics(byte[] body, string protocol)
    {
        var names = new List<string>();
        var histograms = new List<WireHistogram>();
        foreach (var resource in Fields(body, 1))
        {
            foreach (var scope in Fields(resource, 2))
            {
                foreach (var metric in Fields(scope, 2))
                {
                    var name = Encoding.UTF8.GetString(Fields(metric, 1).FirstOrDefault() ?? []);
                    var unit = Encoding.UTF8.GetString(Fields(metric, 3).FirstOrDefault() ?? []);
                    names.Add(name);
                    foreach (var histogram in Fields(metric, 9))
                    {
                        foreach (var point in Fields(histogram, 1))
                        {
                            var reader = new ProtoReader(point);
                            ulong count = 0;
                            double sum = 0;
                            var bounds = new List<double>();
                            var buckets = new List<ulong>();
                            while (reader.Next(out var field, out var wire))
                            {
                                switch (field, wire)
                                {
                                    case (4, 1):
                                        count = reader.Fixed64();
                                        break;
                                    case (5, 1):
                                        sum = BitConverter.UInt64BitsToDouble(reader.Fixed64());
                                        break;
                                    case (6, 1):
                                        buckets.Add(reader.Fixed64());
                                        break;
                                    case (6, 2):
                                        buckets.AddRange(Packed(reader.Bytes()));
                                        break;
                                    case (7, 1):
                                        bounds.Add(BitConverter.UInt64BitsToDouble(reader.Fixed64()));
                                        break;
                                    case (7, 2):
                                        bounds.AddRange(Packed(reader.Bytes()).Select(BitConverter.UInt64BitsToDouble));
                                        break;
                                    default:
                                        reader.Skip(wire);
                                        break;
                                }
                            }

                            histograms.Add(new WireHistogram(name, unit, count, sum, bounds, buckets));
                        }
                    }
                }
            }
        }

        return new WireMetricsExport(protocol, names, histograms);
    }

    // ExportTraceServiceRequest.resource_spans = 1 → ResourceSpans.scope_spans = 2 → ScopeSpans.spans = 2 → Span.name = 5.
    private static IEnumerable<string> DecodeSpanNames(byte[] body) =>
        from resource in Fields(body, 1)
        from scope in Fields(resource, 2)
        from span in Fields(scope, 2)
        select Encoding.UTF8.GetString(Fields(span, 5).FirstOrDefault() ?? []);

    private static IEnumerable<ulong> Packed(byte[] bytes)
    {
        if (bytes.Length % 8 != 0)
        {
            throw new InvalidDataException("a packed fixed64 field that is not a multiple of 8 bytes");
        }

        for (var i = 0; i < bytes.Length; i += 8)
        {
            yield return BinaryPrimitives.ReadUInt64LittleEndian(bytes.AsSpan(i));
        }
    }

    /// <summary>The length-delimited occurrences of field <paramref name="number"/> in a message.</summary>
    private static List<byte[]> Fields(byte[] message, int number)
    {
        var result = new List<byte[]>();
        var reader = new ProtoReader(message);
        while (reader.Next(out var field, out var wire))
        {
            if (field == number && wire == 2)
            {
                result.Add(reader.Bytes());
            }
            else
            {
                reader.Skip(wire);
            }
        }

        return result;
    }

    /// <summary>The protobuf wire format: varint keys, wire types 0 (varint), 1 (64-bit), 2 (length-delimited), 5 (32-bit).</summary>
    private sealed class ProtoReader(byte[] data)
    {
        private int _position;

        public bool Next(out int field, out int wire)
        {
            if (_position >= data.Length)
            {
                field = wire = 0;
                return false;
            }

            var key = Varint();
            field = (int)(key >> 3);
            wire = (int)(key & 7);
            if (field == 0)
            {
                throw new InvalidDataException("field number 0");
            }

            return true;
        }

        public ulong Varint()
        {
            ulong value = 0;
            for (var shift = 0; shift < 64; shift += 7)
            {
                if (_position >= data.Length)
                {
                    throw new InvalidDataException("a varint runs past the end");
                }

                var b = data[_position++];
                value |= (ulong)(b & 0x7f) << shift;
                if (b < 0x80)
                {
                    return value;
                }
            }

            throw new InvalidDataException("a varint longer than 10 bytes");
        }

        public ulong Fixed64()
        {
            Need(8);
            var value = BinaryPrimitives.ReadUInt64LittleEndian(data.AsSpan(_position));
            _position += 8;
            return value;
        }

        public byte[] Bytes()
        {
            var length = checked((int)Varint());
            Need(length);
            var value = data.AsSpan(_position, length).ToArray();
            _position += length;
            return value;
        }

        public void Skip(int wire)
        {
            switch (wire)
            {
                case 0:
                    Varint();
                    break;
                case 1:
                    Need(8);
                    _position += 8;
                    break;
                case 2:
                    Bytes();
                    break;
                case 5:
                    Need(4);
                    _position += 4;
                    break;
                default:
                    throw new InvalidDataException($"wire type {wire}");
            }
        }

        private void Need(int n)
        {
            if (n < 0 || _position + n > data.Length)
            {
                throw new InvalidDataException("a field runs past the end");
            }
        }
    }
}
