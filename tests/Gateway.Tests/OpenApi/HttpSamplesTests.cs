using System.Diagnostics;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;

namespace Gateway.Tests.OpenApi;

/// <summary>
/// http-samples/ against a live gateway (Kestrel on a Unix socket, demo echo backend on): every request of every
/// .http file gets the status it states, the curl script passes, and every documented operation has a sample.
/// </summary>
public class HttpSamplesTests
{
    private static string SamplesDirectory => RepoPaths.Combine("http-samples");

    private static GatewayFactory StartGateway(TempSocketDirectory dir) =>
        new GatewayFactory(dir, new Dictionary<string, string?> { ["Gateway:DemoBackend:Enabled"] = "true" }).StartKestrel();

    private static IEnumerable<HttpSample> AllSamples() =>
        Directory.GetFiles(SamplesDirectory, "*.http").Order(StringComparer.Ordinal)
            .SelectMany(f => HttpSampleFile.Parse(f, new Dictionary<string, string> { ["host"] = "http://localhost" }));

    [Fact]
    public async Task EveryHttpFileRequest_GetsItsExpectedStatus()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = StartGateway(dir);
        using var client = factory.CreateGatewayClient();
        var samples = AllSamples().ToList();
        Assert.True(samples.Count >= 10, $"only {samples.Count} samples parsed");

        var failures = new List<string>();
        foreach (var sample in samples)
        {
            using var request = new HttpRequestMessage(new HttpMethod(sample.Method), sample.Url);
            if (sample.Body is not null)
            {
                request.Content = new StringContent(sample.Body);
                request.Content.Headers.ContentType = null;
            }

            foreach (var (name, value) in sample.Headers)
            {
                if (!request.Headers.TryAddWithoutValidation(name, value))
                {
                    request.Content?.Headers.TryAddWithoutValidation(name, value);
                }
            }

            using var response = await client.SendAsync(request);
            if ((int)response.StatusCode != sample.ExpectedStatus)
            {
                failures.Add($"{sample.File} '{sample.Name}': {sample.Method} {sample.Url} expected {sample.ExpectedStatus}, got {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
            }
        }

        Assert.Empty(failures);
    }

    [Fact]
    public async Task CurlScript_PassesAgainstALiveGateway()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = StartGateway(dir);
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.ArgumentList.Add(Path.Combine(SamplesDirectory, "curl-samples.sh"));
        info.ArgumentList.Add(factory.SocketPath);

        using var process = Process.Start(info)!;
        var output = process.StandardOutput.ReadToEndAsync();
        var error = process.StandardError.ReadToEndAsync();
        await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));

        var text = await output + await error;
        Assert.True(process.ExitCode == 0, text);
        Assert.Equal(AllSamples().Count(), Regex.Count(text, "^ok ", RegexOptions.Multiline));
    }

    [Fact]
    public async Task EveryDocumentedOperation_HasASample()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, new Dictionary<string, string?> { ["Gateway:DemoBackend:Enabled"] = "true" });
        using var client = factory.CreateClient();
        var document = JsonNode.Parse(await client.GetStringAsync("/openapi/v1.json"))!;
        var samples = AllSamples().Select(s => (s.Method, Path: new Uri(s.Url).AbsolutePath)).ToList();

        var missing = new List<string>();
        foreach (var (path, item) in document["paths"]!.AsObject())
        {
            var pattern = new Regex("^" + Regex.Replace(Regex.Escape(path), @"\\\{\w+}", ".+") + "$");
            foreach (var (method, _) in item!.AsObject())
            {
                if (!samples.Any(s => s.Method.Equals(method, StringComparison.OrdinalIgnoreCase) && pattern.IsMatch(s.Path)))
                {
                    missing.Add($"{method.ToUpperInvariant()} {path}");
                }
            }
        }

        Assert.Empty(missing);
    }
}
