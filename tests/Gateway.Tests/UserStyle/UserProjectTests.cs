using System.Diagnostics;
using System.Text;
using System.Text.RegularExpressions;
using Gateway.Testing;

namespace Gateway.Tests.UserStyle;

/// <summary>
/// samples/UserTests is the test project of docs/testing.md ("Testing your routes with WebApplicationFactory"), written as
/// a user writes it. These tests keep the page and the project in step, and build and run the project as a user has
/// it: outside the repository, so that none of the repository's build settings (warnings as errors, central package
/// versions, the platform attribute) apply.
/// </summary>
public partial class UserProjectTests
{
    private const string SampleDirectory = "samples/UserTests";

    private static readonly TimeSpan BuildAndTestLimit = TimeSpan.FromMinutes(6);

    private static IEnumerable<string> ProjectFiles() =>
        Directory.EnumerateFiles(RepoPaths.Combine(SampleDirectory))
            .Where(static f => f.EndsWith(".cs", StringComparison.Ordinal) || f.EndsWith(".csproj", StringComparison.Ordinal))
            .Select(static f => Path.GetFileName(f))
            .Order(StringComparer.Ordinal);

    [Fact]
    public void TestingPage_ShowsEveryFileOfTheProject_Verbatim()
    {
        var page = File.ReadAllText(RepoPaths.Combine("docs", "testing.md"));
        var shown = new Dictionary<string, string>(StringComparer.Ordinal);
        foreach (Match block in ShownFile().Matches(page))
        {
            shown[block.Groups["name"].Value] = block.Groups["code"].Value;
        }

        Assert.Equal(ProjectFiles(), shown.Keys.Order(StringComparer.Ordinal));
        foreach (var (name, code) in shown)
        {
            var file = File.ReadAllText(RepoPaths.Combine(SampleDirectory, name)).ReplaceLineEndings("\n").TrimEnd('\n');
            Assert.True(file == code.ReplaceLineEndings("\n"), $"docs/testing.md shows {SampleDirectory}/{name} differently from the file: copy the file into the page.");
        }
    }

    [Fact]
    public async Task TheProject_BuildsWithoutWarnings_AndItsTestsPass_OutsideTheRepository()
    {
        var work = Directory.CreateTempSubdirectory("gw-user-project-");
        try
        {
            // Nothing above the copy may bring build settings in (as the repository's Directory.Build.props would).
            for (var dir = work; dir is not null; dir = dir.Parent)
            {
                Assert.False(File.Exists(Path.Combine(dir.FullName, "Directory.Build.props")), $"{dir.FullName} has a Directory.Build.props");
                Assert.False(File.Exists(Path.Combine(dir.FullName, "Directory.Packages.props")), $"{dir.FullName} has a Directory.Packages.props");
            }

            foreach (var name in ProjectFiles())
            {
                var text = File.ReadAllText(RepoPaths.Combine(SampleDirectory, name));
                if (name.EndsWith(".csproj", StringComparison.Ordinal))
                {
                    const string Reference = "\"../../src/Gateway/Gateway.csproj\"";
                    Assert.Contains(Reference, text, StringComparison.Ordinal);
                    text = text.Replace(Reference, $"\"{RepoPaths.Combine("src", "Gateway", "Gateway.csproj")}\"", StringComparison.Ordinal);
                }

                File.WriteAllText(Path.Combine(work.FullName, name), text);
            }

            var expectedTests = ProjectFiles().Sum(name => Regex.Count(File.ReadAllText(RepoPaths.Combine(SampleDirectory, name)), @"^\s*\[Fact\]", RegexOptions.Multiline));
            Assert.True(expectedTests >= 5, $"the project has {expectedTests} tests");

            // The configuration this test run was built with: the referenced gateway is then up to date, not rebuilt.
#if DEBUG
            const string Configuration = "Debug";
#else
            const string Configuration = "Release";
#endif
            var (exitCode, output) = await RunDotnetAsync(work.FullName, "test", "-c", Configuration, "-tl:off", "-nodeReuse:false");

            Assert.True(exitCode == 0, $"dotnet test failed ({exitCode}):\n{output}");
            var warnings = output.Split('\n').Where(static l => l.Contains(": warning ", StringComparison.Ordinal)).Distinct().ToList();
            Assert.True(warnings.Count == 0, "the user's project gets warnings:\n" + string.Join('\n', warnings));
            Assert.Matches($@"Passed!\s+-\s+Failed:\s+0, Passed:\s+{expectedTests}, Skipped:\s+0, Total:\s+{expectedTests}\b", output);
        }
        finally
        {
            work.Delete(recursive: true);
        }
    }

    private static async Task<(int ExitCode, string Output)> RunDotnetAsync(string workingDirectory, params string[] arguments)
    {
        var start = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = workingDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
        };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        // This test runs inside a test host that dotnet test / MSBuild started: their variables are not a user's.
        foreach (var name in start.Environment.Keys.ToList())
        {
            if (name.StartsWith("MSBUILD", StringComparison.OrdinalIgnoreCase) || name.StartsWith("VSTEST", StringComparison.OrdinalIgnoreCase)
                || name.StartsWith("TESTINGPLATFORM", StringComparison.OrdinalIgnoreCase))
            {
                start.Environment.Remove(name);
            }
        }

        start.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        start.Environment["DOTNET_NOLOGO"] = "1";
        using var process = Process.Start(start)!;
        var output = new StringBuilder();
        var lines = new Lock();
        process.OutputDataReceived += (_, e) => { lock (lines) { output.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (lines) { output.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        using var limit = new CancellationTokenSource(BuildAndTestLimit);
        try
        {
            await process.WaitForExitAsync(limit.Token);
        }
        catch (OperationCanceledException)
        {
            process.Kill(entireProcessTree: true);
            await process.WaitForExitAsync();
            lock (lines)
            {
                return (-1, $"timed out after {BuildAndTestLimit}:\n{output}");
            }
        }

        process.WaitForExit(); // drains the redirected streams
        lock (lines)
        {
            return (process.ExitCode, output.ToString());
        }
    }

    [GeneratedRegex(@"^`samples/UserTests/(?<name>[^`]+)`:\n\n```[a-z]*\n(?<code>.*?)\n```$", RegexOptions.Multiline | RegexOptions.Singleline)]
    private static partial Regex ShownFile();
}
