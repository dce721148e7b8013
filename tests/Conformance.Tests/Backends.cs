using System.Reflection;
using Gateway.Testing;
using Xunit.Sdk;

namespace Gateway.Conformance.Tests;

/// <summary>How to start a backend under test: a command line with <c>{socket}</c> for the socket path.</summary>
/// <param name="Name">The name used in test data.</param>
/// <param name="FileName">The program.</param>
/// <param name="Arguments">Its arguments, run from the repository root.</param>
/// <param name="AllowedSkips">Checks this backend may skip (optional routes it does not offer).</param>
/// <param name="NotReadyReason">Why the backend cannot be tested yet, or null.</param>
public sealed record BackendLaunch(string Name, string FileName, string[] Arguments, string[] AllowedSkips, Func<string?> NotReadyReason)
{
    /// <summary>The backends the kit runs against. Adding a backend is one line here and one [Backend] line.</summary>
    public static IReadOnlyDictionary<string, BackendLaunch> All { get; } = new[]
    {
        new BackendLaunch("python", "python3", ["samples/python/backend.py", "--socket", "{socket}"], [], () => null),
        new BackendLaunch("csharp-echo", "dotnet", [EchoBackendDll, "--Backend:SocketPath={socket}"], ["at-most-once-counter"], EchoBackendNotReady),
    }.ToDictionary(b => b.Name);

    /// <summary>The C# sample, built with this test project (ProjectReference) in the same configuration.</summary>
    private static string EchoBackendDll => SampleBackends.Dll("EchoBackend");

    private static string? EchoBackendNotReady() =>
        File.Exists(EchoBackendDll) ? null : $"{EchoBackendDll} was not built";
}

/// <summary>Theory data naming one backend of <see cref="BackendLaunch.All"/>; skipped while the backend is not ready.</summary>
[AttributeUsage(AttributeTargets.Method, AllowMultiple = true)]
public sealed class BackendAttribute : DataAttribute
{
    public BackendAttribute(string name)
    {
        Name = name;
        Skip = BackendLaunch.All.TryGetValue(name, out var launch) ? launch.NotReadyReason() : $"unknown backend '{name}'";
    }

    public string Name { get; }

    public override IEnumerable<object[]> GetData(MethodInfo testMethod) => [[Name]];
}
