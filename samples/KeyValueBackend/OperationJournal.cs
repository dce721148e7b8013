using System.Text;

namespace KeyValueBackend;

/// <summary>
/// An append-only file of executed operations (<c>POST /ops/{id}</c>), one line each: <c>id TAB idempotency-key</c>
/// (<c>-</c> without a key). It survives a SIGKILL of the process (each line is one write(2) before the reply is
/// sent), so a chaos test can count executions per operation across restarts; and it remembers the
/// <c>Idempotency-Key</c>s already executed, so a retry that reaches a restarted process (whose in-memory replay
/// cache is gone) is answered without executing again.
/// </summary>
public sealed class OperationJournal : IDisposable
{
    private readonly FileStream _file;
    private readonly HashSet<string> _keys = new(StringComparer.Ordinal);
    private readonly Lock _gate = new();

    public OperationJournal(string path)
    {
        Path = path;
        if (File.Exists(path))
        {
            foreach (var line in File.ReadLines(path))
            {
                var tab = line.IndexOf('\t', StringComparison.Ordinal);
                if (tab > 0 && line[(tab + 1)..] is { Length: > 0 } key && key != "-")
                {
                    _keys.Add(key);
                }
            }
        }

        // bufferSize 0: every line is written through at once (one write(2)), nothing is held in the process.
        _file = new FileStream(path, FileMode.Append, FileAccess.Write, FileShare.Read, bufferSize: 0);
    }

    public string Path { get; }

    /// <summary>
    /// Records the execution of <paramref name="operationId"/>; returns false (and records nothing) when
    /// <paramref name="idempotencyKey"/> was executed before, by this process or an earlier one on this journal.
    /// </summary>
    public bool TryExecute(string operationId, string? idempotencyKey)
    {
        var line = Encoding.UTF8.GetBytes($"{Clean(operationId)}\t{(idempotencyKey is null ? "-" : Clean(idempotencyKey))}\n");
        lock (_gate)
        {
            if (idempotencyKey is not null && _keys.Contains(idempotencyKey))
            {
                return false;
            }

            _file.Write(line);
            if (idempotencyKey is not null)
            {
                _keys.Add(idempotencyKey);
            }

            return true;
        }
    }

    public void Dispose() => _file.Dispose();

    private static string Clean(string value) => value.Replace('\t', ' ').Replace('\n', ' ').Replace('\r', ' ');
}
