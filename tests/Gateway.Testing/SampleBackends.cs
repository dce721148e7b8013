namespace Gateway.Testing;

/// <summary>The C# sample backends (samples/EchoBackend, samples/KeyValueBackend) started as real processes.</summary>
public static class SampleBackends
{
    /// <summary>Debug or Release: the configuration the tests themselves were built in.</summary>
    public static string Configuration { get; } =
        AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";

    public static string Dll(string project) => RepoPaths.Combine("samples", project, "bin", Configuration, "net10.0", project + ".dll");

    public static Task<ExternalProcess> StartEchoAsync(string socketPath) => StartAsync("EchoBackend", socketPath);

    public static Task<ExternalProcess> StartKeyValueAsync(string socketPath) => StartAsync("KeyValueBackend", socketPath);

    private static async Task<ExternalProcess> StartAsync(string project, string socketPath)
    {
        var dll = Dll(project);
        if (!File.Exists(dll))
        {
            throw new InvalidOperationException($"{dll} is missing: the test project references {project}, so building it builds the sample.");
        }

        var process = ExternalProcess.Start("dotnet", dll, "--Backend:SocketPath=" + socketPath);
        await process.WaitForFileAsync(socketPath);
        return process;
    }
}
