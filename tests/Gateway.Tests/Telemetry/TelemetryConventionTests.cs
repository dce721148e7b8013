using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Net;
using Gateway.Diagnostics;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Diagnostics;
using Gateway.Ipc.Protocol;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Telemetry.TelemetrySettings;

namespace Gateway.Tests.Telemetry;

/// <summary>What the gateway emits follows the OpenTelemetry conventions: attribute names, histogram buckets in seconds.</summary>
public class TelemetryConventionTests
{
    /// <summary>
    /// The semantic-convention attribute names (OpenTelemetry semantic conventions 1.37, stable HTTP, URL, network,
    /// server, client, error and user-agent attributes) that the gateway or the ASP.NET Core instrumentation may put on the
    /// spans and metrics checked here. Everything else must be the gateway's own, under <c>gateway.</c>.
    /// </summary>
    private static readonly HashSet<string> SemanticConventionNames =
    [
        "http.request.method", "http.request.method_original", "http.response.status_code", "http.route",
        "url.scheme", "url.path", "url.query", "url.full",
        "network.transport", "network.protocol.name", "network.protocol.version", "network.peer.address", "network.peer.port",
        "server.address", "server.port", "client.address", "client.port", "user_agent.original", "error.type",
    ];

    [Fact]
    public void SecondsHistograms_AdviseSecondScaleBucketBoundaries()
    {
        var advised = new Dictionary<string, IReadOnlyList<double>?>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, _) =>
            {
                if (instrument is Histogram<double> histogram && instrument.Unit == "s" && instrument.Meter.Name is GatewayMetrics.MeterName or IpcDiagnostics.MeterName)
                {
                    lock (advised)
                    {
                        advised[instrument.Name] = histogram.Advice?.HistogramBucketBoundaries;
                    }
                }
            },
        };
        listener.Start();
        // The gateway's meter is per host: create one the way a host does.
        using var meterFactory = new TestMeterFactory();
        _ = new GatewayMetrics(meterFactory, null!);
        RuntimeHelpers_EnsureIpcMeter();

        foreach (var name in new[] { "gateway.request.duration", "gateway.ipc.client.attempt.duration", "gateway.ipc.client.send_queue.wait" })
        {
            Assert.True(advised.TryGetValue(name, out var bounds), $"{name} was not published");
            Assert.Equal(IpcDiagnostics.DurationBucketBoundaries, bounds);
        }

        // Second-scale: from 100 µs, strictly increasing, up to twice the default 30 s budget.
        var b = IpcDiagnostics.DurationBucketBoundaries;
        Assert.Equal(0.0001, b[0]);
        Assert.Equal(60, b[^1]);
        Assert.True(b.Zip(b.Skip(1)).All(p => p.First < p.Second));
    }

    /// <summary>docs/observability.md's Metrics table lists exactly the instruments of the Gateway and Gateway.Ipc meters.</summary>
    [Fact]
    public void ObservabilityDoc_ListsEveryInstrument_AndNoOther()
    {
        var published = new HashSet<string>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, _) =>
            {
                if (instrument.Meter.Name is GatewayMetrics.MeterName or IpcDiagnostics.MeterName)
                {
                    lock (published)
                    {
                        published.Add(instrument.Name);
                    }
                }
            },
        };
        listener.Start();
        using var meterFactory = new TestMeterFactory();
        _ = new GatewayMetrics(meterFactory, null!);
        RuntimeHelpers_EnsureIpcMeter();

        var doc = File.ReadAllText(RepoPaths.Combine("docs", "observability.md"));
        var section = doc[doc.IndexOf("## Metrics", StringComparison.Ordinal)..];
        section = section[..section.IndexOf("\n## ", 5, StringComparison.Ordinal)];
        var documented = section.Split('\n')
            .Where(line => line.StartsWith("| `gateway.", StringComparison.Ordinal))
            .SelectMany(line => System.Text.RegularExpressions.Regex.Matches(line.Split('|')[1], "`(gateway\\.[a-z_.]+)`").Select(m => m.Groups[1].Value))
            .ToHashSet();

        Assert.True(published.Count >= 10, $"only {published.Count} instruments published");
        Assert.Empty(published.Except(documented));
        Assert.Empty(documented.Except(published));
    }

    [Fact]
    public async Task ExportedSpansAndMetrics_UseSemanticConventionNamesOrTheGatewayPrefix_AndTheAdvisedBuckets()
    {
        using var dir = new TempSocketDirectory();
        var spans = new SpanCapture();
        var metrics = new MetricCapture();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) => ValueTask.FromResult(
            request.Path == "/api/missing" ? BackendResponse.Error(IpcErrorCode.NotFound, "missing") : Ok()));
        await using var factory = new GatewayFactory(dir, Route(backend.SocketPath, "conventions", "cb"), services =>
        {
            spans.Register(services);
            metrics.Register(services);
        });
        using var client = factory.CreateClient();

        foreach (var (method, path) in new[] { ("GET", "/api/a?q=1"), ("POST", "/api/b"), ("GET", "/api/missing") })
        {
            using var message = new HttpRequestMessage(new HttpMethod(method), path);
            message.Headers.Add("traceparent", spans.CallerTraceParent);
            if (method == "POST")
            {
                message.Content = new StringContent("x");
            }

            using var response = await client.SendAsync(message);
            Assert.NotEqual(HttpStatusCode.InternalServerError, response.StatusCode);
        }

        var captured = await spans.WaitForAsync(s => s.Count(a => IsIpc(a, ActivityKind.Server)) == 3 && s.Count(a => a.Source.Name == "Microsoft.AspNetCore") == 3);
        var collected = metrics.Collect(factory.Services);

        var names = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var span in captured)
        {
            foreach (var tag in span.TagObjects)
            {
                names.Add(tag.Key);
            }
        }

        var ours = collected.Snapshots.Values.SelectMany(s => s).Where(s => s.MeterName is GatewayMetrics.MeterName or IpcDiagnostics.MeterName).ToList();
        Assert.Contains(ours, s => s.Name == "gateway.request.duration");
        foreach (var snapshot in ours)
        {
            foreach (var point in snapshot.MetricPoints)
            {
                foreach (var tag in point.Tags)
                {
                    names.Add(tag.Key);
                }
            }
        }

        Assert.Contains("gateway.ipc.correlation_id", names);
        Assert.Contains("http.request.method", names);
        var strangers = names.Where(n => !n.StartsWith("gateway.", StringComparison.Ordinal) && !SemanticConventionNames.Contains(n)
            && !n.StartsWith("otel.", StringComparison.Ordinal)).ToList();
        Assert.True(strangers.Count == 0, "Attribute names neither in the semantic conventions nor under gateway.: " + string.Join(", ", strangers));

        // The exported histogram has the advised boundaries (the SDK's default ones are milliseconds: 0, 5, 10, …).
        var duration = ours.First(s => s.Name == "gateway.request.duration").MetricPoints.First(p => p.GetHistogramCount() > 0);
        var bounds = new List<double>();
        foreach (var bucket in duration.GetHistogramBuckets())
        {
            if (!double.IsPositiveInfinity(bucket.ExplicitBound))
            {
                bounds.Add(bucket.ExplicitBound);
            }
        }

        Assert.Equal(IpcDiagnostics.DurationBucketBoundaries, bounds);
    }

    private static void RuntimeHelpers_EnsureIpcMeter() =>
        System.Runtime.CompilerServices.RuntimeHelpers.RunClassConstructor(typeof(IpcDiagnostics).TypeHandle);

    private sealed class TestMeterFactory : IMeterFactory
    {
        private readonly List<Meter> _meters = [];

        public Meter Create(MeterOptions options)
        {
            var meter = new Meter(options.Name, options.Version, options.Tags, scope: this);
            _meters.Add(meter);
            return meter;
        }

        public void Dispose()
        {
            foreach (var meter in _meters)
            {
                meter.Dispose();
            }
        }
    }
}
