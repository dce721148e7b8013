using System.Globalization;

namespace Gateway.Bench.LoadGen;

internal enum VerifyMode
{
    None,
    Body,
    All,

    /// <summary>A raw-mode upper-casing echo (samples/raw): the body with ASCII a–z upper-cased; no body, an empty one.</summary>
    Upper,
}

internal sealed class Options
{
    public string Socket { get; set; } = "";
    public string Path { get; set; } = "/echo/hello";
    public string Method { get; set; } = "GET";
    public int BodySize { get; set; }
    public int Concurrency { get; set; } = 1;
    public double DurationSeconds { get; set; } = 5;
    public double WarmupSeconds { get; set; } = 1;
    public int RequestsPerConnection { get; set; }
    public double TimeoutSeconds { get; set; } = 120;
    public bool Json { get; set; }
    public bool UniqueBody { get; set; }
    public VerifyMode Verify { get; set; } = VerifyMode.All;
    public List<string> Headers { get; } = [];
    public string Label { get; set; } = "";
    public string Scenario { get; set; } = "";
    public int Round { get; set; }
    public List<int> WatchPids { get; } = [];

    /// <summary>The name of each watched process (<c>--watch-pid P:name</c>), parallel to <see cref="WatchPids"/>; processes of one name are summed.</summary>
    public List<string> WatchNames { get; } = [];
    public int ConnectParallelism { get; set; } = 64;

    /// <summary>Count mode: every connection sends a fixed number of requests, then the run ends.</summary>
    public bool CountMode => RequestsPerConnection > 0;

    public const string Usage = """
        LoadGen: closed-loop HTTP/1.1 keep-alive load over a Unix stream socket.

          LoadGen --socket PATH [options]             run load, print one result
          LoadGen report --in FILE.jsonl --md OUT.md --svg OUT.svg [--title T]

        Options:
          --socket PATH                 Unix socket to connect to (required)
          --path /echo/hello            request target
          --method GET                  request method
          --body-size N                 request body bytes (0 = none)
          --concurrency N               connections, one outstanding request each (closed loop)
          --duration S                  measured seconds (default 5)
          --warmup S                    warm-up seconds, not recorded (default 1)
          --requests-per-connection N   count mode: each connection sends N requests, then stops; the whole
                                        run is measured (no warm-up); all connections are opened first
          --timeout S                   count mode: give up after S seconds (default 120)
          --header "name: value"        extra request header (repeatable)
          --unique-body                 stamp each connection's body with its index (detects cross-talk)
          --verify none|body|all|upper  check echo bodies: request body; 'all' also "{METHOD} {target}\n";
                                        'upper' the raw echo's (samples/raw): the body upper-cased, or empty
          --watch-pid P[:name][,P...]   report CPU% and RSS of these processes over the measured window, and per
                                        name (processes of one name summed) CPU time and context switches
          --label L --scenario S --round R   copied into the JSON record
          --json                        print one JSON line instead of text
        Environment: DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT (default 1 here) = event-loop threads.
        """;

    public static Options Parse(string[] args)
    {
        var o = new Options();
        for (var i = 0; i < args.Length; i++)
        {
            var a = args[i];
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{a} needs a value.");
            switch (a)
            {
                case "--socket": o.Socket = Next(); break;
                case "--path": o.Path = Next(); break;
                case "--method": o.Method = Next().ToUpperInvariant(); break;
                case "--body-size": o.BodySize = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--concurrency": o.Concurrency = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--duration": o.DurationSeconds = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--warmup": o.WarmupSeconds = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--requests-per-connection": o.RequestsPerConnection = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--timeout": o.TimeoutSeconds = double.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--header": o.Headers.Add(Next()); break;
                case "--unique-body": o.UniqueBody = true; break;
                case "--verify": o.Verify = Enum.Parse<VerifyMode>(Next(), ignoreCase: true); break;
                case "--label": o.Label = Next(); break;
                case "--scenario": o.Scenario = Next(); break;
                case "--round": o.Round = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--connect-parallelism": o.ConnectParallelism = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--watch-pid":
                    foreach (var p in Next().Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
                    {
                        var colon = p.IndexOf(':', StringComparison.Ordinal);
                        var pid = int.Parse(colon < 0 ? p : p[..colon], CultureInfo.InvariantCulture);
                        o.WatchPids.Add(pid);
                        o.WatchNames.Add(colon < 0 ? pid.ToString(CultureInfo.InvariantCulture) : p[(colon + 1)..]);
                    }

                    break;
                case "--json": o.Json = true; break;
                default: throw new ArgumentException($"Unknown option '{a}'.");
            }
        }

        if (string.IsNullOrEmpty(o.Socket))
        {
            throw new ArgumentException("--socket is required.");
        }

        if (o.Concurrency < 1 || o.BodySize < 0 || o.DurationSeconds < 0 || o.WarmupSeconds < 0 || !o.Path.StartsWith('/'))
        {
            throw new ArgumentException("Bad --concurrency, --body-size, --duration, --warmup or --path.");
        }

        return o;
    }
}
