using System.Net;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.Configuration;

/// <summary>
/// The configuration files of the real process, edited while it runs: <c>--config</c>, <c>GATEWAY_CONFIG</c>, and in
/// Development the project's <c>appsettings.json</c> (here a copy, named by the test hook
/// <c>GATEWAY_DEVELOPMENT_PROJECT_DIRECTORY</c>, so the real file is never edited).
/// </summary>
public class ConfigurationFileTests
{
    private const string NoRoutes = """{ "Gateway": { } }""";

    /// <summary>A route to the demo echo backend (enabled: the file declares no backend).</summary>
    private const string ExtraRoute = """{ "Gateway": { "Routes": { "extra": { "Path": "/extra/{**rest}", "Backend": "echo" } } } }""";

    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);

    [Fact]
    public async Task ConfigSwitch_FileIsWatched_AnAddedRouteAnswers_InvalidJsonIsLoggedAndTheRouteStays()
    {
        using var dir = new TempSocketDirectory();
        var config = dir.Socket("gateway.json");
        await File.WriteAllTextAsync(config, NoRoutes);
        var socket = dir.Socket("gw.sock");

        await using var gateway = await StartHealthyAsync(socket, [], ["--config", config]);
        using var client = UnixHttp.CreateClient(socket);
        Assert.Contains($"Configuration files (watched for changes, later ones override earlier ones): ", gateway.Output, StringComparison.Ordinal);
        Assert.Contains(", " + config, gateway.Output, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/extra/a")).StatusCode);

        await File.WriteAllTextAsync(config, ExtraRoute);
        await UntilAnswersAsync(gateway, client, "/extra/a", "GET /extra/a");

        await File.WriteAllTextAsync(config, """{ "Gateway": { "Routes": """);
        await Eventually.UntilAsync(() => gateway.Output.Contains($"Configuration file {config} changed but is not valid JSON", StringComparison.Ordinal), Timeout, TimeSpan.FromMilliseconds(50));
        using var response = await client.GetAsync("/extra/b");
        Assert.Equal("GET /extra/b\n", await response.Content.ReadAsStringAsync());

        await File.WriteAllTextAsync(config, NoRoutes);
        await Eventually.UntilAsync(
            () =>
            {
                using var gone = client.GetAsync("/extra/c").GetAwaiter().GetResult();
                return gone.StatusCode == HttpStatusCode.NotFound;
            },
            Timeout,
            TimeSpan.FromMilliseconds(50));
    }

    [Fact]
    public async Task GatewayConfigVariable_FileIsWatched_AnAddedRouteAnswers()
    {
        using var dir = new TempSocketDirectory();
        var config = dir.Socket("from-variable.json");
        await File.WriteAllTextAsync(config, NoRoutes);
        var socket = dir.Socket("gw.sock");

        await using var gateway = await StartHealthyAsync(socket, ["GATEWAY_CONFIG=" + config], []);
        using var client = UnixHttp.CreateClient(socket);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/extra/a")).StatusCode);

        await File.WriteAllTextAsync(config, ExtraRoute);
        await UntilAnswersAsync(gateway, client, "/extra/a", "GET /extra/a");
    }

    [Fact]
    public async Task Development_TheProjectsAppsettingsIsReadAndWatched()
    {
        using var dir = new TempSocketDirectory();
        var project = Directory.CreateDirectory(dir.Socket("project")).FullName;
        var appsettings = Path.Combine(project, "appsettings.json");
        await File.WriteAllTextAsync(appsettings, NoRoutes);
        var socket = dir.Socket("gw.sock");

        await using var gateway = await StartHealthyAsync(socket, ["ASPNETCORE_ENVIRONMENT=Development", "GATEWAY_DEVELOPMENT_PROJECT_DIRECTORY=" + project], []);
        using var client = UnixHttp.CreateClient(socket);
        Assert.Contains($"Configuration files (watched for changes, later ones override earlier ones): {appsettings}, {Path.Combine(project, "appsettings.Development.json")} (absent)", gateway.Output, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/extra/a")).StatusCode);

        await File.WriteAllTextAsync(appsettings, ExtraRoute);
        await UntilAnswersAsync(gateway, client, "/extra/a", "GET /extra/a");
    }

    [Fact]
    public async Task Production_IgnoresTheProjectDirectory()
    {
        using var dir = new TempSocketDirectory();
        var project = Directory.CreateDirectory(dir.Socket("project")).FullName;
        await File.WriteAllTextAsync(Path.Combine(project, "appsettings.json"), ExtraRoute);
        var socket = dir.Socket("gw.sock");

        await using var gateway = await StartHealthyAsync(socket, ["ASPNETCORE_ENVIRONMENT=Production", "GATEWAY_DEVELOPMENT_PROJECT_DIRECTORY=" + project], []);
        using var client = UnixHttp.CreateClient(socket);

        Assert.Contains($"Configuration files (watched for changes, later ones override earlier ones): {Path.Combine(AppContext.BaseDirectory, "appsettings.json")}", gateway.Output, StringComparison.Ordinal);
        Assert.Equal(HttpStatusCode.NotFound, (await client.GetAsync("/extra/a")).StatusCode);
    }

    [Fact]
    public async Task ConfigSwitch_MissingFile_IsAStartupErrorNamingTheSwitchAndThePath()
    {
        using var dir = new TempSocketDirectory();
        var config = dir.Socket("absent.json");

        await using var gateway = GatewayProcess.Start("--config", config, "--Gateway:Listen:UnixSocket=" + dir.Socket("gw.sock"));

        Assert.Equal(2, await gateway.WaitForExitAsync(Timeout));
        Assert.Contains($"Gateway: cannot start: --config: the configuration file {config} does not exist.", gateway.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", gateway.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task GatewayConfigVariable_InvalidJson_IsAStartupErrorNamingTheVariableAndThePath()
    {
        using var dir = new TempSocketDirectory();
        var config = dir.Socket("broken.json");
        await File.WriteAllTextAsync(config, """{ "Gateway": """);

        await using var gateway = ExternalProcess.Start("env", "GATEWAY_CONFIG=" + config, "dotnet", GatewayProcess.Dll, "--Gateway:Listen:UnixSocket=" + dir.Socket("gw.sock"));

        Assert.Equal(2, await gateway.WaitForExitAsync(Timeout));
        Assert.Contains($"Gateway: cannot start: GATEWAY_CONFIG: the configuration file {config} is not valid JSON: ", gateway.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", gateway.Output, StringComparison.Ordinal);
    }

    private static async Task UntilAnswersAsync(ExternalProcess gateway, HttpClient client, string path, string expected)
    {
        string? body = null;
        var answered = Eventually.UntilAsync(
            () =>
            {
                using var response = client.GetAsync(path).GetAwaiter().GetResult();
                body = response.IsSuccessStatusCode ? response.Content.ReadAsStringAsync().GetAwaiter().GetResult().TrimEnd('\n') : null;
                return body == expected;
            },
            Timeout,
            TimeSpan.FromMilliseconds(50));
        try
        {
            await answered;
        }
        catch (Xunit.Sdk.XunitException ex)
        {
            throw new Xunit.Sdk.XunitException($"{path} did not answer '{expected}' (last: '{body}'):\n{gateway.Output}", ex);
        }

        Assert.Equal(expected, body);
    }

    /// <summary>Starts <c>env VARIABLES dotnet Gateway.dll ARGS</c> and waits until its socket answers /healthz.</summary>
    private static async Task<ExternalProcess> StartHealthyAsync(string socket, string[] environment, string[] arguments)
    {
        var process = ExternalProcess.Start("env", [.. environment, "dotnet", GatewayProcess.Dll, "--Gateway:Listen:UnixSocket=" + socket, "--Logging:LogLevel:Default=Information", .. arguments]);
        try
        {
            await process.WaitForFileAsync(socket);
            using var client = UnixHttp.CreateClient(socket);
            await Eventually.UntilAsync(
                () =>
                {
                    try
                    {
                        using var response = client.GetAsync("/healthz").GetAwaiter().GetResult();
                        return response.IsSuccessStatusCode;
                    }
                    catch (HttpRequestException)
                    {
                        return false;
                    }
                },
                Timeout,
                TimeSpan.FromMilliseconds(25));
            return process;
        }
        catch
        {
            await process.DisposeAsync();
            throw;
        }
    }
}
