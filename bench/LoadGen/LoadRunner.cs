using System.Diagnostics;
using System.Net.Sockets;
using System.Text;

namespace Gateway.Bench.LoadGen;

internal sealed class RunResult
{
    public required Options Options { get; init; }
    public double WindowSeconds { get; set; }
    public long Requests { get; set; }
    public long Correct { get; set; }
    public long Non2xx { get; set; }
    public long Reconnects { get; set; }
    public long PeakInFlight { get; set; }
    public long ConnectedAtStart { get; set; }
    public required long[] Errors { get; init; }
    public required LatencyHistogram Histogram { get; init; }
    public double LoadGenCpuPercent { get; set; }
    public double WatchedCpuPercent { get; set; }
    public long WatchedRssKb { get; set; }
    public long WatchedPeakRssKb { get; set; }
    public long WatchedMaxSampledRssKb { get; set; }

    /// <summary>Per watched process name: CPU seconds and context switches over the measured window.</summary>
    public List<(string Name, double CpuSeconds, long ContextSwitches)> Processes { get; } = [];

    public long TotalErrors => Errors.Sum();
}

/// <summary>Opens the connections, runs warm-up and the measured window (or count mode), collects the result.</summary>
internal sealed class LoadRunner
{
    private static readonly double NsPerTick = 1_000_000_000.0 / Stopwatch.Frequency;

    private readonly Options _options;
    private readonly LatencyHistogram _histogram = new();
    private volatile bool _stop;
    private volatile bool _recording;
    private long _inFlight;
    private long _peakInFlight;

    public LoadRunner(Options options)
    {
        _options = options;
        EndPoint = new UnixDomainSocketEndPoint(options.Socket);
    }

    public UnixDomainSocketEndPoint EndPoint { get; }

    public bool StopRequested => _stop;

    public bool Recording => _recording;

    public void OnSent()
    {
        var now = Interlocked.Increment(ref _inFlight);
        var peak = Volatile.Read(ref _peakInFlight);
        while (now > peak)
        {
            var seen = Interlocked.CompareExchange(ref _peakInFlight, now, peak);
            if (seen == peak)
            {
                break;
            }

            peak = seen;
        }
    }

    public void OnDone() => Interlocked.Decrement(ref _inFlight);

    public void Complete(Connection connection, long elapsedTicks)
    {
        if (_recording)
        {
            connection.Completed++;
            _histogram.Record((long)(elapsedTicks * NsPerTick));
        }
    }

    public async Task<RunResult> RunAsync()
    {
        var o = _options;
        var connections = new Connection[o.Concurrency];
        byte[]? shared = null;
        byte[]? sharedExpected = null;
        for (var i = 0; i < connections.Length; i++)
        {
            if (shared is null || o.UniqueBody)
            {
                (shared, sharedExpected) = BuildRequest(o, i);
            }

            var verify = o.Verify is VerifyMode.All or VerifyMode.Upper || (o.Verify == VerifyMode.Body && o.BodySize > 0);
            // Big enough for a 64 KiB echo in one read at normal concurrency; small when holding thousands.
            var bufferSize = o.Concurrency > 1024 ? 8 * 1024 : 64 * 1024;
            connections[i] = new Connection(this, shared, sharedExpected!, verify, bufferSize);
        }

        // Open every connection before any request, with bounded parallelism (the listener's backlog is finite).
        var connected = 0;
        await Parallel.ForEachAsync(connections, new ParallelOptions { MaxDegreeOfParallelism = o.ConnectParallelism }, async (c, _) =>
        {
            if (await c.ConnectAsync())
            {
                Interlocked.Increment(ref connected);
            }
        });

        var result = new RunResult { Options = o, Errors = new long[ErrorKinds.All.Length], Histogram = _histogram, ConnectedAtStart = connected };
        if (connected == 0)
        {
            Collect(connections, result);
            return result;
        }

        var process = Process.GetCurrentProcess();
        using var samplerStop = new CancellationTokenSource();
        var sampler = SampleRssAsync(o.WatchPids, result, samplerStop.Token);
        Task[] tasks;
        long t0;
        TimeSpan cpu0;
        (double Cpu, long Switches)[] perProcess0;
        if (o.CountMode)
        {
            _recording = true;
            t0 = Stopwatch.GetTimestamp();
            cpu0 = process.TotalProcessorTime;
            perProcess0 = SnapshotProcesses(o);
            tasks = Array.ConvertAll(connections, c => c.RunAsync(o.RequestsPerConnection));
            try
            {
                await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(o.TimeoutSeconds));
            }
            catch (TimeoutException)
            {
            }
        }
        else
        {
            tasks = Array.ConvertAll(connections, c => c.RunAsync(0));
            await Task.Delay(TimeSpan.FromSeconds(o.WarmupSeconds));
            _recording = true;
            t0 = Stopwatch.GetTimestamp();
            cpu0 = process.TotalProcessorTime;
            perProcess0 = SnapshotProcesses(o);
            await Task.Delay(TimeSpan.FromSeconds(o.DurationSeconds));
        }

        _recording = false;
        var t1 = Stopwatch.GetTimestamp();
        process.Refresh();
        var cpu1 = process.TotalProcessorTime;
        var perProcess1 = SnapshotProcesses(o);
        foreach (var name in o.WatchNames.Distinct())
        {
            double cpu = 0;
            long switches = 0;
            for (var i = 0; i < o.WatchPids.Count; i++)
            {
                if (o.WatchNames[i] == name)
                {
                    cpu += perProcess1[i].Cpu - perProcess0[i].Cpu;
                    switches += perProcess1[i].Switches - perProcess0[i].Switches;
                }
            }

            result.Processes.Add((name, cpu, switches));
        }

        result.WatchedRssKb = ProcessWatch.StatusKb(o.WatchPids, "VmRSS");
        result.WatchedPeakRssKb = ProcessWatch.StatusKb(o.WatchPids, "VmHWM");
        await samplerStop.CancelAsync();
        await sampler;

        // Stop: let in-flight requests finish briefly, then abort what is left (counted as timeouts).
        _stop = true;
        try
        {
            await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(o.CountMode ? 0.1 : 5));
        }
        catch (TimeoutException)
        {
            foreach (var c in connections)
            {
                c.Abort();
            }

            await Task.WhenAll(tasks);
        }

        var window = Stopwatch.GetElapsedTime(t0, t1).TotalSeconds;
        result.WindowSeconds = window;
        result.LoadGenCpuPercent = 100 * (cpu1 - cpu0).TotalSeconds / window;
        result.WatchedCpuPercent = 100 * (perProcess1.Sum(p => p.Cpu) - perProcess0.Sum(p => p.Cpu)) / window;
        result.PeakInFlight = Interlocked.Read(ref _peakInFlight);
        Collect(connections, result);
        return result;
    }

    /// <summary>CPU seconds and context switches of each watched process (the watched total is their sum).</summary>
    private static (double Cpu, long Switches)[] SnapshotProcesses(Options o) =>
        o.WatchPids.Select(pid => (ProcessWatch.CpuSeconds([pid]), ProcessWatch.ContextSwitches(pid))).ToArray();

    /// <summary>Samples the watched processes' RSS every 100 ms and keeps the maximum (RSS while under load).</summary>
    private static async Task SampleRssAsync(List<int> pids, RunResult result, CancellationToken cancellationToken)
    {
        if (pids.Count == 0)
        {
            return;
        }

        using var timer = new PeriodicTimer(TimeSpan.FromMilliseconds(100));
        try
        {
            do
            {
                result.WatchedMaxSampledRssKb = Math.Max(result.WatchedMaxSampledRssKb, ProcessWatch.StatusKb(pids, "VmRSS"));
            }
            while (await timer.WaitForNextTickAsync(cancellationToken));
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static void Collect(Connection[] connections, RunResult result)
    {
        foreach (var c in connections)
        {
            result.Requests += c.Completed;
            result.Correct += c.Correct;
            result.Non2xx += c.Non2xx;
            result.Reconnects += c.Reconnects;
            for (var k = 0; k < c.Errors.Length; k++)
            {
                result.Errors[k] += c.Errors[k];
            }
        }

        result.Histogram.Seal();
    }

    /// <summary>Pre-encodes the request bytes and the echo the server must return.</summary>
    internal static (byte[] Request, byte[] Expected) BuildRequest(Options o, int connectionIndex)
    {
        var body = new byte[o.BodySize];
        for (var i = 0; i < body.Length; i++)
        {
            body[i] = (byte)('a' + (i % 26));
        }

        if (o.UniqueBody)
        {
            var stamp = Encoding.ASCII.GetBytes(FormattableString.Invariant($"conn={connectionIndex:D6};"));
            stamp.AsSpan(0, Math.Min(stamp.Length, body.Length)).CopyTo(body);
        }

        var head = new StringBuilder();
        head.Append(o.Method).Append(' ').Append(o.Path).Append(" HTTP/1.1\r\nHost: localhost\r\n");
        if (body.Length > 0)
        {
            head.Append("Content-Type: application/octet-stream\r\nContent-Length: ").Append(body.Length).Append("\r\n");
        }

        foreach (var h in o.Headers)
        {
            head.Append(h).Append("\r\n");
        }

        head.Append("\r\n");
        var headBytes = Encoding.ASCII.GetBytes(head.ToString());
        var request = new byte[headBytes.Length + body.Length];
        headBytes.CopyTo(request, 0);
        body.CopyTo(request, headBytes.Length);
        var expected = o.Verify == VerifyMode.Upper ? Encoding.ASCII.GetBytes(Encoding.ASCII.GetString(body).ToUpperInvariant())
            : body.Length > 0 ? body : Encoding.UTF8.GetBytes($"{o.Method} {o.Path}\n");
        return (request, expected);
    }
}
