namespace Gateway.Testing;

/// <summary>The C# sample backends (samples/EchoBackend, samples/KeyValueBackend) started as real processes.</summary>
public static class SampleBackends
{
    /// <summary>Debug or Release: the configuration the tests themselves were built in.</summary>
    public static string Configuration { get; } =
        AppContext.BaseDirectory.Contains($"{Path.DirectorySeparatorChar}Release{Path.DirectorySeparatorChar}", StringComparison.Ordinal) ? "Release" : "Debug";

    public static string Dll(string project) => RepoPaths.Combine("samples", project, "bin", Configuration, "net10.0", project + ".dll");

    /// <summary>Starts samples/EchoBackend on <paramref name="socketPath"/>; <paramref name="arguments"/> are more configuration (e.g. <c>--OTEL_SERVICE_NAME=x</c>).</summary>
    public static Task<ExternalProcess> StartEchoAsync(string socketPath, params string[] arguments) => StartAsync("EchoBackend", socketPath, arguments);

    public static Task<ExternalProcess> StartKeyValueAsync(string socketPath) => StartAsync("KeyValueBackend", socketPath, []);

    private static async Task<ExternalProcess> StartAsync(string project, string socketPath, string[] arguments)
    {
        var dll = Dll(project);
        if (!File.Exists(dll))
        {
            throw new InvalidOperationException($"{dll} is missing: the test project references {project}, so building it builds the sample.");
        }

        var process = ExternalProcess.Start("dotnet", [dll, "--Backend:SocketPath=" + socketPath, .. arguments]);
        await process.WaitForFileAsync(socketPath);
        return process;
    }
}
