using Gateway.Testing;

namespace Gateway.Tests.Infrastructure;

/// <summary>The gateway as a real process (<c>dotnet Gateway.dll</c>), as a user or a container runs it.</summary>
public static class GatewayProcess
{
    public static string Dll => Path.Combine(AppContext.BaseDirectory, "Gateway.dll");

    public static ExternalProcess Start(params string[] arguments) => ExternalProcess.Start("dotnet", [Dll, .. arguments]);

    /// <summary>Starts the gateway and waits until its socket answers /healthz.</summary>
    public static Task<ExternalProcess> StartHealthyAsync(string socketPath, params string[] arguments) => StartHealthyAsync(socketPath, null, arguments);

    /// <summary>Starts the gateway with extra environment variables and waits until its socket answers /healthz.</summary>
    public static Task<ExternalProcess> StartHealthyAsync(string socketPath, IReadOnlyDictionary<string, string>? environment, params string[] arguments) =>
        WaitHealthyAsync(ExternalProcess.Start("dotnet", environment, [Dll, .. CommonArguments(socketPath), .. arguments]), socketPath);

    /// <summary>
    /// Starts a published gateway executable (a Native AOT build, <see cref="NativeAotFactAttribute"/>) and waits until its
    /// socket answers /healthz.
    /// </summary>
    public static Task<ExternalProcess> StartExecutableHealthyAsync(string executable, string socketPath, IReadOnlyDictionary<string, string>? environment, params string[] arguments) =>
        WaitHealthyAsync(ExternalProcess.Start(executable, environment, [.. CommonArguments(socketPath), .. arguments]), socketPath);

    private static string[] CommonArguments(string socketPath) => ["--Gateway:Listen:UnixSocket=" + socketPath, "--Logging:LogLevel:Default=Information"];

    private static async Task<ExternalProcess> WaitHealthyAsync(ExternalProcess process, string socketPath)
    {
        await process.WaitForFileAsync(socketPath);
        using var client = UnixHttp.CreateClient(socketPath);
        var started = System.Diagnostics.Stopwatch.StartNew();
        while (true)
        {
            try
            {
                using var response = await client.GetAsync("/healthz");
                if (response.IsSuccessStatusCode)
                {
                    return process;
                }
            }
            catch (HttpRequestException) when (!process.HasExited && started.Elapsed < TimeSpan.FromSeconds(120))
            {
            }

            if (process.HasExited || started.Elapsed >= TimeSpan.FromSeconds(120))
            {
                throw new InvalidOperationException("The gateway did not become healthy:\n" + process.Output);
            }

            await Task.Delay(25); // bounded readiness poll
        }
    }
}
