using Gateway.Testing;
using System.Diagnostics;
using System.Runtime.InteropServices;
using System.Text;

namespace Gateway.Conformance.Tests;

/// <summary>A backend running as a child process, started from the repository root; killed on dispose.</summary>
public sealed partial class BackendProcess : IAsyncDisposable
{
    private const int Sigterm = 15;

    private readonly Process _process;
    private readonly StringBuilder _output = new();

    private BackendProcess(Process process, string socketPath)
    {
        _process = process;
        SocketPath = socketPath;
    }

    public string SocketPath { get; }

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>Everything the process wrote to stdout and stderr so far.</summary>
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

    /// <summary>Starts the backend without waiting for it to be ready.</summary>
    public static BackendProcess Start(BackendLaunch launch, string socketPath)
    {
        var start = new ProcessStartInfo(launch.FileName)
        {
            WorkingDirectory = RepoPaths.Root,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        foreach (var argument in launch.Arguments)
        {
            start.ArgumentList.Add(argument.Replace("{socket}", socketPath, StringComparison.Ordinal));
        }

        var process = new Process { StartInfo = start };
        var backend = new BackendProcess(process, socketPath);
        process.OutputDataReceived += (_, e) => backend.Append(e.Data);
        process.ErrorDataReceived += (_, e) => backend.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return backend;
    }

    /// <summary>Starts the backend and polls it with PING (a bounded number of tries) until it answers.</summary>
    public static async Task<BackendProcess> StartReadyAsync(BackendLaunch launch, string socketPath, int tries = 600)
    {
        var backend = Start(launch, socketPath);
        for (var i = 0; i < tries; i++)
        {
            if (await ConformanceKit.PingAsync(socketPath, TimeSpan.FromMilliseconds(100)))
            {
                return backend;
            }

            // Poll interval (not a synchronisation): wake early if the process dies.
            await Task.WhenAny(backend._process.WaitForExitAsync(), Task.Delay(50));
            if (backend.HasExited)
            {
                break;
            }
        }

        var output = backend.Output;
        await backend.DisposeAsync();
        throw new InvalidOperationException($"The backend '{launch.Name}' did not answer PING at {socketPath}. Output:\n{output}");
    }

    /// <summary>Sends SIGTERM and waits (bounded) for the process to exit.</summary>
    public async Task<bool> TerminateAsync(TimeSpan timeout)
    {
        if (!_process.HasExited)
        {
            _ = Kill(_process.Id, Sigterm);
        }

        return await WaitForExitAsync(timeout);
    }

    /// <summary>Waits (bounded) for the process to exit by itself.</summary>
    public async Task<bool> WaitForExitAsync(TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await _process.WaitForExitAsync(cts.Token);
            return true;
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>Kills the process (SIGKILL), leaving its socket file behind, as a crash would.</summary>
    public async Task KillAsync()
    {
        _process.Kill(entireProcessTree: true);
        await _process.WaitForExitAsync();
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited && !await TerminateAsync(TimeSpan.FromSeconds(10)))
        {
            await KillAsync();
        }

        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is not null)
        {
            lock (_output)
            {
                _output.AppendLine(line);
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
