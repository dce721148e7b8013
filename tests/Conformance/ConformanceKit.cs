using System.Globalization;
using System.Text;

namespace Gateway.Conformance;

/// <summary>The result of one check.</summary>
public enum CheckOutcome
{
    /// <summary>The backend behaved as the spec requires.</summary>
    Pass,

    /// <summary>The backend broke the spec.</summary>
    Fail,

    /// <summary>The check needs an optional route the backend does not offer.</summary>
    Skip,
}

/// <summary>One row of the kit's table.</summary>
/// <param name="Name">The check's name (see docs/conformance.md).</param>
/// <param name="Outcome">Pass, fail or skip.</param>
/// <param name="Detail">What was observed.</param>
public sealed record CheckResult(string Name, CheckOutcome Outcome, string Detail);

/// <summary>Options of a kit run.</summary>
public sealed record ConformanceOptions
{
    /// <summary>How long to wait for a reply that must come. The default is 5 seconds.</summary>
    public TimeSpan Timeout { get; init; } = TimeSpan.FromSeconds(5);
}

/// <summary>Runs the conformance checks of docs/conformance.md against a backend's socket.</summary>
public static class ConformanceKit
{
    /// <summary>The names of every check, in the order they run.</summary>
    public static IReadOnlyList<string> CheckNames { get; } = [.. Checks.All.Select(c => c.Name)];

    /// <summary>Runs every check (or those named in <paramref name="only"/>) in order, one at a time.</summary>
    /// <param name="backendPath">The backend's socket path.</param>
    /// <param name="options">Options.</param>
    /// <param name="only">Names of the checks to run; null for all.</param>
    /// <param name="cancellationToken">Stops the run.</param>
    /// <returns>One result per check.</returns>
    public static async Task<IReadOnlyList<CheckResult>> RunAsync(string backendPath, ConformanceOptions options, IReadOnlyCollection<string>? only = null, CancellationToken cancellationToken = default)
    {
        var results = new List<CheckResult>();
        foreach (var (name, run) in Checks.All)
        {
            if (only is not null && !only.Contains(name))
            {
                continue;
            }

            var context = new CheckContext(backendPath, options.Timeout, cancellationToken);
            try
            {
                var (outcome, detail) = await run(context);
                results.Add(new CheckResult(name, outcome, detail));
            }
            catch (CheckFailedException e)
            {
                results.Add(new CheckResult(name, CheckOutcome.Fail, e.Message));
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                results.Add(new CheckResult(name, CheckOutcome.Fail, $"{e.GetType().Name}: {e.Message}"));
            }
            finally
            {
                await context.DisposeAsync();
            }
        }

        return results;
    }

    /// <summary>Sends one PING and reports whether its PONG came back within <paramref name="timeout"/>.</summary>
    /// <param name="backendPath">The backend's socket path.</param>
    /// <param name="timeout">How long to wait.</param>
    /// <param name="cancellationToken">Stops the wait.</param>
    /// <returns>Whether the backend answered.</returns>
    public static async Task<bool> PingAsync(string backendPath, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        await using var client = new KitClient(backendPath);
        var id = Frames.NewId();
        try
        {
            await client.SendAsync(Frames.Control(Ipc.Protocol.MessageKind.Ping, id, 1), cancellationToken);
        }
        catch (System.Net.Sockets.SocketException)
        {
            return false; // not bound yet, or stale
        }

        var reply = await client.ReceiveAsync(timeout, cancellationToken);
        return reply is { Kind: Ipc.Protocol.MessageKind.Pong } && reply.CorrelationId == id;
    }

    /// <summary>Formats results as a Markdown table followed by a summary line.</summary>
    /// <param name="results">The results.</param>
    /// <returns>The text.</returns>
    public static string FormatTable(IEnumerable<CheckResult> results)
    {
        var text = new StringBuilder();
        text.AppendLine("| check | result | detail |").AppendLine("|---|---|---|");
        var counts = new int[3];
        foreach (var r in results)
        {
            counts[(int)r.Outcome]++;
            text.AppendLine(CultureInfo.InvariantCulture, $"| {r.Name} | {r.Outcome.ToString().ToUpperInvariant()} | {r.Detail.Replace("|", "\\|", StringComparison.Ordinal)} |");
        }

        text.AppendLine().AppendLine(CultureInfo.InvariantCulture, $"{counts[0]} passed, {counts[1]} failed, {counts[2]} skipped");
        return text.ToString();
    }
}

/// <summary>What a check gets: the backend's address, the timeout, and clients that are disposed after it.</summary>
internal sealed class CheckContext(string backendPath, TimeSpan timeout, CancellationToken cancellationToken) : IAsyncDisposable
{
    private readonly List<KitClient> _clients = [];

    public string BackendPath { get; } = backendPath;

    public TimeSpan Timeout { get; } = timeout;

    public CancellationToken Token { get; } = cancellationToken;

    public KitClient NewClient()
    {
        var client = new KitClient(BackendPath);
        _clients.Add(client);
        return client;
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var client in _clients)
        {
            await client.DisposeAsync();
        }
    }
}
