namespace Gateway.Configuration;

/// <summary>The zero-configuration demo: an in-process echo backend and its route.</summary>
internal static class DemoDefaults
{
    public const string BackendName = "echo";
    public const string RouteName = "echo";
    public const string RoutePath = "/echo/{**rest}";

    /// <summary>Adds the demo backend and route when the demo is enabled, at the configured or default paths.</summary>
    public static void Apply(GatewayOptions options) => Apply(options, null);

    public static bool IsEnabled(GatewayOptions options) => options.DemoBackend.Enabled ?? options.Backends.Count == 0;

    public static string SocketPath(GatewayOptions options) =>
        options.DemoBackend.SocketPath
        ?? Path.Combine(Path.GetDirectoryName(options.Listen.UnixSocket) ?? "/tmp", "demo-echo.sock");

    /// <summary>
    /// Adds the demo backend and route when the demo is enabled (post-configuration). <paramref name="privateDirectory"/>,
    /// when given, yields the directory for the demo socket if no <c>Gateway:DemoBackend:SocketPath</c> is configured
    /// (in memory under TestServer: see <see cref="Hosting.InMemorySocketDirectory"/>).
    /// </summary>
    public static void Apply(GatewayOptions options, Func<string?>? privateDirectory)
    {
        // Decide once: after the demo backend is added, "no backend configured" is no longer true.
        options.DemoBackend.Enabled = IsEnabled(options) && !string.IsNullOrWhiteSpace(options.Listen.UnixSocket);
        if (options.DemoBackend.Enabled != true)
        {
            return;
        }

        if (options.DemoBackend.SocketPath is null && privateDirectory?.Invoke() is { } directory)
        {
            options.DemoBackend.SocketPath = Path.Combine(directory, "demo-echo.sock");
        }

        options.Backends.TryAdd(BackendName, new BackendOptions
        {
            Instances = [SocketPath(options)],
            Timeout = TimeSpan.FromSeconds(10),

            // The demo echo accepts streamed uploads (held in memory at most 1 MiB at a time): show them off up to 1 GiB.
            MaxBodySize = 1L << 30,
        });
        options.Routes.TryAdd(RouteName, new RouteOptions
        {
            Path = RoutePath,
            Backend = BackendName,
            Summary = "Echo (in-process demo backend)",
            Description = "Replies with the request body, or with \"METHOD target\" when the body is empty. "
                + "Headers x-echo-delay-ms and x-echo-status delay the reply and choose its status; x-echo-stream-count (with x-echo-stream-interval-ms, x-echo-stream-chunk-bytes) streams N chunks, x-echo-stream: 1 streams the body back. Bodies over 1 MiB (up to 1 GiB) are streamed to the echo as they arrive.",
        });
    }
}
