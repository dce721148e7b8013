using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using Gateway.Ipc.Backend;
using Gateway.Ipc.Diagnostics;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry;
using OpenTelemetry.Exporter;
using OpenTelemetry.Logs;
using OpenTelemetry.Metrics;
using OpenTelemetry.Trace;

namespace Gateway.Tests.Telemetry;

/// <summary>
/// Captures the spans of one trace with the in-memory exporter. The ActivitySources are process-wide and tests run in
/// parallel, so only spans of <see cref="TraceId"/> reach the exporter; a test awaits the spans it expects instead of sleeping.
/// </summary>
internal sealed class SpanCapture : BaseProcessor<Activity>
{
    private readonly List<Activity> _exported = [];
    private readonly InMemoryExporter<Activity> _exporter;
    private readonly Lock _gate = new();
    private readonly List<(Func<IReadOnlyList<Activity>, bool> Condition, TaskCompletionSource Signal)> _waiters = [];

    public SpanCapture()
    {
        _exporter = new InMemoryExporter<Activity>(_exported);
    }

    public ActivityTraceId TraceId { get; } = ActivityTraceId.CreateRandom();

    public ActivitySpanId CallerSpanId { get; } = ActivitySpanId.CreateRandom();

    /// <summary>The W3C traceparent header of the (imaginary) HTTP caller.</summary>
    public string CallerTraceParent => $"00-{TraceId.ToHexString()}-{CallerSpanId.ToHexString()}-01";

    public IReadOnlyList<Activity> Spans
    {
        get
        {
            lock (_gate)
            {
                return [.. _exported];
            }
        }
    }

    /// <summary>Adds this capture to the gateway's tracer provider.</summary>
    public void Register(IServiceCollection services) => services.ConfigureOpenTelemetryTracerProvider(tracing => tracing.AddProcessor(this));

    public Task<IReadOnlyList<Activity>> WaitForAsync(Func<IReadOnlyList<Activity>, bool> condition)
    {
        var signal = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate)
        {
            if (condition(_exported))
            {
                signal.TrySetResult();
            }
            else
            {
                _waiters.Add((condition, signal));
            }
        }

        return WaitCoreAsync(signal.Task);
    }

    public override void OnEnd(Activity data)
    {
        if (data.TraceId != TraceId)
        {
            return;
        }

        lock (_gate)
        {
            _exporter.Export(new Batch<Activity>([data], 1));
            for (var i = _waiters.Count - 1; i >= 0; i--)
            {
                if (_waiters[i].Condition(_exported))
                {
                    _waiters[i].Signal.TrySetResult();
                    _waiters.RemoveAt(i);
                }
            }
        }
    }

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            _exporter.Dispose();
        }

        base.Dispose(disposing);
    }

    private async Task<IReadOnlyList<Activity>> WaitCoreAsync(Task signal)
    {
        await signal.WaitAsync(TimeSpan.FromSeconds(30));
        return Spans;
    }
}

/// <summary>A log record reduced to what the tests read (LogRecord instances are pooled and reused after export).</summary>
internal sealed record CapturedLog(int EventId, ActivityTraceId TraceId, ActivitySpanId SpanId, IReadOnlyDictionary<string, object?> Scopes);

/// <summary>Captures log records of one trace from the OpenTelemetry logger provider.</summary>
internal sealed class LogCapture(ActivityTraceId traceId) : BaseProcessor<LogRecord>
{
    private readonly ConcurrentQueue<CapturedLog> _records = new();
    private readonly ConcurrentDictionary<int, TaskCompletionSource<CapturedLog>> _waiters = new();

    public void Register(IServiceCollection services) => services.ConfigureOpenTelemetryLoggerProvider(logging => logging.AddProcessor(this));

    public Task<CapturedLog> WaitForAsync(int eventId) => Waiter(eventId).Task.WaitAsync(TimeSpan.FromSeconds(30));

    public override void OnEnd(LogRecord data)
    {
        if (data.TraceId != traceId)
        {
            return;
        }

        var scopes = new Dictionary<string, object?>();
        data.ForEachScope(
            static (scope, state) =>
            {
                foreach (var item in scope)
                {
                    state[item.Key] = item.Value;
                }
            },
            scopes);
        var record = new CapturedLog(data.EventId.Id, data.TraceId, data.SpanId, scopes);
        _records.Enqueue(record);
        Waiter(record.EventId).TrySetResult(record);
    }

    private TaskCompletionSource<CapturedLog> Waiter(int eventId) =>
        _waiters.GetOrAdd(eventId, _ => new TaskCompletionSource<CapturedLog>(TaskCreationOptions.RunContinuationsAsynchronously));
}

/// <summary>Metric snapshots from the in-memory exporter, exported only on <c>MeterProvider.ForceFlush</c>.</summary>
internal sealed class MetricCapture
{
    private readonly List<MetricSnapshot> _snapshots = [];

    public void Register(IServiceCollection services) => services.ConfigureOpenTelemetryMeterProvider(metrics =>
        metrics.AddInMemoryExporter(_snapshots, reader => reader.PeriodicExportingMetricReaderOptions.ExportIntervalMilliseconds = int.MaxValue));

    /// <summary>
    /// Collects now and returns what that collection exported. The SDK listens to every meter of a name in the process,
    /// so one flush may export a metric once per gateway running in parallel tests (each has its own meter): all of
    /// them are kept, and tests tell theirs apart by tags (unique route/backend names and socket paths).
    /// </summary>
    public CollectedMetrics Collect(IServiceProvider services)
    {
        int start;
        lock (_snapshots)
        {
            start = _snapshots.Count;
        }

        Assert.True(services.GetRequiredService<MeterProvider>().ForceFlush(30_000));
        var byName = new Dictionary<string, List<MetricSnapshot>>();
        lock (_snapshots)
        {
            foreach (var snapshot in _snapshots.Skip(start))
            {
                if (!byName.TryGetValue(snapshot.Name, out var list))
                {
                    byName[snapshot.Name] = list = [];
                }

                list.Add(snapshot);
            }
        }

        return new CollectedMetrics(byName);
    }

    /// <summary>The points of a metric whose tags include every given pair.</summary>
    public static List<MetricPoint> Points(CollectedMetrics metrics, string name, params (string Key, object Value)[] tags)
    {
        Assert.True(metrics.Snapshots.TryGetValue(name, out var snapshots), $"Metric {name} was not exported.");
        var points = new List<MetricPoint>();
        foreach (var point in snapshots.SelectMany(m => m.MetricPoints))
        {
            var pointTags = new Dictionary<string, object?>();
            foreach (var tag in point.Tags)
            {
                pointTags[tag.Key] = tag.Value;
            }

            if (tags.All(t => pointTags.TryGetValue(t.Key, out var value) && Equals(value?.ToString(), t.Value.ToString())))
            {
                points.Add(point);
            }
        }

        return points;
    }

    /// <summary>The points of a metric with the given tags; none when the metric was not exported at all (never recorded).</summary>
    public static List<MetricPoint> PointsOrNone(CollectedMetrics metrics, string name, params (string Key, object Value)[] tags) =>
        metrics.Snapshots.ContainsKey(name) ? Points(metrics, name, tags) : [];

    public static long HistogramCountOrZero(CollectedMetrics metrics, string name, params (string Key, object Value)[] tags) =>
        PointsOrNone(metrics, name, tags).Sum(p => p.GetHistogramCount());

    public static long SumOrZero(CollectedMetrics metrics, string name, params (string Key, object Value)[] tags) =>
        PointsOrNone(metrics, name, tags).Sum(p => p.GetSumLong());

    public static double HistogramSum(CollectedMetrics metrics, string name, params (string Key, object Value)[] tags) =>
        Points(metrics, name, tags).Sum(p => p.GetHistogramSum());

    public static long HistogramCount(CollectedMetrics metrics, string name, params (string Key, object Value)[] tags) =>
        Points(metrics, name, tags).Sum(p => p.GetHistogramCount());

    public static long Sum(CollectedMetrics metrics, string name, params (string Key, object Value)[] tags) =>
        Points(metrics, name, tags).Sum(p => p.GetSumLong());

    public static long Gauge(CollectedMetrics metrics, string name, params (string Key, object Value)[] tags) =>
        Assert.Single(Points(metrics, name, tags)).GetGaugeLastValueLong();
}

/// <summary>The metrics one collection exported, by name (see <see cref="MetricCapture.Collect"/>).</summary>
internal sealed record CollectedMetrics(IReadOnlyDictionary<string, List<MetricSnapshot>> Snapshots);

internal static class TelemetrySettings
{
    /// <summary>One route named <paramref name="route"/> to one backend named <paramref name="backend"/> (unique names keep parallel tests' metrics apart), telemetry on.</summary>
    public static Dictionary<string, string?> Route(string backendSocket, string route, string backend, string path = "/api/{**rest}") => new()
    {
        [$"Gateway:Backends:{backend}:Instances:0"] = backendSocket,
        [$"Gateway:Routes:{route}:Path"] = path,
        [$"Gateway:Routes:{route}:Backend"] = backend,
        ["Gateway:Telemetry:Enabled"] = "true",
    };

    public static string Tag(Activity activity, string name) => Assert.IsType<string>(activity.GetTagItem(name));

    public static BackendResponse Ok() => BackendResponse.Text("ok");

    public static bool IsIpc(Activity a, ActivityKind kind) => a.Source.Name == IpcDiagnostics.ActivitySourceName && a.Kind == kind;
}

/// <summary>
/// Reads an observable instrument of ONE host: a <see cref="MeterListener"/> that enables only instruments of meters its
/// <see cref="IMeterFactory"/> created (<see cref="Meter.Scope"/>). The OpenTelemetry SDK listens by meter name across
/// the process, so with gateways of parallel tests alive an exported stream may mix or drop their instruments.
/// </summary>
internal static class ScopedMetrics
{
    public static List<(long Value, Dictionary<string, object?> Tags)> Observe(IServiceProvider services, string meterName, string instrumentName)
    {
        var factory = services.GetRequiredService<IMeterFactory>();
        var measurements = new List<(long, Dictionary<string, object?>)>();
        using var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Name == meterName && instrument.Name == instrumentName && ReferenceEquals(instrument.Meter.Scope, factory))
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            var copy = new Dictionary<string, object?>();
            foreach (var tag in tags)
            {
                copy[tag.Key] = tag.Value;
            }

            lock (measurements)
            {
                measurements.Add((value, copy));
            }
        });
        listener.SetMeasurementEventCallback<int>((_, value, tags, _) =>
        {
            var copy = new Dictionary<string, object?>();
            foreach (var tag in tags)
            {
                copy[tag.Key] = tag.Value;
            }

            lock (measurements)
            {
                measurements.Add((value, copy));
            }
        });
        listener.Start();
        listener.RecordObservableInstruments();
        return measurements;
    }

    /// <summary>The single value of <paramref name="instrumentName"/> whose tags include every given pair.</summary>
    public static long Gauge(IServiceProvider services, string meterName, string instrumentName, params (string Key, object Value)[] tags) =>
        Assert.Single(
            Observe(services, meterName, instrumentName),
            m => tags.All(t => m.Tags.TryGetValue(t.Key, out var v) && Equals(v?.ToString(), t.Value.ToString()))).Value;
}
