using System.Text.Json;
using Gateway.Testing;

namespace Gateway.Tests.Build;

/// <summary>
/// Packages of one family must resolve to one version. The OpenTelemetry SDK's packages (the API, the SDK, hosting and
/// the exporters, released together from opentelemetry-dotnet) share internal types: a Console exporter at 1.20.1 pulled
/// the SDK to 1.20.1 under an OTLP exporter built against 1.20.0, and every metric batch with a histogram was dropped
/// (MissingFieldException) while traces, and the in-memory exporter tests, kept working. This reads what NuGet
/// resolved for every project of the repository (obj/project.assets.json, written by restore) and fails on a mix.
/// </summary>
public class PackageFamilyTests
{
    /// <summary>The packages released together, in lock-step, from open-telemetry/opentelemetry-dotnet (not -contrib).</summary>
    internal static bool IsOpenTelemetryCore(string package) =>
        package is "OpenTelemetry" or "OpenTelemetry.Api" or "OpenTelemetry.Api.ProviderBuilderExtensions" or "OpenTelemetry.Extensions.Hosting"
        || package.StartsWith("OpenTelemetry.Exporter.", StringComparison.Ordinal);

    [Fact]
    public void OpenTelemetryCorePackages_ResolveToOneVersion_AcrossEveryProject()
    {
        var assets = AssetsFiles();
        Assert.NotEmpty(assets);
        Assert.Contains(assets, a => a.Contains(Path.Combine("src", "Gateway", "obj"), StringComparison.Ordinal));

        var resolved = assets.SelectMany(file => ResolvedPackages(File.ReadAllText(file)).Select(p => (File: file, p.Name, p.Version)))
            .Where(p => IsOpenTelemetryCore(p.Name))
            .ToList();

        Assert.Contains(resolved, p => p.Name == "OpenTelemetry");
        var versions = resolved.Select(p => p.Version).Distinct(StringComparer.Ordinal).ToList();
        Assert.True(versions.Count == 1, "OpenTelemetry packages resolve to mixed versions:\n" + string.Join('\n',
            resolved.Select(p => $"  {p.Name} {p.Version} ({Path.GetRelativePath(RepoPaths.Root, p.File)})").Distinct(StringComparer.Ordinal).Order(StringComparer.Ordinal)));
    }

    [Fact]
    public void ResolvedPackages_ReadsNameAndVersionOfEveryPackageLibrary_SoAMixIsSeen()
    {
        // The shape restore writes; a project reference ("type": "project") is not a package.
        const string assets = """
            { "version": 3, "libraries": {
                "OpenTelemetry/1.20.1": { "type": "package" },
                "OpenTelemetry.Exporter.OpenTelemetryProtocol/1.20.0": { "type": "package" },
                "Gateway.Ipc/1.0.0": { "type": "project" } } }
            """;

        var packages = ResolvedPackages(assets);

        Assert.Equal([("OpenTelemetry", "1.20.1"), ("OpenTelemetry.Exporter.OpenTelemetryProtocol", "1.20.0")], packages);
        Assert.Equal(2, packages.Where(p => IsOpenTelemetryCore(p.Name)).Select(p => p.Version).Distinct().Count());
        Assert.False(IsOpenTelemetryCore("OpenTelemetry.Instrumentation.AspNetCore"));
    }

    internal static List<(string Name, string Version)> ResolvedPackages(string assetsJson)
    {
        using var document = JsonDocument.Parse(assetsJson);
        var packages = new List<(string, string)>();
        foreach (var library in document.RootElement.GetProperty("libraries").EnumerateObject())
        {
            if (library.Value.GetProperty("type").GetString() != "package")
            {
                continue;
            }

            var slash = library.Name.IndexOf('/', StringComparison.Ordinal);
            packages.Add((library.Name[..slash], library.Name[(slash + 1)..]));
        }

        return packages;
    }

    private static List<string> AssetsFiles() =>
        [.. Directory.EnumerateFiles(RepoPaths.Root, "project.assets.json", SearchOption.AllDirectories)
            .Where(f => f.Contains($"{Path.DirectorySeparatorChar}obj{Path.DirectorySeparatorChar}", StringComparison.Ordinal)
                && !f.Contains($"{Path.DirectorySeparatorChar}.git{Path.DirectorySeparatorChar}", StringComparison.Ordinal))];
}
