using System.Globalization;

namespace Gateway.Bench.Chaos;

/// <summary>Command line of the chaos soak.</summary>
internal sealed class ChaosOptions
{
    public const string Usage = """
        Chaos soak: the gateway process (Release) in front of 3 KeyValueBackend processes (one behind a fault proxy),
        under concurrent GET/POST load while backends are SIGKILLed and restarted, replies are dropped, duplicated
        and delayed, garbage and spoofed datagrams are injected and clients abort requests. Exit 0 when every check
        passes, 1 when one fails, 2 on bad usage.
          --duration S      seconds of chaos (default 180)
          --short           CI mode: --duration 45
          --warmup S        seconds of load without chaos before the RSS baseline (default 5)
          --concurrency N   concurrent clients (default 24)
          --seed N          random seed (default: from the clock; printed)
          --out FILE        also write the report (markdown) to FILE
          --gateway DLL     the gateway (default src/Gateway/bin/Release/net10.0/Gateway.dll)
          --backend DLL     the backend (default samples/KeyValueBackend/bin/Release/net10.0/KeyValueBackend.dll)
          --rss-margin-mib N  allowed end RSS above the baseline (default 96, see docs/resilience.md, "Chaos soak")
          --keep            keep the temp directory (logs, journals)
        """;

    public double DurationSeconds { get; private set; } = 180;

    public double WarmupSeconds { get; private set; } = 5;

    public int Concurrency { get; private set; } = 24;

    public int Seed { get; private set; } = Environment.TickCount & int.MaxValue;

    public string? Out { get; private set; }

    public string GatewayDll { get; private set; } = "src/Gateway/bin/Release/net10.0/Gateway.dll";

    public string BackendDll { get; private set; } = "samples/KeyValueBackend/bin/Release/net10.0/KeyValueBackend.dll";

    public long RssMarginMiB { get; private set; } = 96;

    public bool Keep { get; private set; }

    public static ChaosOptions Parse(string[] args)
    {
        var o = new ChaosOptions();
        for (var i = 0; i < args.Length; i++)
        {
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{args[i]} needs a value.");
            switch (args[i])
            {
                case "--duration": o.DurationSeconds = Positive(Next(), "--duration"); break;
                case "--short": o.DurationSeconds = 45; break;
                case "--warmup": o.WarmupSeconds = Positive(Next(), "--warmup"); break;
                case "--concurrency": o.Concurrency = (int)Positive(Next(), "--concurrency"); break;
                case "--seed": o.Seed = int.Parse(Next(), CultureInfo.InvariantCulture); break;
                case "--out": o.Out = Next(); break;
                case "--gateway": o.GatewayDll = Next(); break;
                case "--backend": o.BackendDll = Next(); break;
                case "--rss-margin-mib": o.RssMarginMiB = (long)Positive(Next(), "--rss-margin-mib"); break;
                case "--keep": o.Keep = true; break;
                default: throw new ArgumentException($"Unknown option {args[i]}.");
            }
        }

        o.GatewayDll = Path.GetFullPath(o.GatewayDll);
        o.BackendDll = Path.GetFullPath(o.BackendDll);
        foreach (var dll in new[] { o.GatewayDll, o.BackendDll })
        {
            if (!File.Exists(dll))
            {
                throw new ArgumentException($"{dll} is missing (build Release first: bench/chaos.sh builds it).");
            }
        }

        return o;
    }

    private static double Positive(string text, string name) =>
        double.TryParse(text, NumberStyles.Float, CultureInfo.InvariantCulture, out var value) && value > 0
            ? value
            : throw new ArgumentException($"{name}: '{text}' is not a positive number.");
}
