using System.Diagnostics;

namespace Gateway.Testing;

/// <summary>The classic datagram daemons of samples/raw, started as real processes.</summary>
public static class RawServers
{
    private static readonly Lazy<string> CompiledC = new(CompileC, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>samples/raw/python/echo_server.py (socketserver.UnixDatagramServer): replies with the bytes upper-cased.</summary>
    public static async Task<ExternalProcess> StartPythonAsync(string socketPath)
    {
        var process = ExternalProcess.Start("python3", RepoPaths.Combine("samples", "raw", "python", "echo_server.py"), "--socket", socketPath);
        await process.WaitForFileAsync(socketPath);
        return process;
    }

    /// <summary>samples/raw/c/echo_server.c compiled with cc (once per test run): same behaviour.</summary>
    public static async Task<ExternalProcess> StartCAsync(string socketPath)
    {
        var process = ExternalProcess.Start(CompiledC.Value, "--socket", socketPath);
        await process.WaitForFileAsync(socketPath);
        return process;
    }

    private static string CompileC()
    {
        var output = Path.Combine(Path.GetTempPath(), $"gw-raw-echo-{Environment.ProcessId}");
        var info = new ProcessStartInfo("cc")
        {
            ArgumentList = { "-O2", "-Wall", "-Wextra", "-Werror", "-o", output, RepoPaths.Combine("samples", "raw", "c", "echo_server.c") },
            RedirectStandardError = true,
        };
        using var cc = Process.Start(info)!;
        var errors = cc.StandardError.ReadToEnd();
        cc.WaitForExit();
        if (cc.ExitCode != 0)
        {
            throw new InvalidOperationException("cc failed:\n" + errors);
        }

        AppDomain.CurrentDomain.ProcessExit += (_, _) => File.Delete(output);
        return output;
    }
}
