using System.Diagnostics;

namespace Gateway.Testing;

/// <summary>A child process (a backend) killed and reaped on dispose; its output is kept for diagnostics.</summary>
public sealed class ExternalProcess : IAsyncDisposable
{
    private readonly Process _process;
    private readonly System.Text.StringBuilder _output = new();

    private ExternalProcess(Process process)
    {
        _process = process;
    }

    public int Id => _process.Id;

    public bool HasExited => _process.HasExited;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public static ExternalProcess Start(string fileName, params string[] arguments) => Start(fileName, null, arguments);

    /// <summary>Starts <paramref name="fileName"/> with extra environment variables (as a user's shell or unit file sets them).</summary>
    public static ExternalProcess Start(string fileName, IReadOnlyDictionary<string, string>? environment, params string[] arguments)
    {
        var info = new ProcessStartInfo(fileName)
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var (name, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[name] = value;
        }

        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        var process = new Process { StartInfo = info, EnableRaisingEvents = true };
        var result = new ExternalProcess(process);
        process.OutputDataReceived += (_, e) => result.Append(e.Data);
        process.ErrorDataReceived += (_, e) => result.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return result;
    }

    /// <summary>Waits until <paramref name="path"/> exists (the backend bound its socket), a bounded readiness poll.</summary>
    public async Task WaitForFileAsync(string path, TimeSpan? timeout = null)
    {
        var deadline = Stopwatch.StartNew();
        var limit = timeout ?? TimeSpan.FromSeconds(120); // generous: CI may share its two cores with builds
        while (!File.Exists(path) && !Path.Exists(path))
        {
            if (_process.HasExited)
            {
                throw new InvalidOperationException($"{_process.StartInfo.FileName} exited with {_process.ExitCode} before binding {path}:\n{Output}");
            }

            if (deadline.Elapsed > limit)
            {
                throw new TimeoutException($"{_process.StartInfo.FileName} did not bind {path} within {limit}:\n{Output}");
            }

            await Task.Delay(20);
        }
    }

    /// <summary>Sends a signal without waiting for the process to exit.</summary>
    public Task SignalAsyncNoWait(int signal)
    {
        if (!_process.HasExited)
        {
            _ = Kill(_process.Id, signal);
        }

        return Task.CompletedTask;
    }

    /// <summary>Waits (bounded) for the exit and returns the exit code.</summary>
    public async Task<int> WaitForExitAsync(TimeSpan? timeout = null)
    {
        await _process.WaitForExitAsync().WaitAsync(timeout ?? TimeSpan.FromSeconds(60));
        _process.WaitForExit(); // flushes the redirected output
        return _process.ExitCode;
    }

    /// <summary>Sends a signal (e.g. 9 for SIGKILL, 15 for SIGTERM) and waits for the exit.</summary>
    public async Task SignalAsync(int signal)
    {
        if (!_process.HasExited)
        {
            _ = Kill(_process.Id, signal);
            await _process.WaitForExitAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                await _process.WaitForExitAsync();
            }
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }

    [System.Runtime.InteropServices.DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);
}
