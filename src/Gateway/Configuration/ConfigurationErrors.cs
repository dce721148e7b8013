namespace Gateway.Configuration;

/// <summary>How configuration errors are listed, at start-up (stderr) and on a rejected reload (the log).</summary>
internal static class ConfigurationErrors
{
    /// <summary>One line per error: <c>  - Gateway:Routes:r:Timeout: 'abc' is not a time span (…).</c></summary>
    public static string Format(IEnumerable<string> errors) => string.Join(Environment.NewLine, errors.Select(e => "  - " + e));
}
