using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using OpenTelemetry.Trace;
using static Gateway.Tests.Telemetry.TelemetrySettings;

namespace Gateway.Tests.Telemetry;

public class OtlpExportTests
{
    [Fact]
    public async Task OtlpEndpointConfigured_SpansArePostedToTheReceiver_OverHttpProtobuf()
    {
        using var dir = new TempSocketDirectory();
        var capture = new SpanCapture();
        await using var receiver = OtlpReceiver.Start(capture.TraceId);
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(Ok()));
        var settings = Route(backend.SocketPath, "exported", "xb");
        settings.Remove("Gateway:Telemetry:Enabled"); // the endpoint alone turns the SDK on
        settings["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint;
        settings["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf";
        settings["OTEL_SERVICE_NAME"] = "gateway-under-test";
        await using var factory = new GatewayFactory(dir, settings, capture.Register);
        using var client = factory.CreateClient();
        using var message = new HttpRequestMessage(HttpMethod.Get, "/api/x");
        message.Headers.Add("traceparent", capture.CallerTraceParent);

        using var response = await client.SendAsync(message);
        await capture.WaitForAsync(s => s.Any(a => a.Source.Name == "Microsoft.AspNetCore") && s.Any(a => IsIpc(a, ActivityKind.Server)));
        Assert.True(factory.Services.GetRequiredService<TracerProvider>().ForceFlush(30_000));
        var body = await receiver.TraceExport.WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/x-protobuf", receiver.ContentType);
        Assert.True(Contains(body, System.Text.Encoding.ASCII.GetBytes("gateway-under-test")), "service.name is in the resource");
        Assert.True(Contains(body, System.Text.Encoding.ASCII.GetBytes("gateway.ipc.request")), "the attempt span was exported");
    }

    private static bool Contains(byte[] haystack, byte[] needle) => haystack.AsSpan().IndexOf(needle) >= 0;

    /// <summary>A minimal OTLP/HTTP receiver on loopback: accepts every POST, completes when a /v1/traces body holds the trace ID.</summary>
    private sealed class OtlpReceiver : IAsyncDisposable
    {
        private readonly HttpListener _listener;
        private readonly byte[] _traceId;
        private readonly TaskCompletionSource<byte[]> _traceExport = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly Task _loop;

        private OtlpReceiver(HttpListener listener, string endpoint, ActivityTraceId traceId)
        {
            _listener = listener;
            Endpoint = endpoint;
            _traceId = Convert.FromHexString(traceId.ToHexString());
            _loop = Task.Run(LoopAsync);
        }

        public string Endpoint { get; }

        public string? ContentType { get; private set; }

        public Task<byte[]> TraceExport => _traceExport.Task;

        public static OtlpReceiver Start(ActivityTraceId traceId)
        {
            for (var attempt = 0; ; attempt++)
            {
                var probe = new TcpListener(IPAddress.Loopback, 0);
                probe.Start();
                var port = ((IPEndPoint)probe.LocalEndpoint).Port;
                probe.Stop();
                var endpoint = $"http://127.0.0.1:{port}";
                var listener = new HttpListener();
                listener.Prefixes.Add(endpoint + "/");
                try
                {
                    listener.Start();
                    return new OtlpReceiver(listener, endpoint, traceId);
                }
                catch (HttpListenerException) when (attempt < 5)
                {
                    // The port was taken between probe and bind; take another.
                    listener.Close();
                }
            }
        }

        public async ValueTask DisposeAsync()
        {
            _listener.Close();
            try
            {
                await _loop;
            }
            catch (Exception ex) when (ex is HttpListenerException or ObjectDisposedException)
            {
            }
        }

        private async Task LoopAsync()
        {
            while (_listener.IsListening)
            {
                var context = await _listener.GetContextAsync();
                using var body = new MemoryStream();
                await context.Request.InputStream.CopyToAsync(body);
                var bytes = body.ToArray();
                if (context.Request.HttpMethod == "POST" && context.Request.Url?.AbsolutePath == "/v1/traces" && bytes.AsSpan().IndexOf(_traceId) >= 0)
                {
                    ContentType = context.Request.ContentType;
                    _traceExport.TrySetResult(bytes);
                }

                context.Response.StatusCode = 200;
                context.Response.ContentType = "application/x-protobuf";
                context.Response.Close();
            }
        }
    }
}
