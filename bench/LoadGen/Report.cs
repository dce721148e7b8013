using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Gateway.Bench.LoadGen;

/// <summary>Turns the JSON lines of a run (several rounds) into a Markdown table with ratios and an SVG plot.</summary>
internal static class Report
{
    private static readonly string[] TargetOrder = ["gateway", "nginx", "direct", "gateway-raw"];
    private static readonly Dictionary<string, string> Colors = new()
    {
        ["gateway"] = "#1f77b4",
        ["nginx"] = "#2ca02c",
        ["direct"] = "#7f7f7f",
        ["gateway-raw"] = "#9467bd",
    };

    private sealed record Row(string Scenario, string Target, int Rounds, double Rps, double P50, double P90, double P99, double P999,
        long Errors, long Non2xx, double LoadGenCpu, double SutCpu, string ErrorKinds);

    public static int Run(string[] args)
    {
        string? input = null, md = null, svg = null, scale = null, title = "Gateway benchmark";
        var notes = new List<string>();
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--in": input = args[++i]; break;
                case "--md": md = args[++i]; break;
                case "--svg": svg = args[++i]; break;
                case "--title": title = args[++i]; break;
                case "--note": notes.Add(args[++i]); break;
                case "--scale": scale = args[++i]; break;
                default: throw new ArgumentException($"Unknown report option '{args[i]}'.");
            }
        }

        if (input is null)
        {
            throw new ArgumentException("report needs --in FILE.jsonl");
        }

        var rows = Load(input);
        var markdown = Markdown(rows, title, notes) + PerProcess(input);
        if (scale is not null && File.Exists(scale))
        {
            markdown += Scale(scale);
        }

        if (svg is not null)
        {
            markdown += $"{Environment.NewLine}![throughput and p99](./{Path.GetFileName(svg)}){Environment.NewLine}";
        }

        if (md is not null)
        {
            File.WriteAllText(md, markdown);
        }

        if (svg is not null)
        {
            File.WriteAllText(svg, Svg(rows, title));
        }

        Console.WriteLine(markdown);
        return 0;
    }

    private static List<Row> Load(string path)
    {
        var records = new List<JsonElement>();
        foreach (var line in File.ReadLines(path))
        {
            if (line.StartsWith('{'))
            {
                records.Add(JsonDocument.Parse(line).RootElement.Clone());
            }
        }

        var scenarios = records.Select(r => r.GetProperty("scenario").GetString()!).Distinct().ToList();
        var rows = new List<Row>();
        foreach (var scenario in scenarios)
        {
            foreach (var target in records.Select(r => r.GetProperty("label").GetString()!).Distinct().OrderBy(Order))
            {
                var set = records.Where(r => r.GetProperty("scenario").GetString() == scenario && r.GetProperty("label").GetString() == target).ToList();
                if (set.Count == 0)
                {
                    continue;
                }

                double Median(string name) => MedianOf(set.Select(r => r.TryGetProperty(name, out var v) ? v.GetDouble() : 0));
                var kinds = new SortedDictionary<string, long>(StringComparer.Ordinal);
                foreach (var r in set)
                {
                    foreach (var p in r.GetProperty("errors_by_kind").EnumerateObject())
                    {
                        if (p.Value.GetInt64() > 0)
                        {
                            kinds[p.Name] = kinds.GetValueOrDefault(p.Name) + p.Value.GetInt64();
                        }
                    }
                }

                rows.Add(new Row(scenario, target, set.Count, Median("rps"), Median("p50_us"), Median("p90_us"), Median("p99_us"), Median("p999_us"),
                    set.Sum(r => r.GetProperty("errors").GetInt64()), set.Sum(r => r.GetProperty("non_2xx").GetInt64()),
                    Median("loadgen_cpu_pct"), Median("sut_cpu_pct"), string.Join(' ', kinds.Select(k => $"{k.Key}={k.Value}"))));
            }
        }

        return rows;
    }

    /// <summary>
    /// Per scenario, target and watched process name (<c>--watch-pid P:name</c>): median CPU µs and context switches per
    /// request over the rounds. Empty when no record names its processes.
    /// </summary>
    internal static string PerProcess(string path)
    {
        var records = File.ReadLines(path).Where(l => l.StartsWith('{')).Select(l => JsonDocument.Parse(l).RootElement.Clone())
            .Where(r => r.TryGetProperty("processes", out var p) && p.GetArrayLength() > 0).ToList();
        if (records.Count == 0)
        {
            return "";
        }

        var sb = new StringBuilder();
        sb.AppendLine().AppendLine("## Per process").AppendLine();
        sb.AppendLine("CPU time (utime + stime, /proc/PID/stat) and context switches (voluntary + nonvoluntary over /proc/PID/task/*/status)");
        sb.AppendLine("of each process of the target over the measured window, divided by the requests; medians over rounds.").AppendLine();
        sb.AppendLine("| scenario | target | process | CPU µs/req | context switches/req |");
        sb.AppendLine("|---|---|---|--:|--:|");
        foreach (var scenario in records.Select(r => r.GetProperty("scenario").GetString()!).Distinct())
        {
            foreach (var target in records.Select(r => r.GetProperty("label").GetString()!).Distinct().OrderBy(Order))
            {
                var set = records.Where(r => r.GetProperty("scenario").GetString() == scenario && r.GetProperty("label").GetString() == target).ToList();
                var processes = set.SelectMany(r => r.GetProperty("processes").EnumerateArray()).GroupBy(p => p.GetProperty("name").GetString()!);
                foreach (var process in processes)
                {
                    var cpu = MedianOf(process.Select(p => p.GetProperty("cpu_us_per_req").GetDouble()));
                    var cs = MedianOf(process.Select(p => p.GetProperty("cs_per_req").GetDouble()));
                    sb.AppendLine(CultureInfo.InvariantCulture, $"| {scenario} | {target} | {process.Key} | {cpu:F1} | {cs:F2} |");
                }
            }
        }

        return sb.ToString();
    }

    private static string Scale(string path)
    {
        var sb = new StringBuilder();
        sb.AppendLine().AppendLine("## Scale: many concurrent requests held by a slow backend").AppendLine();
        sb.AppendLine("One connection per request, all opened first, then every request sent at once; the echo waits `x-echo-delay-ms`.");
        sb.AppendLine("A reply is correct when it is 2xx and echoes the connection's unique body. RSS of the watched process(es):");
        sb.AppendLine("max sampled every 100 ms during the run, and VmHWM (peak since the process started, so it includes the load runs).").AppendLine();
        sb.AppendLine("| target | requests | correct | peak in flight | errors | non-2xx | p50 ms | max ms | RSS max during run MiB | VmHWM MiB |");
        sb.AppendLine("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        string? verdict = null;
        foreach (var line in File.ReadLines(path))
        {
            if (!line.StartsWith('{'))
            {
                sb.AppendLine(CultureInfo.InvariantCulture, $"| (no result: {Escape(line)}) |||||||||");
                continue;
            }

            var r = JsonDocument.Parse(line).RootElement;
            var kinds = string.Join(' ', r.GetProperty("errors_by_kind").EnumerateObject().Where(p => p.Value.GetInt64() > 0).Select(p => $"{p.Name}={p.Value.GetInt64()}"));
            double Get(string name) => r.TryGetProperty(name, out var v) ? v.GetDouble() : 0;
            sb.AppendLine(CultureInfo.InvariantCulture, $"| {r.GetProperty("label").GetString()} | {r.GetProperty("concurrency").GetInt64()} | {r.GetProperty("correct").GetInt64()} | {r.GetProperty("peak_in_flight").GetInt64()} | {r.GetProperty("errors").GetInt64()} {kinds} | {r.GetProperty("non_2xx").GetInt64()} | {F(Get("p50_us") / 1000)} | {F(Get("max_us") / 1000)} | {F(Get("sut_max_sampled_rss_kb") / 1024)} | {F(Get("sut_peak_rss_kb") / 1024)} |");
            if (r.GetProperty("label").GetString() == "gateway")
            {
                verdict = ScaleVerdict(r.GetProperty("concurrency").GetInt64(), r.GetProperty("correct").GetInt64(), Math.Max(Get("sut_max_sampled_rss_kb"), Get("sut_peak_rss_kb")));
            }
        }

        if (verdict is not null)
        {
            sb.AppendLine().AppendLine(verdict);
        }

        return sb.ToString();
    }

    /// <summary>The issue-9 scale target: every held request correct and the gateway's RSS under 300 MB (decimal megabytes).</summary>
    /// <param name="requests">Requests held at once.</param>
    /// <param name="correct">Requests answered correctly.</param>
    /// <param name="rssKb">The gateway's RSS in KiB: the larger of the max sampled during the run and VmHWM (peak since start).</param>
    internal static string ScaleVerdict(long requests, long correct, double rssKb)
    {
        var mb = rssKb * 1024 / 1_000_000;
        var met = requests > 0 && correct == requests && mb < 300;
        return string.Create(CultureInfo.InvariantCulture,
            $"- Scale target (issue 9): {correct:N0}/{requests:N0} held requests correct, gateway RSS {rssKb / 1024:F0} MiB = **{mb:F1} MB** (target: all correct, < 300 MB) — {(met ? "met" : "NOT met")}");
    }

    private static int Order(string target)
    {
        var i = Array.IndexOf(TargetOrder, target);
        return i < 0 ? TargetOrder.Length : i;
    }

    private static double MedianOf(IEnumerable<double> values)
    {
        var v = values.Order().ToArray();
        return v.Length == 0 ? 0 : v.Length % 2 == 1 ? v[v.Length / 2] : (v[(v.Length / 2) - 1] + v[v.Length / 2]) / 2;
    }

    private static string F(double v, string format = "F0") => v.ToString(format, CultureInfo.InvariantCulture);

    private static string Ratio(double a, double b) => b > 0 && a > 0 ? (a / b).ToString("F2", CultureInfo.InvariantCulture) + "×" : "—";

    private static string Markdown(List<Row> rows, string title, List<string> notes)
    {
        var sb = new StringBuilder();
        sb.Append("# ").AppendLine(title).AppendLine();
        foreach (var note in notes)
        {
            sb.Append("- ").AppendLine(note);
        }

        if (notes.Count > 0)
        {
            sb.AppendLine();
        }

        sb.AppendLine("Medians over rounds (errors and non-2xx are sums). Latency in µs. CPU in % of one core over the measured window;");
        sb.AppendLine("\"SUT CPU\" sums the processes of the target (gateway + echo backend, nginx master + workers + Kestrel, Kestrel).").AppendLine();
        sb.AppendLine("| scenario | target | rounds | req/s | p50 | p90 | p99 | p99.9 | errors | non-2xx | SUT CPU % | SUT CPU µs/req | loadgen CPU % | req/s vs nginx | req/s vs direct | p50 vs nginx | p99 vs nginx |");
        sb.AppendLine("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|");
        foreach (var r in rows)
        {
            var nginx = rows.FirstOrDefault(x => x.Scenario == r.Scenario && x.Target == "nginx");
            var direct = rows.FirstOrDefault(x => x.Scenario == r.Scenario && x.Target == "direct");
            var cpuPerReq = r.Rps > 0 && r.SutCpu > 0 ? F(r.SutCpu / 100 / r.Rps * 1e6, "F1") : "—";
            var errors = r.Errors == 0 ? "0" : $"{r.Errors} ({r.ErrorKinds})";
            sb.Append(CultureInfo.InvariantCulture, $"| {r.Scenario} | {r.Target} | {r.Rounds} | {F(r.Rps)} | {F(r.P50)} | {F(r.P90)} | {F(r.P99)} | {F(r.P999)} | {errors} | {r.Non2xx} | {F(r.SutCpu)} | {cpuPerReq} | {F(r.LoadGenCpu)} | ");
            sb.Append(r.Target == "nginx" || nginx is null ? "—" : Ratio(r.Rps, nginx.Rps)).Append(" | ");
            sb.Append(r.Target == "direct" || direct is null ? "—" : Ratio(r.Rps, direct.Rps)).Append(" | ");
            sb.Append(r.Target == "nginx" || nginx is null ? "—" : Ratio(r.P50, nginx.P50)).Append(" | ");
            sb.Append(r.Target == "nginx" || nginx is null ? "—" : Ratio(r.P99, nginx.P99)).AppendLine(" |");
        }

        sb.AppendLine().AppendLine("## Targets (issue 9)").AppendLine();
        var gateway = rows.Where(r => r.Target == "gateway" && r.Rps > 0).ToList();
        if (gateway.Count == 0)
        {
            sb.AppendLine("Gateway not measured in this run: the targets cannot be evaluated.");
            var c32 = rows.Where(r => r.Scenario.Contains("c32", StringComparison.Ordinal)).ToList();
            foreach (var s in c32.Select(r => r.Scenario).Distinct())
            {
                var n = c32.FirstOrDefault(r => r.Scenario == s && r.Target == "nginx");
                var d = c32.FirstOrDefault(r => r.Scenario == s && r.Target == "direct");
                if (n is not null && d is not null)
                {
                    sb.AppendLine(CultureInfo.InvariantCulture, $"- {s}: nginx reaches {Ratio(n.Rps, d.Rps)} of the direct ceiling; 1.2× nginx would be {F(1.2 * n.Rps)} req/s = {Ratio(1.2 * n.Rps, d.Rps)} of direct.");
                }
            }

            return sb.ToString();
        }

        void Check(string what, Row? g, Row? reference, Func<Row, double> metric, double factor, bool higherIsBetter)
        {
            if (g is null || reference is null)
            {
                sb.AppendLine(CultureInfo.InvariantCulture, $"- {what}: not measured");
                return;
            }

            var ratio = metric(g) / metric(reference);
            var ok = higherIsBetter ? ratio >= factor : ratio <= factor;
            sb.AppendLine(CultureInfo.InvariantCulture, $"- {what}: **{ratio:F2}×** (target {(higherIsBetter ? "≥" : "≤")} {factor:F1}×) — {(ok ? "met" : "NOT met")}");
        }

        Row? Find(string scenario, string target) => rows.FirstOrDefault(r => r.Scenario == scenario && r.Target == target);
        Check("GET c=32 throughput, gateway / nginx", Find("GET c32", "gateway"), Find("GET c32", "nginx"), r => r.Rps, 1.2, true);
        Check("GET c=1 p50, gateway / nginx", Find("GET c1", "gateway"), Find("GET c1", "nginx"), r => r.P50, 0.8, false);
        foreach (var g in gateway)
        {
            Check($"{g.Scenario} throughput, gateway / direct", g, Find(g.Scenario, "direct"), r => r.Rps, 0.6, true);
        }

        return sb.ToString();
    }

    private static string Svg(List<Row> rows, string title)
    {
        var scenarios = rows.Select(r => r.Scenario).Distinct().ToList();
        var targets = rows.Select(r => r.Target).Distinct().OrderBy(Order).ToList();
        const int width = 960, panelHeight = 260, top = 50, left = 80, right = 20, gap = 70;
        var height = top + (2 * panelHeight) + gap + 60;
        var plotWidth = width - left - right;
        var sb = new StringBuilder();
        sb.AppendLine(CultureInfo.InvariantCulture, $"<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" font-family=\"sans-serif\" font-size=\"11\">");
        sb.AppendLine(CultureInfo.InvariantCulture, $"<rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>");
        sb.AppendLine(CultureInfo.InvariantCulture, $"<text x=\"{width / 2}\" y=\"20\" text-anchor=\"middle\" font-size=\"15\">{Escape(title)}</text>");

        // Legend.
        for (var t = 0; t < targets.Count; t++)
        {
            var x = left + (t * 120);
            sb.AppendLine(CultureInfo.InvariantCulture, $"<rect x=\"{x}\" y=\"30\" width=\"12\" height=\"12\" fill=\"{Colors.GetValueOrDefault(targets[t], "#d62728")}\"/><text x=\"{x + 16}\" y=\"40\">{Escape(targets[t])}</text>");
        }

        Panel(top + 10, "Throughput (requests/s, linear)", r => r.Rps, log: false, "F0");
        Panel(top + 10 + panelHeight + gap, "p99 latency (µs, log scale)", r => r.P99, log: true, "F0");
        sb.AppendLine("</svg>");
        return sb.ToString();

        void Panel(int y0, string caption, Func<Row, double> metric, bool log, string format)
        {
            var values = rows.Select(metric).Where(v => v > 0).ToList();
            var max = values.Count == 0 ? 1 : values.Max();
            var min = values.Count == 0 ? 1 : values.Min();
            var logMin = Math.Floor(Math.Log10(Math.Max(min, 1)));
            var logMax = Math.Ceiling(Math.Log10(Math.Max(max, 10)));
            if (logMax <= logMin)
            {
                logMax = logMin + 1;
            }

            var linearMax = NiceCeiling(max);
            double Scale(double v) => v <= 0 ? 0 : log
                ? Math.Clamp((Math.Log10(v) - logMin) / (logMax - logMin), 0, 1) * panelHeight
                : v / linearMax * panelHeight;

            var baseY = y0 + panelHeight;
            sb.AppendLine(CultureInfo.InvariantCulture, $"<text x=\"{left}\" y=\"{y0 - 6}\" font-size=\"12\" font-weight=\"bold\">{Escape(caption)}</text>");
            sb.AppendLine(CultureInfo.InvariantCulture, $"<line x1=\"{left}\" y1=\"{baseY}\" x2=\"{width - right}\" y2=\"{baseY}\" stroke=\"black\"/>");
            sb.AppendLine(CultureInfo.InvariantCulture, $"<line x1=\"{left}\" y1=\"{y0}\" x2=\"{left}\" y2=\"{baseY}\" stroke=\"black\"/>");

            // Grid and axis labels.
            var ticks = log
                ? Enumerable.Range((int)logMin, (int)(logMax - logMin) + 1).Select(e => Math.Pow(10, e)).ToList()
                : Enumerable.Range(0, 5).Select(i => linearMax * i / 4).ToList();
            foreach (var tick in ticks)
            {
                var y = baseY - Scale(tick);
                if (log && tick <= Math.Pow(10, logMin))
                {
                    y = baseY;
                }

                sb.AppendLine(CultureInfo.InvariantCulture, $"<line x1=\"{left}\" y1=\"{y:F1}\" x2=\"{width - right}\" y2=\"{y:F1}\" stroke=\"#ddd\"/><text x=\"{left - 4}\" y=\"{y + 4:F1}\" text-anchor=\"end\">{tick.ToString("#,0", CultureInfo.InvariantCulture)}</text>");
            }

            var groupWidth = (double)plotWidth / Math.Max(1, scenarios.Count);
            var barWidth = groupWidth * 0.8 / Math.Max(1, targets.Count);
            for (var s = 0; s < scenarios.Count; s++)
            {
                var gx = left + (s * groupWidth) + (groupWidth * 0.1);
                for (var t = 0; t < targets.Count; t++)
                {
                    var row = rows.FirstOrDefault(r => r.Scenario == scenarios[s] && r.Target == targets[t]);
                    var x = gx + (t * barWidth);
                    if (row is null || metric(row) <= 0)
                    {
                        sb.AppendLine(CultureInfo.InvariantCulture, $"<text x=\"{x + (barWidth / 2):F1}\" y=\"{baseY - 4}\" text-anchor=\"middle\" fill=\"#999\">n/a</text>");
                        continue;
                    }

                    var h = Scale(metric(row));
                    sb.AppendLine(CultureInfo.InvariantCulture, $"<rect x=\"{x:F1}\" y=\"{baseY - h:F1}\" width=\"{barWidth - 2:F1}\" height=\"{h:F1}\" fill=\"{Colors.GetValueOrDefault(targets[t], "#d62728")}\"><title>{Escape(targets[t])} {Escape(scenarios[s])}: {metric(row).ToString(format, CultureInfo.InvariantCulture)}</title></rect>");
                    sb.AppendLine(CultureInfo.InvariantCulture, $"<text x=\"{x + (barWidth / 2):F1}\" y=\"{baseY - h - 3:F1}\" text-anchor=\"middle\" font-size=\"9\">{metric(row).ToString(format, CultureInfo.InvariantCulture)}</text>");
                }

                sb.AppendLine(CultureInfo.InvariantCulture, $"<text x=\"{left + (s * groupWidth) + (groupWidth / 2):F1}\" y=\"{baseY + 16}\" text-anchor=\"middle\">{Escape(scenarios[s])}</text>");
            }
        }
    }

    private static double NiceCeiling(double v)
    {
        if (v <= 0)
        {
            return 1;
        }

        var magnitude = Math.Pow(10, Math.Floor(Math.Log10(v)));
        foreach (var step in new[] { 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10 })
        {
            if (step * magnitude >= v)
            {
                return step * magnitude;
            }
        }

        return 10 * magnitude;
    }

    private static string Escape(string s) => s.Replace("&", "&amp;", StringComparison.Ordinal).Replace("<", "&lt;", StringComparison.Ordinal).Replace(">", "&gt;", StringComparison.Ordinal);
}
