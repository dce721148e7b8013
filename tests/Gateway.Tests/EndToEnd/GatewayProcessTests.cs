using System.Net;
using System.Net.Sockets;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Gateway.Tests.EndToEnd;

/// <summary>The gateway as a process: signals, socket-file lifecycle, start-up errors.</summary>
public class GatewayProcessTests(ITestOutputHelper output)
{
    private const int SigTerm = 15;
    private const int SigKill = 9;

    [Fact]
    public async Task Sigterm_DuringLoad_DrainsEveryInFlightRequest_WithItsOwnReply_RefusesNewConnections_ExitsZero()
    {
        const int inFlight = 24;
        using var dir = new TempSocketDirectory();
        var entered = 0;
        var allEntered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (request, _) =>
        {
            // Held until the test releases it: no sleeps, the test decides when the work finishes.
            if (Interlocked.Increment(ref entered) == inFlight)
            {
                allEntered.TrySetResult();
            }

            await release.Task;
            return Ipc.Backend.BackendResponse.Text("finished " + request.Path);
        });
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartHealthyAsync(socket, "--Gateway:Backends:b:Instances:0=" + backend.SocketPath, "--Gateway:Routes:r:Path=/slow/{n}", "--Gateway:Routes:r:Backend=b", "--Gateway:DrainTimeout=00:01:00");
        using var client = UnixHttp.CreateClient(socket);
        var requests = Enumerable.Range(0, inFlight).Select(n => client.GetAsync($"/slow/{n}")).ToArray();
        await allEntered.Task.WaitAsync(TimeSpan.FromSeconds(120));

        await gateway.SignalAsyncNoWait(SigTerm);

        // Shutdown has begun once the listener is gone: a new connection is refused (bounded poll, not a timing assertion).
        await Eventually.UntilAsync(() => !CanConnect(socket), TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(10));
        Assert.DoesNotContain(requests, r => r.IsCompleted);

        release.SetResult();
        var responses = await Task.WhenAll(requests);
        var drained = 0;
        for (var n = 0; n < inFlight; n++)
        {
            using var response = responses[n];
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
            Assert.Equal($"finished /slow/{n}", await response.Content.ReadAsStringAsync());
            drained++;
        }

        // Exit 0 with every request answered: had the drain time run out, Kestrel would have closed their connections
        // (Sigterm_RequestHeldPastTheDrainTime_...), so all of them finishing proves they finished within it.
        var exitCode = await gateway.WaitForExitAsync();
        output.WriteLine($"SIGTERM with {inFlight} requests in flight: {drained} drained with their replies, new connections refused, exit code {exitCode}");
        Assert.Equal(inFlight, drained);
        Assert.Equal(0, exitCode);
        Assert.False(Path.Exists(socket), "the socket file is removed on shutdown");
    }

    [Fact]
    public async Task Sigkill_LeavesTheSocketFile_WhichTheNextStartTakesOver()
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("gw.sock");
        await using (var killed = await GatewayProcess.StartHealthyAsync(socket))
        {
            await killed.SignalAsync(SigKill);
        }

        Assert.True(Path.Exists(socket), "SIGKILL leaves the socket file behind");
        Assert.False(CanConnect(socket), "nothing listens on it any more");

        await using var next = await GatewayProcess.StartHealthyAsync(socket);

        Assert.Contains("Removed a stale socket file at " + socket, next.Output, StringComparison.Ordinal);
        using var client = UnixHttp.CreateClient(socket);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/healthz")).StatusCode);
    }

    [Fact]
    public async Task Sigterm_StopsAccepting_DrainsTheInFlightRequest_RemovesTheSocket()
    {
        using var dir = new TempSocketDirectory();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var release = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (request, _) =>
        {
            entered.TrySetResult();
            await release.Task;
            return Ipc.Backend.BackendResponse.Text("finished");
        });
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartHealthyAsync(socket, "--Gateway:Backends:b:Instances:0=" + backend.SocketPath, "--Gateway:Routes:r:Path=/slow", "--Gateway:Routes:r:Backend=b", "--Gateway:DrainTimeout=00:00:30");
        using var client = UnixHttp.CreateClient(socket);

        var inFlight = client.GetAsync("/slow");
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(120));
        await gateway.SignalAsyncNoWait(SigTerm);

        // New connections are refused once shutdown has begun (bounded readiness poll, not a timing assertion).
        await Eventually.UntilAsync(() => !CanConnect(socket), TimeSpan.FromSeconds(10), TimeSpan.FromMilliseconds(10));
        Assert.False(inFlight.IsCompleted);

        release.SetResult();
        using var response = await inFlight;
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("finished", await response.Content.ReadAsStringAsync());
        Assert.Equal(0, await gateway.WaitForExitAsync());
        Assert.False(File.Exists(socket) || Path.Exists(socket), "the socket file is removed on shutdown");
    }

    [Fact]
    public async Task Sigterm_RequestHeldPastTheDrainTime_ItsConnectionIsClosedWithoutAResponse_AndTheBackendGetsCancel()
    {
        using var dir = new TempSocketDirectory();
        var entered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var cancelled = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), async (request, token) =>
        {
            entered.TrySetResult();
            token.Register(() => cancelled.TrySetResult());
            await Task.Delay(Timeout.Infinite, token);
            return Ipc.Backend.BackendResponse.Text("never");
        });
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartHealthyAsync(socket, "--Gateway:Backends:b:Instances:0=" + backend.SocketPath, "--Gateway:Routes:r:Path=/stuck", "--Gateway:Routes:r:Backend=b", "--Gateway:DrainTimeout=00:00:01");
        // A raw connection (HttpClient would transparently retry on a new connection and report that failure instead).
        using var connection = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        await connection.ConnectAsync(new UnixDomainSocketEndPoint(socket));
        await connection.SendAsync("GET /stuck HTTP/1.1\r\nHost: localhost\r\n\r\n"u8.ToArray());
        await entered.Task.WaitAsync(TimeSpan.FromSeconds(120));
        await gateway.SignalAsyncNoWait(SigTerm);

        var exitCode = await gateway.WaitForExitAsync();
        await cancelled.Task.WaitAsync(TimeSpan.FromSeconds(120)); // the backend got CANCEL for the abandoned request
        // Not a status: when the drain time runs out Kestrel aborts the connections still busy, so the client sees the
        // connection close (EOF or reset) before any byte of a response; it knows the request was not answered.
        var received = await ReadToEndAsync(connection);
        output.WriteLine($"held past the drain time: connection closed after {received} response bytes; exit code {exitCode}");
        Assert.Equal(0, received);
        Assert.Equal(0, exitCode);
    }

    [Fact]
    public async Task SecondGateway_OnALiveSocket_RefusesWithAMessageNamingThePath()
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("gw.sock");
        await using var first = await GatewayProcess.StartHealthyAsync(socket);

        await using var second = GatewayProcess.Start("--Gateway:Listen:UnixSocket=" + socket);
        var exitCode = await second.WaitForExitAsync();

        Assert.Equal(2, exitCode);
        Assert.Contains($"Cannot listen on {socket} (Gateway:Listen:UnixSocket): a socket at this path is in use (by this or another process).", second.Output, StringComparison.Ordinal);
        using var client = UnixHttp.CreateClient(socket);
        Assert.Equal(HttpStatusCode.OK, (await client.GetAsync("/healthz")).StatusCode);
    }

    [Fact]
    public async Task StaleSocketFile_IsTakenOver()
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("gw.sock");
        // A process that bound the path and died without unlinking it.
        await using (var dead = ExternalProcess.Start("python3", "-c", $"import socket; s = socket.socket(socket.AF_UNIX); s.bind('{socket}')"))
        {
            Assert.Equal(0, await dead.WaitForExitAsync());
        }

        Assert.True(Path.Exists(socket));

        await using var gateway = await GatewayProcess.StartHealthyAsync(socket);

        Assert.Contains("Removed a stale socket file at " + socket, gateway.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SocketFile_GetsTheConfiguredMode_AndTheListenLineSaysSo()
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("gw.sock");

        await using var gateway = await GatewayProcess.StartHealthyAsync(socket, "--Gateway:Listen:SocketMode=0600");

        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(socket));
        Assert.Contains($"Listening on unix:{socket} (mode 0600)", gateway.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task SocketFile_GetsTheConfiguredGroup_ByName()
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("gw.sock");
        var gid = File.ReadLines("/etc/group").Select(l => l.Split(':')).First(f => f[0] == "daemon")[2];

        await using var gateway = await GatewayProcess.StartHealthyAsync(socket, "--Gateway:Listen:SocketGroup=daemon");

        await using var stat = ExternalProcess.Start("stat", "-c", "%g", socket);
        Assert.Equal(0, await stat.WaitForExitAsync());
        Assert.Equal(gid, stat.Output.Trim());
        Assert.Contains($"Listening on unix:{socket} (mode 0660, group daemon)", gateway.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task InvalidConfiguration_ExitsWithEveryErrorNamingItsKey_AndNoStackTrace()
    {
        using var dir = new TempSocketDirectory();

        await using var gateway = GatewayProcess.Start("--Gateway:Listen:UnixSocket=" + dir.Socket("gw.sock"), "--Gateway:Routes:r:Path=/x", "--Gateway:Routes:r:Backend=nope", "--Gateway:Listen:SocketMode=abc");
        var exitCode = await gateway.WaitForExitAsync();

        Assert.Equal(2, exitCode);
        Assert.Contains("Gateway: invalid configuration:", gateway.Output, StringComparison.Ordinal);
        Assert.Contains("Gateway:Routes:r:Backend: 'nope' is not a configured backend", gateway.Output, StringComparison.Ordinal);
        Assert.Contains("Gateway:Listen:SocketMode: 'abc' is not an octal file mode", gateway.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", gateway.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("", "", "inline on the socket engine's thread", "1", "half")] // unset: inline, half the cores' epoll threads
    [InlineData("0", "", "on the thread pool", "0", "(unset)")] // the operator's choice is kept; the runtime's own thread count
    [InlineData("1", "", "inline on the socket engine's thread", "1", "half")]
    [InlineData("", "3", "inline on the socket engine's thread", "1", "3")] // the operator's thread count is kept
    [InlineData("true", "", "on the thread pool", "true", "(unset)")] // the runtime takes only "1": the log says what it will do
    public async Task SocketCompletions_InlineUnlessTheOperatorChose_AndRequestsAreServedEitherWay(string variable, string threads, string mode, string value, string threadCount)
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartHealthyAsync(socket, new Dictionary<string, string>
        {
            ["DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS"] = variable,
            ["DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT"] = threads,
        });
        using var client = UnixHttp.CreateClient(socket);

        // The demo backend (zero configuration) answers through the datagram hop and Kestrel's socket, in either mode.
        var bodies = await Task.WhenAll(Enumerable.Range(0, 16).Select(n => client.GetStringAsync($"/echo/n{n}")));

        Assert.All(bodies.Select((body, n) => (body, n)), b => Assert.Contains($"/n{b.n}", b.body, StringComparison.Ordinal));
        // The child has this process's cores (the same affinity and cgroup).
        var expectedThreads = threadCount == "half" ? Math.Max(1, Environment.ProcessorCount / 2).ToString(System.Globalization.CultureInfo.InvariantCulture) : threadCount;
        var line = $"Socket completions run {mode} (DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS={value}, DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT={expectedThreads})";
        await Eventually.UntilAsync(() => gateway.Output.Contains(line, StringComparison.Ordinal), TimeSpan.FromSeconds(30), TimeSpan.FromMilliseconds(20));
        if (threadCount != "(unset)")
        {
            // The runtime took it: that many socket engine threads (".NET Sockets") once the sockets above have run.
            Assert.Equal(int.Parse(expectedThreads, System.Globalization.CultureInfo.InvariantCulture), SocketEngineThreads(gateway.Id));
        }
    }

    /// <summary>
    /// A socket engine thread count the runtime cannot use stops the gateway at start, naming the variable: with 0 the
    /// runtime would start no engine, and the gateway would run and answer nothing (every socket operation failing).
    /// </summary>
    [Theory]
    [InlineData("0")]
    [InlineData("two")]
    public async Task SocketEngineThreadCount_Unusable_IsAStartupErrorNamingTheVariable(string threads)
    {
        using var dir = new TempSocketDirectory();
        await using var gateway = ExternalProcess.Start(
            "dotnet",
            new Dictionary<string, string> { ["DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT"] = threads },
            GatewayProcess.Dll,
            "--Gateway:Listen:UnixSocket=" + dir.Socket("gw.sock"));

        Assert.Equal(2, await gateway.WaitForExitAsync());
        Assert.Contains($"Gateway: cannot start: DOTNET_SYSTEM_NET_SOCKETS_THREAD_COUNT='{threads}' is not a number of socket engine threads", gateway.Output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", gateway.Output, StringComparison.Ordinal);
    }

    /// <summary>Threads of a process named as the runtime names its socket engine threads.</summary>
    private static int SocketEngineThreads(int pid) =>
        Directory.GetDirectories($"/proc/{pid}/task").Count(task =>
        {
            try
            {
                return File.ReadAllText(Path.Combine(task, "comm")).StartsWith(".NET Sockets", StringComparison.Ordinal);
            }
            catch (IOException)
            {
                return false; // the thread has exited
            }
        });

    [Fact]
    public async Task HealthcheckSwitch_ExitsZeroWhenHealthy_OneWhenNotRunning()
    {
        using var dir = new TempSocketDirectory();
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartHealthyAsync(socket);

        await using var healthy = GatewayProcess.Start("--healthcheck", "--Gateway:Listen:UnixSocket=" + socket);
        await using var absent = GatewayProcess.Start("--healthcheck", "--Gateway:Listen:UnixSocket=" + dir.Socket("none.sock"));

        Assert.Equal(0, await healthy.WaitForExitAsync());
        Assert.Equal(1, await absent.WaitForExitAsync());
    }

    private static bool CanConnect(string path)
    {
        using var probe = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            probe.Connect(new UnixDomainSocketEndPoint(path));
            return true;
        }
        catch (SocketException)
        {
            return false;
        }
    }

    /// <summary>Reads until the peer closes (EOF or reset); returns the number of bytes received.</summary>
    private static async Task<int> ReadToEndAsync(Socket connection)
    {
        var buffer = new byte[4096];
        var total = 0;
        try
        {
            int read;
            while ((read = await connection.ReceiveAsync(buffer).WaitAsync(TimeSpan.FromSeconds(120))) > 0)
            {
                total += read;
            }
        }
        catch (SocketException ex) when (ex.SocketErrorCode == SocketError.ConnectionReset)
        {
        }

        return total;
    }
}
