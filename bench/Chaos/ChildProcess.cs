using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Gateway.Bench.Chaos;

/// <summary>A child process (<c>dotnet some.dll …</c>) whose output is appended to a log file.</summary>
internal sealed partial class ChildProcess : IDisposable
{
    private readonly Process _process;
    private readonly StreamWriter _log;

    private ChildProcess(Process process, StreamWriter log)
    {
        _process = process;
        _log = log;
    }

    public int Id => _process.Id;

    private volatile bool _disposed;

    /// <summary>
    /// True once the process has exited or this object was disposed. Safe to read from any thread while another one
    /// disposes it (a restart replaces a backend's process while the chaos loop looks at which instances are up).
    /// </summary>
    public bool HasExited
    {
        get
        {
            if (_disposed)
            {
                return true;
            }

            try
            {
                return _process.HasExited;
            }
            catch (InvalidOperationException)
            {
                return true;
            }
        }
    }

    public int ExitCode => _process.ExitCode;

    public static ChildProcess Start(string logPath, string dll, params string[] arguments)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        foreach (var argument in arguments)
        {
            info.ArgumentList.Add(argument);
        }

        var log = new StreamWriter(new FileStream(logPath, FileMode.Append, FileAccess.Write, FileShare.ReadWrite)) { AutoFlush = true };
        var process = new Process { StartInfo = info };
        var child = new ChildProcess(process, log);
        process.OutputDataReceived += (_, e) => child.Append(e.Data);
        process.ErrorDataReceived += (_, e) => child.Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return child;
    }

    /// <summary>Sends a signal (9 = SIGKILL, 15 = SIGTERM).</summary>
    public void Signal(int signal)
    {
        if (!HasExited)
        {
            _ = Kill(_process.Id, signal);
        }
    }

    public Task WaitForExitAsync(CancellationToken cancellationToken = default) => _process.WaitForExitAsync(cancellationToken);

    public void Dispose()
    {
        _disposed = true;
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit();
            }
        }
        catch (InvalidOperationException)
        {
        }

        _process.Dispose();
        lock (_log)
        {
            _log.Dispose();
        }
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_log)
        {
            try
            {
                _log.WriteLine(line);
            }
            catch (ObjectDisposedException)
            {
            }
        }
    }

    [LibraryImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static partial int Kill(int pid, int signal);
}
