using System.Globalization;
using System.Text.Json;
using Gateway.Bench.LoadGen;

// Lean event loop: socket completions run inline on the epoll thread(s) instead of hopping to the thread pool,
// and a single epoll thread by default. The runtime reads these once, before the first socket is created.
if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS") is null)
{
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS", "1");
}

if (Environment.GetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT") is null)
{
    Environment.SetEnvironmentVariable("DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT", "1");
}

try
{
    if (args.Length > 0 && args[0] == "report")
    {
        return Report.Run(args[1..]);
    }

    if (args.Length == 0 || args[0] is "-h" or "--help")
    {
        Console.WriteLine(Options.Usage);
        return args.Length == 0 ? 2 : 0;
    }

    var options = Options.Parse(args);
    var result = await new LoadRunner(options).RunAsync();
    Console.WriteLine(options.Json ? ToJson(result) : ToText(result));
    return result.ConnectedAtStart == 0 ? 1 : 0;
}
catch (ArgumentException e)
{
    Console.Error.WriteLine(e.Message);
    Console.Error.WriteLine(Options.Usage);
    return 2;
}

static double Us(long ns) => Math.Round(ns / 1000.0, 1);

static string ToJson(RunResult r)
{
    var o = r.Options;
    var h = r.Histogram;
    using var stream = new MemoryStream();
    using (var w = new Utf8JsonWriter(stream))
    {
        w.WriteStartObject();
        w.WriteString("label", o.Label);
        w.WriteString("scenario", o.Scenario);
        w.WriteNumber("round", o.Round);
        w.WriteString("method", o.Method);
        w.WriteString("path", o.Path);
        w.WriteNumber("body_size", o.BodySize);
        w.WriteNumber("concurrency", o.Concurrency);
        w.WriteString("mode", o.CountMode ? "count" : "duration");
        w.WriteNumber("connected", r.ConnectedAtStart);
        w.WriteNumber("window_s", Math.Round(r.WindowSeconds, 3));
        w.WriteNumber("requests", r.Requests);
        w.WriteNumber("correct", r.Correct);
        w.WriteNumber("rps", Math.Round(r.WindowSeconds > 0 ? r.Requests / r.WindowSeconds : 0, 1));
        w.WriteNumber("p50_us", Us(h.ValueAtPercentile(50)));
        w.WriteNumber("p90_us", Us(h.ValueAtPercentile(90)));
        w.WriteNumber("p99_us", Us(h.ValueAtPercentile(99)));
        w.WriteNumber("p999_us", Us(h.ValueAtPercentile(99.9)));
        w.WriteNumber("max_us", Us(h.Max()));
        w.WriteNumber("mean_us", Math.Round(h.MeanNs / 1000.0, 1));
        w.WriteNumber("non_2xx", r.Non2xx);
        w.WriteNumber("errors", r.TotalErrors);
        w.WriteStartObject("errors_by_kind");
        foreach (var kind in ErrorKinds.All)
        {
            w.WriteNumber(ErrorKinds.Name(kind), r.Errors[(int)kind]);
        }

        w.WriteEndObject();
        w.WriteNumber("reconnects", r.Reconnects);
        w.WriteNumber("peak_in_flight", r.PeakInFlight);
        w.WriteNumber("loadgen_cpu_pct", Math.Round(r.LoadGenCpuPercent, 1));
        if (o.WatchPids.Count > 0)
        {
            w.WriteNumber("sut_cpu_pct", Math.Round(r.WatchedCpuPercent, 1));
            w.WriteNumber("sut_rss_kb", r.WatchedRssKb);
            w.WriteNumber("sut_peak_rss_kb", r.WatchedPeakRssKb);
            w.WriteNumber("sut_max_sampled_rss_kb", r.WatchedMaxSampledRssKb);
            w.WriteStartArray("processes");
            foreach (var (name, cpu, switches) in r.Processes)
            {
                w.WriteStartObject();
                w.WriteString("name", name);
                w.WriteNumber("cpu_us_per_req", r.Requests > 0 ? Math.Round(cpu * 1e6 / r.Requests, 1) : 0);
                w.WriteNumber("cs_per_req", r.Requests > 0 ? Math.Round((double)switches / r.Requests, 2) : 0);
                w.WriteEndObject();
            }

            w.WriteEndArray();
        }

        w.WriteEndObject();
    }

    return System.Text.Encoding.UTF8.GetString(stream.ToArray());
}

static string ToText(RunResult r)
{
    var h = r.Histogram;
    var errors = string.Join(", ", ErrorKinds.All.Where(k => r.Errors[(int)k] > 0).Select(k => $"{ErrorKinds.Name(k)}={r.Errors[(int)k]}"));
    return string.Create(CultureInfo.InvariantCulture, $"""
        {r.Options.Method} {r.Options.Path} body={r.Options.BodySize} B, {r.Options.Concurrency} connections, {r.WindowSeconds:F2} s measured
          requests {r.Requests} ({r.Requests / Math.Max(r.WindowSeconds, 1e-9):F0}/s), correct {r.Correct}, non-2xx {r.Non2xx}, errors {r.TotalErrors} {errors}
          latency µs: p50 {Us(h.ValueAtPercentile(50))}  p90 {Us(h.ValueAtPercentile(90))}  p99 {Us(h.ValueAtPercentile(99))}  p99.9 {Us(h.ValueAtPercentile(99.9))}  max {Us(h.Max())}
          peak in flight {r.PeakInFlight}, reconnects {r.Reconnects}, load generator CPU {r.LoadGenCpuPercent:F0}% of one core{(r.Options.WatchPids.Count > 0 ? $", watched CPU {r.WatchedCpuPercent:F0}%, RSS {r.WatchedRssKb / 1024} MiB (peak {r.WatchedPeakRssKb / 1024} MiB)" : "")}
        """);
}
