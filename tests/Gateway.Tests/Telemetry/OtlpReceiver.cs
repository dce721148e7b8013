using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Gateway.Tests.Telemetry;

/// <summary>A minimal OTLP/HTTP receiver on loopback: accepts every POST, completes when a /v1/traces body holds the trace ID.</summary>
internal sealed class OtlpReceiver : IAsyncDisposable
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
