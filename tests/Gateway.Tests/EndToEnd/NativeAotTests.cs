using System.Buffers.Binary;
using System.Net;
using System.Text.Json;
using Gateway.Ipc.Backend;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Gateway.Tests.Telemetry;

namespace Gateway.Tests.EndToEnd;

/// <summary>
/// The Native AOT build (docs/sidecar.md) as a container runs it: the published executable, no runtime, against real
/// datagram backends. What trimming or the lack of reflection would break shows up here and only here: options read by
/// the shape check and the binder's generated code, JSON of minimal APIs and problem details, the OpenAPI document and
/// Swagger UI's embedded files, Polly's pipelines, the OpenTelemetry exporter. Run by <c>.ci/run</c>, which publishes the
/// build; skipped otherwise (<see cref="NativeAotFactAttribute"/>).
/// </summary>
public class NativeAotTests
{
    private static string Executable => NativeAotFactAttribute.Executable!;

    [NativeAotFact]
    public async Task Forwards_ServesOpenApiSwaggerUiAdminAndProblemDetails()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) => ValueTask.FromResult(BackendResponse.Text($"aot {request.Method} {request.Path}")));
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartExecutableHealthyAsync(
            Executable,
            socket,
            null,
            "--Gateway:DemoBackend:Enabled=false",
            "--Gateway:Backends:b:Instances:0=" + backend.SocketPath,
            "--Gateway:Routes:api:Path=/api/{**rest}",
            "--Gateway:Routes:api:Backend=b");
        using var client = UnixHttp.CreateClient(socket);

        using var forwarded = await client.GetAsync("/api/orders/7");
        Assert.Equal(HttpStatusCode.OK, forwarded.StatusCode);
        Assert.Equal("aot GET /api/orders/7", await forwarded.Content.ReadAsStringAsync());
        Assert.Matches("^[0-9a-f]{16}$", Assert.Single(forwarded.Headers.GetValues("X-Correlation-Id")));

        using var openApi = await client.GetAsync("/openapi/v1.json");
        Assert.Equal(HttpStatusCode.OK, openApi.StatusCode);
        using (var document = JsonDocument.Parse(await openApi.Content.ReadAsStringAsync()))
        {
            var paths = document.RootElement.GetProperty("paths");
            Assert.True(paths.TryGetProperty("/api/{rest}", out _), "the configured route is in the document: " + paths);
            Assert.True(paths.TryGetProperty("/admin/backends", out _), "the admin API is in the document: " + paths);
            // The schema of /admin/backends comes from the source-generated JSON metadata (GatewayJsonContext).
            var status = document.RootElement.GetProperty("components").GetProperty("schemas").GetProperty("BackendStatus");
            Assert.True(status.GetProperty("properties").TryGetProperty("healthyInstances", out _), status.ToString());
        }

        using var swagger = await client.GetAsync("/swagger/index.html");
        Assert.Equal(HttpStatusCode.OK, swagger.StatusCode);
        Assert.Equal("text/html", swagger.Content.Headers.ContentType?.MediaType);
        Assert.Contains("Gateway — Swagger UI", await swagger.Content.ReadAsStringAsync(), StringComparison.Ordinal);

        using var admin = await client.GetAsync("/admin/backends");
        Assert.Equal(HttpStatusCode.OK, admin.StatusCode);
        using (var backends = JsonDocument.Parse(await admin.Content.ReadAsStringAsync()))
        {
            var b = Assert.Single(backends.RootElement.EnumerateArray());
            Assert.Equal("b", b.GetProperty("name").GetString());
            Assert.Equal(backend.SocketPath, Assert.Single(b.GetProperty("instances").EnumerateArray()).GetProperty("socketPath").GetString());
        }

        using var missing = await client.GetAsync("/no/such/route");
        Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        Assert.Equal("application/problem+json", missing.Content.Headers.ContentType?.MediaType);
        using var problem = JsonDocument.Parse(await missing.Content.ReadAsStringAsync());
        Assert.Equal("urn:gateway:problem:no-route", problem.RootElement.GetProperty("type").GetString());
        Assert.False(string.IsNullOrEmpty(problem.RootElement.GetProperty("requestId").GetString()));
    }

    /// <summary>
    /// Polly's retry pipeline: of two instances, one never answers. Round robin sends one of two requests to it first;
    /// once the attempt timeout ends that attempt, the GET (idempotent) is retried on the other instance, whose reply is
    /// the response. The retry shows on /admin/backends, counted on the instance that took it.
    /// </summary>
    [NativeAotFact]
    public async Task RetriesAnUnansweredAttempt_OnTheOtherInstance()
    {
        using var dir = new TempSocketDirectory();
        await using var stuck = await TestBackend.StartAsync(dir.Socket("stuck.sock"), async (_, cancellationToken) =>
        {
            await Task.Delay(Timeout.Infinite, cancellationToken); // never answered; ended by the gateway's CANCEL
            return BackendResponse.Text("stuck");
        });
        await using var live = await TestBackend.StartAsync(dir.Socket("live.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("live")));
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartExecutableHealthyAsync(
            Executable,
            socket,
            null,
            "--Gateway:DemoBackend:Enabled=false",
            "--Gateway:Backends:b:Instances:0=" + stuck.SocketPath,
            "--Gateway:Backends:b:Instances:1=" + live.SocketPath,
            "--Gateway:Backends:b:AttemptTimeout=00:00:00.300",
            "--Gateway:Routes:api:Path=/api/{**rest}",
            "--Gateway:Routes:api:Backend=b",
            "--Gateway:Routes:api:Timeout=00:01:00");
        using var client = UnixHttp.CreateClient(socket);

        for (var i = 0; i < 2; i++)
        {
            using var response = await client.GetAsync($"/api/{i}");
            Assert.True(response.StatusCode == HttpStatusCode.OK, $"request {i}: {(int)response.StatusCode} {await response.Content.ReadAsStringAsync()}\n{gateway.Output}");
            Assert.Equal("live", await response.Content.ReadAsStringAsync());
        }

        using var backends = JsonDocument.Parse(await client.GetStringAsync("/admin/backends"));
        var instance = Assert.Single(backends.RootElement[0].GetProperty("instances").EnumerateArray(), i => i.GetProperty("socketPath").GetString() == live.SocketPath);
        Assert.True(instance.GetProperty("retries").GetInt64() >= 1, instance.ToString());
    }

    /// <summary>The live datagram capture (<c>/admin/capture</c>, NDJSON written with Utf8JsonWriter) under AOT: a request and its reply.</summary>
    [NativeAotFact]
    public async Task Capture_StreamsTheRequestAndItsReply()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) => ValueTask.FromResult(BackendResponse.Text("captured " + request.Path)));
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartExecutableHealthyAsync(
            Executable,
            socket,
            null,
            "--Gateway:DemoBackend:Enabled=false",
            "--Gateway:Backends:b:Instances:0=" + backend.SocketPath,
            "--Gateway:Routes:api:Path=/api/{**rest}",
            "--Gateway:Routes:api:Backend=b");
        using var client = UnixHttp.CreateClient(socket);
        using var capture = await client.GetAsync("/admin/capture?backend=b&kind=REQUEST,RESPONSE&count=2&payload=64", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, capture.StatusCode);
        Assert.Equal("application/x-ndjson", capture.Content.Headers.ContentType?.MediaType);
        using var reader = new StreamReader(await capture.Content.ReadAsStreamAsync());
        var started = await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60));
        Assert.Contains("\"started\"", started, StringComparison.Ordinal);

        using var other = UnixHttp.CreateClient(socket); // a connection of its own: the capture's stays open
        using var response = await other.GetAsync("/api/seen");
        Assert.Equal("captured /api/seen", await response.Content.ReadAsStringAsync());
        var correlationId = Assert.Single(response.Headers.GetValues("X-Correlation-Id"));

        // The capture ends itself after its two events (count=2) with an "end" line.
        var lines = new List<string>();
        while (await reader.ReadLineAsync().WaitAsync(TimeSpan.FromSeconds(60)) is { } line)
        {
            lines.Add(line);
        }

        var all = string.Join("\n", lines);
        Assert.True(lines.Count == 3, all);
        // Not necessarily in this order: the reply can be recorded before the send that caused it.
        using var sent = JsonDocument.Parse(Assert.Single(lines, l => l.Contains("\"kind\":\"REQUEST\"", StringComparison.Ordinal)));
        using var received = JsonDocument.Parse(Assert.Single(lines, l => l.Contains("\"kind\":\"RESPONSE\"", StringComparison.Ordinal)));
        using var end = JsonDocument.Parse(lines[2]);
        Assert.Equal("REQUEST", sent.RootElement.GetProperty("kind").GetString());
        Assert.Equal("/api/seen", sent.RootElement.GetProperty("target").GetString());
        Assert.Equal(correlationId, sent.RootElement.GetProperty("correlationId").GetString());
        Assert.False(string.IsNullOrEmpty(sent.RootElement.GetProperty("payload").GetString()), all);
        Assert.Equal("RESPONSE", received.RootElement.GetProperty("kind").GetString());
        Assert.Equal(correlationId, received.RootElement.GetProperty("correlationId").GetString());
        Assert.Equal("count", end.RootElement.GetProperty("end").GetString());
    }

    /// <summary>Options are read by the shape check over a listed set of options classes (trimming keeps exactly those).</summary>
    [NativeAotFact]
    public async Task InvalidConfiguration_NamesEveryKey()
    {
        using var dir = new TempSocketDirectory();
        await using var gateway = ExternalProcess.Start(
            Executable,
            "--Gateway:Listen:UnixSocket=" + dir.Socket("gw.sock"),
            "--Gateway:Listen:UnixSockt=/x",
            "--Gateway:Backends:b:Mode=Rawx",
            "--Gateway:Backends:b:Instances:0=" + dir.Socket("b.sock"),
            "--Gateway:Routes:r:Path=/r",
            "--Gateway:Routes:r:Backend=b",
            "--Gateway:Routes:r:Timeout=5s");

        Assert.Equal(2, await gateway.WaitForExitAsync());
        Assert.Contains("Gateway:Listen:UnixSockt: unknown key (did you mean 'UnixSocket'?).", gateway.Output, StringComparison.Ordinal);
        Assert.Contains("Gateway:Backends:b:Mode: 'Rawx' is not a valid value (expected Envelope or Raw; did you mean 'Raw'?).", gateway.Output, StringComparison.Ordinal);
        Assert.Contains("Gateway:Routes:r:Timeout: '5s' is not a time span", gateway.Output, StringComparison.Ordinal);
    }

    /// <summary>A valid configuration is bound in full by the binder's generated code: the values show in the document.</summary>
    [NativeAotFact]
    public async Task ValidConfiguration_IsBound()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("ok")));
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartExecutableHealthyAsync(
            Executable,
            socket,
            null,
            "--Gateway:DemoBackend:Enabled=false",
            "--Gateway:Backends:b:Instances:0=" + backend.SocketPath,
            "--Gateway:Backends:b:Mode=Raw",
            "--Gateway:Routes:r:Path=/r/{**rest}",
            "--Gateway:Routes:r:Backend=b",
            "--Gateway:Routes:r:Timeout=00:00:07",
            "--Gateway:Routes:r:MaxBodySize=1234",
            "--Gateway:Routes:r:Methods:0=PUT");
        using var client = UnixHttp.CreateClient(socket);

        using var document = JsonDocument.Parse(await client.GetStringAsync("/openapi/v1.json"));
        var operation = document.RootElement.GetProperty("paths").GetProperty("/r/{rest}").GetProperty("put");
        Assert.Equal("Raw", operation.GetProperty("x-gateway-mode").GetString());
        Assert.Equal("00:00:07", operation.GetProperty("x-gateway-timeout").GetString());
        Assert.Equal(1234, operation.GetProperty("x-gateway-max-body-size").GetInt64());
    }

    /// <summary>A configuration file given with <c>--config</c> is watched: a route added to it serves without a restart.</summary>
    [NativeAotFact]
    public async Task ConfigurationFile_Reloads()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (request, _) => ValueTask.FromResult(BackendResponse.Text("reloaded " + request.Path)));
        var file = Path.Combine(dir.Path, "gateway.json");
        string Config(string path) => $$"""
            { "Gateway": { "DemoBackend": { "Enabled": false },
                "Backends": { "b": { "Instances": [ "{{backend.SocketPath}}" ] } },
                "Routes": { "r": { "Path": "{{path}}", "Backend": "b" } } } }
            """;
        await File.WriteAllTextAsync(file, Config("/one/{**rest}"));
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartExecutableHealthyAsync(Executable, socket, null, "--config", file);
        using var client = UnixHttp.CreateClient(socket);
        using (var before = await client.GetAsync("/two/x"))
        {
            Assert.Equal(HttpStatusCode.NotFound, before.StatusCode);
        }

        await File.WriteAllTextAsync(file, Config("/two/{**rest}"));

        await Eventually.UntilAsync(
            () =>
            {
                using var response = client.GetAsync("/two/x").GetAwaiter().GetResult();
                return response.StatusCode == HttpStatusCode.OK;
            },
            TimeSpan.FromSeconds(30),
            TimeSpan.FromMilliseconds(50));
        Assert.Equal("reloaded /two/x", await client.GetStringAsync("/two/x"));
    }

    /// <summary>The OpenTelemetry SDK and its OTLP exporter, configured by the standard variables, export the gateway's spans.</summary>
    [NativeAotFact]
    public async Task ExportsSpansAndMetricsOverOtlp()
    {
        using var dir = new TempSocketDirectory();
        await using var receiver = await OtlpWireReceiver.StartAsync();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("ok")));
        var environment = new Dictionary<string, string>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.HttpEndpoint,
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
            ["OTEL_METRIC_EXPORT_INTERVAL"] = "200",
            ["OTEL_BSP_SCHEDULE_DELAY"] = "200",
        };
        var socket = dir.Socket("gw.sock");
        await using var gateway = await GatewayProcess.StartExecutableHealthyAsync(
            Executable,
            socket,
            environment,
            "--Gateway:DemoBackend:Enabled=false",
            "--Gateway:Backends:b:Instances:0=" + backend.SocketPath,
            "--Gateway:Routes:api:Path=/api/{**rest}",
            "--Gateway:Routes:api:Backend=b");
        using var client = UnixHttp.CreateClient(socket);
        using (var response = await client.GetAsync("/api/x"))
        {
            Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        }

        var arrived = await receiver.WaitUntilAsync(
            r => r.SpanNames.Any(n => n.StartsWith("gateway.ipc.request ", StringComparison.Ordinal)) && r.MetricsExports.Any(e => e.Histograms.Any(h => h.Name == "gateway.request.duration" && h.Count > 0)),
            TimeSpan.FromSeconds(60));

        Assert.True(arrived, $"spans [{string.Join(", ", receiver.SpanNames.Distinct())}], {receiver.MetricsExports.Count} metric exports; gateway output:\n{gateway.Output}");
        Assert.Empty(receiver.Errors);
    }

    /// <summary>
    /// The executable is linked as the sidecar's idle memory needs it (Gateway.csproj, docs/sidecar.md "Idle memory"):
    /// at a fixed address (ELF type EXEC, not a position-independent DYN) and with its data stored as used, not
    /// dehydrated (no <c>.hydrated</c> section to unpack into anonymous memory at start). A change to either property,
    /// or an SDK that stops honouring them, puts about 5 MiB back on every replica's idle RSS.
    /// </summary>
    [NativeAotFact]
    public void Executable_IsLinkedAtAFixedAddress_WithItsDataNotDehydrated()
    {
        var (type, sections) = ElfSections(File.ReadAllBytes(Executable));

        Assert.Equal(2, type); // ET_EXEC; a PIE is ET_DYN (3)
        Assert.DoesNotContain(".hydrated", sections);
        Assert.Contains(".data", sections);
    }

    /// <summary>An ELF64 little-endian file's type (e_type) and section names.</summary>
    private static (int Type, List<string> Sections) ElfSections(byte[] elf)
    {
        Assert.True(elf.AsSpan(0, 4).SequenceEqual("\u007FELF"u8), "not an ELF file");
        Assert.Equal(2, elf[4]); // ELFCLASS64
        var span = elf.AsSpan();
        int type = BinaryPrimitives.ReadUInt16LittleEndian(span[16..]);
        var sectionTable = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(span[0x28..]));
        int entrySize = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3A..]);
        int count = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3C..]);
        int namesIndex = BinaryPrimitives.ReadUInt16LittleEndian(span[0x3E..]);
        var namesOffset = checked((int)BinaryPrimitives.ReadUInt64LittleEndian(span[(sectionTable + (namesIndex * entrySize) + 0x18)..]));
        var names = new List<string>(count);
        for (var i = 0; i < count; i++)
        {
            var nameAt = namesOffset + (int)BinaryPrimitives.ReadUInt32LittleEndian(span[(sectionTable + (i * entrySize))..]);
            var length = span[nameAt..].IndexOf((byte)0);
            names.Add(System.Text.Encoding.ASCII.GetString(span.Slice(nameAt, length)));
        }

        return (type, names);
    }
}
