namespace Gateway.Hosting;

/// <summary>
/// Where the runtime completes the gateway's asynchronous socket operations (Kestrel's connections, raw backends,
/// the OTLP exporter's HTTP): on the socket engine's epoll thread itself, instead of a hop to the thread pool for each
/// completion. Kestrel's transport then fills the request pipe on the epoll thread and the request still runs on the
/// pool (Kestrel's own scheduling is unchanged), so no application code runs on the epoll thread, only the transport's
/// non-blocking receive and send loops. Measured against the runtime's default in 13 paired rounds (bench/README.md, issue 20):
/// −9 % gateway CPU per GET and +11 % req/s at 32 connections, −10 % and +8 % for a 4 KiB POST, −12.5 % p50 at 1.
/// </summary>
/// <remarks>
/// The runtime reads only the environment variable <see cref="Variable"/>, once, when its socket engine starts (the
/// first asynchronous socket operation), so the gateway sets it first thing in <c>Main</c> unless the operator set it:
/// <c>DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS=0</c> keeps the runtime's default (a pool hop per completion).
/// It is not set when a host such as WebApplicationFactory runs the gateway inside the host's own process: that
/// process's sockets are the host's to configure.
/// <para>
/// With inline completions the runtime starts one epoll thread per core (<see cref="ThreadCountVariable"/> unset), each
/// doing the completions' work itself, so together they can take every core from the thread pool that runs the requests.
/// The gateway therefore also sets <see cref="ThreadCountVariable"/> to half the cores (at least one) unless the operator
/// set it. Measured on 2 cores (one thread against two; bench/README.md, "Issue 20: socket engine threads"): raw mode GET c=32
/// −30 % gateway CPU per request and +25–40 % req/s; spec mode the same or slightly better (GET c=32 51.5 against 53.2 µs,
/// c=1 p50 107 against 117 µs). Half the cores on larger machines is an extrapolation, not a measurement.
/// </para>
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

    /// <summary>The runtime's count of socket engine (epoll) threads; read once, with <see cref="Variable"/>.</summary>
    public const string ThreadCountVariable = "DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT";

    /// <summary>
    /// What <see cref="ThreadCountVariable"/> should be: the operator's value if set; otherwise, with inline completions,
    /// half of <paramref name="processorCount"/> (at least 1); otherwise unset (null: the runtime's own default).
    /// </summary>
    public static string? ChooseThreadCount(string? current, bool inline, int processorCount) =>
        !string.IsNullOrEmpty(current) ? current
        : inline ? Math.Max(1, processorCount / 2).ToString(System.Globalization.CultureInfo.InvariantCulture)
        : null;

    /// <summary>
    /// Why an operator's <see cref="ThreadCountVariable"/> cannot be used, or null when it can (or is unset). The runtime
    /// takes a whole number and silently ignores anything else; 0 gives it no socket engine at all, and every socket
    /// operation then fails with a DivideByZeroException (the gateway would run and answer nothing).
    /// </summary>
    public static string? ThreadCountError(string? value) =>
        string.IsNullOrEmpty(value) || (uint.TryParse(value, System.Globalization.NumberStyles.Integer, System.Globalization.CultureInfo.InvariantCulture, out var count) && count >= 1)
            ? null
            : $"{ThreadCountVariable}='{value}' is not a number of socket engine threads: set a whole number of at least 1, or unset it to let the gateway choose (half the cores).";

    /// <summary>
    /// Sets <see cref="Variable"/> to <see cref="Choose"/>'s value and <see cref="ThreadCountVariable"/> to
    /// <see cref="ChooseThreadCount"/>'s; call before the first socket operation.
    /// </summary>
    /// <exception cref="InvalidOperationException">The operator's <see cref="ThreadCountVariable"/> is not usable (<see cref="ThreadCountError"/>).</exception>
    public static void PreferInline()
    {
        var threads = Environment.GetEnvironmentVariable(ThreadCountVariable);
        if (ThreadCountError(threads) is { } error)
        {
            throw new InvalidOperationException(error);
        }

        Environment.SetEnvironmentVariable(Variable, Choose(Environment.GetEnvironmentVariable(Variable)));
        Environment.SetEnvironmentVariable(ThreadCountVariable, ChooseThreadCount(threads, Inline, Environment.ProcessorCount));
    }
}
