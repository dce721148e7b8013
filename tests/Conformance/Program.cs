using Gateway.Conformance;

// The conformance kit: dotnet run --project tests/Conformance -- --backend <socket> [--timeout <seconds>] [--check <name>]...
// Prints a Markdown table of the checks of docs/conformance.md; exits 0 when none failed, 1 when any did, 2 on usage errors.
string? backend = null;
var options = new ConformanceOptions();
List<string>? only = null;
for (var i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--backend" when i + 1 < args.Length:
            backend = args[++i];
            break;
        case "--timeout" when i + 1 < args.Length && double.TryParse(args[i + 1], System.Globalization.CultureInfo.InvariantCulture, out var seconds) && seconds > 0:
            options = options with { Timeout = TimeSpan.FromSeconds(seconds) };
            i++;
            break;
        case "--check" when i + 1 < args.Length:
            (only ??= []).Add(args[++i]);
            break;
        default:
            return Usage($"unknown or incomplete argument '{args[i]}'");
    }
}

if (backend is null)
{
    return Usage("--backend is required");
}

if (only?.FirstOrDefault(name => !ConformanceKit.CheckNames.Contains(name)) is { } unknown)
{
    return Usage($"unknown check '{unknown}'");
}

using var cts = new CancellationTokenSource();
Console.CancelKeyPress += (_, e) =>
{
    e.Cancel = true;
    cts.Cancel();
};

if (!await ConformanceKit.PingAsync(backend, options.Timeout, cts.Token))
{
    await Console.Error.WriteLineAsync($"The backend at {backend} does not answer PING; is it running?");
    return 2;
}

var results = await ConformanceKit.RunAsync(backend, options, only, cts.Token);
Console.Write(ConformanceKit.FormatTable(results));
return results.Any(r => r.Outcome == CheckOutcome.Fail) ? 1 : 0;

static int Usage(string problem)
{
    Console.Error.WriteLine($"""
        {problem}
        usage: Gateway.Conformance --backend <socket path> [--timeout <seconds, default 5>] [--check <name>]...
        checks: {string.Join(", ", ConformanceKit.CheckNames)}
        """);
    return 2;
}
