namespace Gateway.BrowserTests;

/// <summary>A fact that is skipped, saying why, when Debian's chromium is not installed (CI installs it).</summary>
public sealed class ChromiumFactAttribute : FactAttribute
{
    public const string ExecutablePath = "/usr/bin/chromium";

    public ChromiumFactAttribute()
    {
        if (!File.Exists(ExecutablePath))
        {
            Skip = $"{ExecutablePath} is absent: install Debian's chromium package (apt-get install chromium; .ci/run does) to run the browser tests.";
        }
    }
}
