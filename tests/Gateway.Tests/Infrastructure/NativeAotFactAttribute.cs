namespace Gateway.Tests.Infrastructure;

/// <summary>
/// A fact about the Native AOT build of the gateway: it runs the executable named by <see cref="VariableName"/>, and is
/// skipped, saying why, when the variable is not set (publishing takes minutes, so a plain <c>dotnet test</c> does not).
/// <c>.ci/run</c> publishes the build and sets the variable; a set variable naming a missing file fails the tests.
/// </summary>
public sealed class NativeAotFactAttribute : FactAttribute
{
    public const string VariableName = "GATEWAY_AOT_BINARY";

    public NativeAotFactAttribute()
    {
        if (string.IsNullOrEmpty(Executable))
        {
            Skip = $"{VariableName} is not set: publish the Native AOT build (dotnet publish src/Gateway -c Release -r linux-x64 -p:PublishAot=true -o DIR; .ci/run does) and set {VariableName}=DIR/Gateway to run these tests.";
        }
    }

    /// <summary>The published executable's path, or null.</summary>
    public static string? Executable => Environment.GetEnvironmentVariable(VariableName);
}
