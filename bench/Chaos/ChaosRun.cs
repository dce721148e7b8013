using System.Diagnostics;
using System.Globalization;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Gateway.Ipc.Transport;

namespace Gateway.Bench.Chaos;

/// <summary>
/// The soak: starts the gateway and the backends, warms up, measures the RSS baseline, runs load and chaos for the
/// duration, settles, then checks everything by category (never by timing) and reports the figures.
/// </summary>
internal sealed class ChaosRun(ChaosOptions options)
{
    private const int SigKill = 9;
    private const int InstanceCount = 3;

    /// <summary>The gateway's budget per request, and the client's deadline beyond it (a request past it hangs).</summary>
    private static readonly TimeSpan Budget = TimeSpan.FromSeconds(3);
    private static readonly TimeSpan ClientDeadline = Budget + TimeSpan.FromSeconds(27);

    private readonly StringBuilder _report = new();
    private readonly List<string> _failures = [];
    private readonly Backend[] _backends = new Backend[InstanceCount];
    private string _dir = "";
    private ChildProcess? _gateway;
    private long _peakRssKb;

    public async Task<int> RunAsync()
    {
        _dir = Directory.CreateTempSubdirectory("gw-chaos-").FullName;
        File.SetUnixFileMode(_dir, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        Say($"seed {options.Seed}; chaos {options.DurationSeconds:0} s after {options.WarmupSeconds:0} s warm-up; {options.Concurrency} clients; dir {_dir}");
        FaultProxy? proxy = null;
        try
        {
            for (var i = 0; i < InstanceCount; i++)
            {
                _backends[i] = new Backend(i + 1, Path.Combine(_dir, $"kv-{i + 1}.sock"), Path.Combine(_dir, $"kv-{i + 1}.journal"), Path.Combine(_dir, $"kv-{i + 1}.log"));
                Start(_backends[i]);
            }

            // Instance 3 is reached through the fault proxy: its replies are dropped, duplicated and delayed.
            proxy = new FaultProxy(Path.Combine(_dir, "proxy-3.sock"), Path.Combine(_dir, "proxy-3-up.sock"), _backends[2].SocketPath, options.Seed, drop: 0.05, duplicate: 0.05, delay: 0.10);
            var socket = Path.Combine(_dir, "gw.sock");
            _gateway = StartGateway(socket, [_backends[0].SocketPath, _backends[1].SocketPath, proxy.SocketPath]);
            var gatewayPid = _gateway.Id;
            await WaitAsync("backends bound", () => _backends.All(b => UnixSocketFile.Probe(b.SocketPath, SocketType.Dgram) == SocketFileState.Live));
            using var http = Load.CreateClient(socket);
            await WaitAsync("gateway ready", async () => await StatusAsync(http, "/readyz") == 200);

            using var sampler = new CancellationTokenSource();
            var sampling = SampleRssAsync(gatewayPid, sampler.Token);

            // Warm-up (no chaos): JIT, pools, connections; then the RSS baseline.
            var warm = new Load(socket, options.Seed, ClientDeadline);
            using (var stopWarm = new CancellationTokenSource(TimeSpan.FromSeconds(options.WarmupSeconds)))
            {
                await warm.RunAsync(options.Concurrency, "warm", stopWarm.Token);
            }

            var pendingAfterWarm = await SettleAsync(http, spoofed: 0);
            var baselineKb = ProcStatus.Kb(gatewayPid, "VmRSS");
            Say($"warm-up (no chaos): {warm.Requests} requests; then pending {pendingAfterWarm.Pending}, in flight {pendingAfterWarm.InFlight}; baseline RSS {ProcStatus.MiB(baselineKb)}");

            // Chaos.
            var load = new Load(socket, options.Seed, ClientDeadline);
            var random = new Random(options.Seed);
            await using var injector = new Injector(ReplySockets, [.. _backends.Select(b => b.SocketPath), proxy.SocketPath], options.Seed, perSecond: 100);
            using var stopLoad = new CancellationTokenSource();
            var loadTask = load.RunAsync(options.Concurrency, "chaos", stopLoad.Token);
            var chaosClock = Stopwatch.StartNew();
            var restarts = new List<Task>();
            var killsUnderwayMax = 0;
            while (chaosClock.Elapsed.TotalSeconds < options.DurationSeconds)
            {
                await Task.Delay(TimeSpan.FromMilliseconds(random.Next(1000, 2500)));
                if (_gateway.HasExited)
                {
                    break;
                }

                // SIGKILL a running instance (at least one stays up), restart it after 0.2–1.5 s.
                var up = _backends.Where(b => b.Process is { HasExited: false }).ToList();
                killsUnderwayMax = Math.Max(killsUnderwayMax, InstanceCount - up.Count);
                if (up.Count < 2)
                {
                    continue;
                }

                var victim = up[random.Next(up.Count)];
                var restartAfter = TimeSpan.FromMilliseconds(random.Next(200, 1500));
                await KillAsync(victim);
                restarts.Add(Task.Delay(restartAfter).ContinueWith(_ => Start(victim), TaskScheduler.Default));
                restarts.RemoveAll(t => t.IsCompleted);
            }

            await Task.WhenAll(restarts);
            await stopLoad.CancelAsync();
            await loadTask;
            var chaosSeconds = chaosClock.Elapsed.TotalSeconds;
            await injector.DisposeAsync();

            // Settle: every instance up again, ready, nothing pending or in flight.
            foreach (var b in _backends.Where(b => b.Process is not { HasExited: false }))
            {
                Start(b);
            }

            await WaitAsync("backends bound after chaos", () => _backends.All(b => UnixSocketFile.Probe(b.SocketPath, SocketType.Dgram) == SocketFileState.Live));
            var ready = await TryWaitAsync(async () => await StatusAsync(http, "/readyz") == 200, TimeSpan.FromSeconds(60));
            var admin = await SettleAsync(http, injector.ToGateway);
            var endKb = await EndRssAsync(gatewayPid);
            await sampler.CancelAsync();
            await sampling;
            var hwmKb = ProcStatus.Kb(gatewayPid, "VmHWM");
            var healthz = await StatusAsync(http, "/healthz");

            Report(load, injector, proxy, admin, chaosSeconds, baselineKb, endKb, hwmKb, gatewayPid, healthz, ready);
        }
        catch (Exception ex)
        {
            _failures.Add("the soak could not run: " + ex);
        }
        finally
        {
            if (proxy is not null)
            {
                await proxy.DisposeAsync();
            }

            _gateway?.Dispose();
            foreach (var b in _backends.Where(b => b is not null))
            {
                b.Process?.Dispose();
            }
        }

        Say("");
        if (_failures.Count == 0)
        {
            Say("RESULT: PASS (every check held)");
        }
        else
        {
            Say($"RESULT: FAIL ({_failures.Count})");
            foreach (var failure in _failures)
            {
                Say("  - " + failure);
            }

            Say("gateway log (last 40 lines):");
            foreach (var line in Tail(Path.Combine(_dir, "gateway.log"), 40))
            {
                Say("    " + line);
            }
        }

        if (options.Out is { } outPath)
        {
            Directory.CreateDirectory(Path.GetDirectoryName(Path.GetFullPath(outPath))!);
            var header = string.Create(
                CultureInfo.InvariantCulture,
                $"# Chaos soak, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC\n\n`bench/chaos.sh {string.Join(' ', Environment.GetCommandLineArgs().Skip(1))}` on {Environment.ProcessorCount} cores (shared), .NET {Environment.Version}. What each line proves: docs/resilience.md, \"Chaos soak\".\n\n");
            await File.WriteAllTextAsync(outPath, header + "```\n" + _report + "```\n");
        }

        if (!options.Keep && _failures.Count == 0)
        {
            Directory.Delete(_dir, recursive: true);
        }
        else
        {
            Console.WriteLine($"(logs and journals kept in {_dir})");
        }

        return _failures.Count == 0 ? 0 : 1;
    }

    private void Report(Load load, Injector injector, FaultProxy proxy, AdminSnapshot admin, double chaosSeconds, long baselineKb, long endKb, long hwmKb, int gatewayPid, int healthz, bool ready)
    {
        Say("");
        Say($"chaos: {chaosSeconds:0.0} s; {_backends.Sum(b => b.Kills)} SIGKILLs ({string.Join(", ", _backends.Select(b => $"kv-{b.Number}: {b.Kills}"))}), {_backends.Sum(b => b.Starts) - InstanceCount} restarts");
        Say($"fault proxy (kv-3): {proxy.Replies} replies, {proxy.Dropped} dropped, {proxy.Duplicated} duplicated, {proxy.Delayed} delayed 100-900 ms");
        Say($"injected: {injector.ToGateway} datagrams into the gateway's reply sockets, {injector.ToBackends} into backend sockets");
        Say("");
        Say($"requests: {load.Requests} ({load.Requests / chaosSeconds:0} /s; gateway budget {Budget.TotalSeconds:0} s, client deadline {ClientDeadline.TotalSeconds:0} s)");
        foreach (var (category, count) in load.Outcomes.OrderByDescending(o => o.Value))
        {
            Say($"  {count,8}  {category}");
        }

        // 1. Every request got a reply or a definite error; none hung past its deadline.
        string[] allowed =
        [
            "2xx", Load.Aborted,
            "503 urn:gateway:problem:backend-absent", "503 urn:gateway:problem:backend-overloaded",
            "503 urn:gateway:problem:circuit-open", "503 urn:gateway:problem:backend-busy",
            "504 urn:gateway:problem:timeout", "504 urn:gateway:problem:backend-deadline-exceeded",
        ];
        foreach (var (category, count) in load.Outcomes.Where(o => !allowed.Contains(o.Key)))
        {
            _failures.Add($"{count} request(s) ended as '{category}' (allowed: a reply, a definite 503/504 problem, or a client abort)");
        }

        if (!load.Outcomes.ContainsKey("2xx"))
        {
            _failures.Add("no request succeeded");
        }

        // 2. No POST executed twice; every POST that got a 2xx executed exactly once (journals survive SIGKILL).
        var executions = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var b in _backends)
        {
            foreach (var line in File.Exists(b.JournalPath) ? File.ReadLines(b.JournalPath) : [])
            {
                var id = line.Split('\t')[0];
                executions[id] = executions.GetValueOrDefault(id) + 1;
            }
        }

        var posts = load.Posts.ToList();
        var issued = posts.Select(p => p.Id).ToHashSet(StringComparer.Ordinal);
        var chaosExecutions = executions.Where(e => e.Key.StartsWith("chaos-", StringComparison.Ordinal)).ToList();
        var twice = chaosExecutions.Where(e => e.Value > 1).ToList();
        var okNotOnce = posts.Where(p => p.Succeeded && executions.GetValueOrDefault(p.Id) != 1).ToList();
        var unknown = chaosExecutions.Where(e => !issued.Contains(e.Key)).ToList();
        Say("");
        Say($"POST /ops: {posts.Count} sent ({posts.Count(p => p.WithKey)} with Idempotency-Key), {posts.Count(p => p.Succeeded)} got 2xx; " +
            $"{chaosExecutions.Count} ids executed, {twice.Count} more than once; {okNotOnce.Count} 2xx not executed exactly once; " +
            $"{posts.Count(p => !p.Succeeded && executions.ContainsKey(p.Id))} failed/aborted but executed (allowed: at most once)");
        Say($"  {posts.Count(p => p.Status == 200)} POSTs were answered 200 'already executed' from a journal: a retry (same Idempotency-Key) reached a restarted instance, whose in-memory replay cache was gone");
        if (twice.Count > 0)
        {
            _failures.Add($"{twice.Count} POST(s) executed more than once, e.g. {string.Join(", ", twice.Take(5).Select(e => $"{e.Key} x{e.Value} ({Describe(posts, e.Key)})"))}");
        }

        if (okNotOnce.Count > 0)
        {
            _failures.Add($"{okNotOnce.Count} POST(s) answered 2xx without exactly one execution, e.g. {string.Join(", ", okNotOnce.Take(5).Select(p => p.Id))}");
        }

        if (unknown.Count > 0)
        {
            _failures.Add($"{unknown.Count} executed id(s) that no client sent");
        }

        // 3. Pending tables empty, nothing in flight; the injected datagrams were all dropped and counted.
        Say("");
        Say($"after settling: pending {admin.Pending}, in flight {admin.InFlight}; reply sockets dropped {admin.Spoofed} spoofed and {admin.Malformed} malformed datagrams, {admin.Late} late/duplicate replies");
        if (admin.Pending != 0 || admin.InFlight != 0)
        {
            _failures.Add($"pending tables not empty after settling: pending {admin.Pending}, in flight {admin.InFlight}");
        }

        if (admin.Spoofed != injector.ToGateway)
        {
            _failures.Add($"the gateway counted {admin.Spoofed} spoofed datagrams, {injector.ToGateway} were injected into its reply sockets");
        }

        // 4. Memory back near its baseline.
        var peakKb = Math.Max(_peakRssKb, hwmKb);
        var limitKb = baselineKb + (options.RssMarginMiB * 1024);
        Say($"gateway RSS: baseline {ProcStatus.MiB(baselineKb)}, peak {ProcStatus.MiB(peakKb)}, end {ProcStatus.MiB(endKb)} (limit baseline + {options.RssMarginMiB} MiB = {ProcStatus.MiB(limitKb)})");
        if (endKb > limitKb)
        {
            _failures.Add($"gateway RSS did not come back near its baseline: end {ProcStatus.MiB(endKb)} > {ProcStatus.MiB(limitKb)}");
        }

        // 5. The gateway never restarted.
        var alive = _gateway is { HasExited: false } && _gateway.Id == gatewayPid;
        Say($"gateway: pid {gatewayPid} {(alive ? "still running" : "EXITED")}, /healthz {healthz}, /readyz {(ready ? 200 : 503)}");
        if (!alive)
        {
            _failures.Add($"the gateway process {gatewayPid} exited");
        }

        if (healthz != 200 || !ready)
        {
            _failures.Add($"the gateway is not healthy and ready after the soak (/healthz {healthz}, /readyz {(ready ? 200 : 503)})");
        }
    }

    private static string Describe(List<PostRecord> posts, string id) =>
        posts.FirstOrDefault(p => p.Id == id) is { } p ? $"{(p.WithKey ? "with key" : "no key")}, client saw {p.Outcome}" : "not sent";

    private void Start(Backend backend)
    {
        ChildProcess? old;
        lock (backend)
        {
            // Replace first, dispose after: another thread may be reading the old one's HasExited.
            old = backend.Process;
            backend.Process = ChildProcess.Start(
                backend.LogPath,
                options.BackendDll,
                "--Backend:SocketPath=" + backend.SocketPath,
                "--KeyValue:JournalPath=" + backend.JournalPath,
                "--Logging:LogLevel:Default=Warning");
            backend.Starts++;
        }

        old?.Dispose();
    }

    private static async Task KillAsync(Backend backend)
    {
        ChildProcess? process;
        lock (backend)
        {
            process = backend.Process;
        }

        if (process is { HasExited: false })
        {
            process.Signal(SigKill);
            await process.WaitForExitAsync();
            backend.Kills++;
        }
    }

    private ChildProcess StartGateway(string socket, string[] instances)
    {
        List<string> args =
        [
            "--Gateway:Listen:UnixSocket=" + socket,
            "--Gateway:ReplySocketDirectory=" + Path.Combine(_dir, "replies"),
            "--Gateway:Backends:kv:Timeout=" + Budget.ToString("c", CultureInfo.InvariantCulture),
            "--Gateway:Backends:kv:AttemptTimeout=00:00:00.500",
            "--Gateway:Backends:kv:HealthCheck:Interval=00:00:01",
            "--Gateway:Backends:kv:CircuitBreaker:BreakDuration=00:00:01",
            "--Gateway:Routes:ops:Path=/ops/{id}",
            "--Gateway:Routes:ops:Methods:0=POST",
            "--Gateway:Routes:ops:Backend=kv",
            "--Gateway:Routes:counter:Path=/counter/{name}",
            "--Gateway:Routes:counter:Methods:0=GET",
            "--Gateway:Routes:counter:Backend=kv",
            "--Logging:LogLevel:Default=Warning",
        ];
        for (var i = 0; i < instances.Length; i++)
        {
            args.Add($"--Gateway:Backends:kv:Instances:{i}={instances[i]}");
        }

        return ChildProcess.Start(Path.Combine(_dir, "gateway.log"), options.GatewayDll, [.. args]);
    }

    private string[] ReplySockets()
    {
        try
        {
            return Directory.GetFiles(Path.Combine(_dir, "replies"));
        }
        catch (DirectoryNotFoundException)
        {
            return [];
        }
    }

    private sealed record AdminSnapshot(long Pending, long InFlight, long Spoofed, long Malformed, long Late);

    /// <summary>
    /// Waits (bounded) until no instance has anything pending or in flight and the reply sockets have read the
    /// <paramref name="spoofed"/> datagrams injected into them; returns the last snapshot.
    /// </summary>
    private static async Task<AdminSnapshot> SettleAsync(HttpClient http, long spoofed)
    {
        AdminSnapshot last = new(-1, -1, 0, 0, 0);
        await TryWaitAsync(async () => (last = await AdminAsync(http)) is { Pending: 0, InFlight: 0 } && last.Spoofed >= spoofed, TimeSpan.FromSeconds(60));
        return last;
    }

    private static async Task<AdminSnapshot> AdminAsync(HttpClient http)
    {
        using var json = JsonDocument.Parse(await http.GetStringAsync("/admin/backends"));
        long pending = 0, inFlight = 0, spoofed = 0, malformed = 0, late = 0;
        foreach (var instance in json.RootElement.EnumerateArray().SelectMany(b => b.GetProperty("instances").EnumerateArray()))
        {
            pending += instance.GetProperty("pending").GetInt64();
            inFlight += instance.GetProperty("inFlight").GetInt64();
            spoofed += instance.GetProperty("spoofedReplies").GetInt64();
            malformed += instance.GetProperty("malformedDatagrams").GetInt64();
            late += instance.GetProperty("lateReplies").GetInt64();
        }

        return new AdminSnapshot(pending, inFlight, spoofed, malformed, late);
    }

    /// <summary>The RSS once load has stopped: the lowest of a few samples over 3 s (the GC returns memory lazily).</summary>
    private static async Task<long> EndRssAsync(int pid)
    {
        var min = long.MaxValue;
        for (var i = 0; i < 12; i++)
        {
            min = Math.Min(min, ProcStatus.Kb(pid, "VmRSS"));
            await Task.Delay(250);
        }

        return min;
    }

    private async Task SampleRssAsync(int pid, CancellationToken stop)
    {
        try
        {
            while (!stop.IsCancellationRequested)
            {
                _peakRssKb = Math.Max(_peakRssKb, ProcStatus.Kb(pid, "VmRSS"));
                await Task.Delay(200, stop);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static async Task<int> StatusAsync(HttpClient http, string path)
    {
        try
        {
            using var response = await http.GetAsync(path);
            return (int)response.StatusCode;
        }
        catch (HttpRequestException)
        {
            return 0;
        }
    }

    private static async Task WaitAsync(string what, Func<bool> condition) =>
        await WaitAsync(what, () => Task.FromResult(condition()));

    private static async Task WaitAsync(string what, Func<Task<bool>> condition)
    {
        if (!await TryWaitAsync(condition, TimeSpan.FromSeconds(120)))
        {
            throw new TimeoutException($"timed out waiting for: {what}");
        }
    }

    /// <summary>A bounded readiness poll (never a timing assertion: the bound only turns a hang into a failure).</summary>
    private static async Task<bool> TryWaitAsync(Func<Task<bool>> condition, TimeSpan limit)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            try
            {
                if (await condition())
                {
                    return true;
                }
            }
            catch (Exception ex) when (ex is HttpRequestException or SocketFileException)
            {
            }

            if (clock.Elapsed > limit)
            {
                return false;
            }

            await Task.Delay(50);
        }
    }

    private static IEnumerable<string> Tail(string path, int lines)
    {
        try
        {
            return File.ReadAllLines(path).TakeLast(lines);
        }
        catch (IOException)
        {
            return [];
        }
    }

    private void Say(string line)
    {
        Console.WriteLine(line);
        _report.AppendLine(line);
    }

    private sealed class Backend(int number, string socketPath, string journalPath, string logPath)
    {
        public int Number { get; } = number;

        public string SocketPath { get; } = socketPath;

        public string JournalPath { get; } = journalPath;

        public string LogPath { get; } = logPath;

        public ChildProcess? Process { get; set; }

        public int Kills { get; set; }

        public int Starts { get; set; }
    }
}
