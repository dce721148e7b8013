namespace Gateway.Testing;

/// <summary>A private temporary directory for one test's socket files, removed on dispose.</summary>
public sealed class TempSocketDirectory : IDisposable
{
    public TempSocketDirectory()
    {
        // Keep paths short: sun_path holds 107 bytes.
        Path = Directory.CreateTempSubdirectory("gw-").FullName;
        File.SetUnixFileMode(Path, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    public string Path { get; }

    /// <summary>A path for a socket named <paramref name="name"/> inside the directory.</summary>
    public string Socket(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (DirectoryNotFoundException)
        {
        }
    }
}
