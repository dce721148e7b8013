namespace Gateway.Hosting;

/// <summary>
/// Where the runtime completes the gateway's asynchronous socket operations (Kestrel's connections, raw backends,
/// the OTLP exporter's HTTP): on the socket engine's epoll thread itself, instead of a hop to the thread pool for each
/// completion. Kestrel's transport then fills the request pipe on the epoll thread and the request still runs on the
/// pool (Kestrel's own scheduling is unchanged), so no application code runs on the epoll thread, only the transport's
/// non-blocking receive and send loops. Measured side by side (bench/README.md, issue 20): GET c=32 −8–10 % gateway CPU
/// per request and +5–12 % req/s, POST 4 KiB c=32 −8–24 % CPU.
/// </summary>
/// <remarks>
/// The runtime reads only the environment variable <see cref="Variable"/>, once, when its socket engine starts (the
/// first asynchronous socket operation), so the gateway sets it first thing in <c>Main</c> unless the operator set it:
/// <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=0</c> keeps the runtime's default (a pool hop per completion).
/// It is not set when a host such as WebApplicationFactory runs the gateway in its own process: that process's
/// sockets are the host's to configure.
/// </remarks>
internal static class SocketCompletions
{
    /// <summary>The runtime's switch (System.Net.Sockets, <c>SocketAsyncEngine</c>): "1" = inline completions.</summary>
    public const string Variable = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>Whether the runtime completes socket operations inline (as it reads the variable).</summary>
    public static bool Inline => IsInline(Environment.GetEnvironmentVariable(Variable));

    /// <summary>What <see cref="Variable"/> should be, given its current value: "1" unless the operator chose.</summary>
    public static string Choose(string? current) => string.IsNullOrEmpty(current) ? "1" : current;

    /// <summary>The runtime's reading of the variable: inline only for exactly "1".</summary>
    public static bool IsInline(string? value) => value == "1";

    /// <summary>Sets <see cref="Variable"/> to <see cref="Choose"/>'s value; call before the first socket operation.</summary>
    public static void PreferInline() => Environment.SetEnvironmentVariable(Variable, Choose(Environment.GetEnvironmentVariable(Variable)));
}
