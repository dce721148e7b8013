using System.Buffers;
using System.Collections.Concurrent;
using System.Globalization;
using System.Runtime.CompilerServices;
using System.Text.Json;
using Gateway.Ipc.Backend;

namespace KeyValueBackend;

/// <summary>
/// A stateful backend that makes duplicate execution visible:
/// <c>PUT /kv/{key}</c> stores the body (204); <c>GET /kv/{key}</c> returns it (200, with the content type it was
/// stored with) or 404; <c>DELETE /kv/{key}</c> 204 or 404; <c>POST /counter/{name}</c> increments and returns the new
/// value as text; <c>GET /counter/{name}</c> returns the value (0 if never incremented); <c>GET /stats</c> returns a
/// JSON object of executions per route (including this one); <c>POST /ops/{id}</c> executes operation <c>id</c>
/// (201 <c>executed {id}</c>; recorded in the <see cref="OperationJournal"/> when there is one, and then a request
/// whose <c>Idempotency-Key</c> was executed before gets 200 <c>already executed</c> without executing). Other paths:
/// 404; other methods on a known path: 405.
/// </summary>
public sealed class KeyValueHandler(OperationJournal? journal) : IDatagramHandler
{
    private const string KvPrefix = "/kv/";
    private const string CounterPrefix = "/counter/";
    private const string OpsPrefix = "/ops/";

    public KeyValueHandler()
        : this(null)
    {
    }

    private readonly ConcurrentDictionary<string, (byte[] Value, string ContentType)> _values = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, StrongBox<long>> _counters = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, StrongBox<long>> _executions = new(StringComparer.Ordinal);

    /// <summary>Executions of <paramref name="route"/> (e.g. <c>"POST /counter/{name}"</c>) so far.</summary>
    public long GetExecutions(string route) => _executions.TryGetValue(route, out var box) ? Interlocked.Read(ref box.Value) : 0;

    public ValueTask<BackendResponse> HandleAsync(BackendRequest request, CancellationToken cancellationToken) =>
        ValueTask.FromResult(Handle(request));

    private BackendResponse Handle(BackendRequest request)
    {
        var path = request.Path;
        if (path.StartsWith(KvPrefix, StringComparison.Ordinal) && path.Length > KvPrefix.Length)
        {
            var key = path[KvPrefix.Length..];
            switch (request.Method)
            {
                case "PUT":
                    Count("PUT /kv/{key}");
                    _values[key] = (request.Body.ToArray(), request.GetHeader("content-type") ?? "application/octet-stream");
                    return new BackendResponse(204);
                case "GET":
                    Count("GET /kv/{key}");
                    return _values.TryGetValue(key, out var entry)
                        ? BackendResponse.Bytes(entry.Value, entry.ContentType)
                        : BackendResponse.Text($"No value for key '{key}'.\n", 404);
                case "DELETE":
                    Count("DELETE /kv/{key}");
                    return _values.TryRemove(key, out _) ? new BackendResponse(204) : BackendResponse.Text($"No value for key '{key}'.\n", 404);
                default:
                    return MethodNotAllowed(request);
            }
        }

        if (path.StartsWith(CounterPrefix, StringComparison.Ordinal) && path.Length > CounterPrefix.Length)
        {
            var name = path[CounterPrefix.Length..];
            switch (request.Method)
            {
                case "POST":
                    Count("POST /counter/{name}");
                    var value = Interlocked.Increment(ref _counters.GetOrAdd(name, static _ => new StrongBox<long>()).Value);
                    return BackendResponse.Text(value.ToString(CultureInfo.InvariantCulture));
                case "GET":
                    Count("GET /counter/{name}");
                    var current = _counters.TryGetValue(name, out var box) ? Interlocked.Read(ref box.Value) : 0;
                    return BackendResponse.Text(current.ToString(CultureInfo.InvariantCulture));
                default:
                    return MethodNotAllowed(request);
            }
        }

        if (path.StartsWith(OpsPrefix, StringComparison.Ordinal) && path.Length > OpsPrefix.Length)
        {
            if (request.Method != "POST")
            {
                return MethodNotAllowed(request);
            }

            var id = path[OpsPrefix.Length..];
            if (journal is not null && !journal.TryExecute(id, request.GetHeader("idempotency-key")))
            {
                return BackendResponse.Text($"already executed {id}\n");
            }

            Count("POST /ops/{id}");
            return BackendResponse.Text($"executed {id}\n", 201);
        }

        if (path == "/stats")
        {
            if (request.Method != "GET")
            {
                return MethodNotAllowed(request);
            }

            Count("GET /stats");
            return BackendResponse.Bytes(Stats(), BackendResponse.JsonContentType);
        }

        return BackendResponse.Text($"No route for {request.Method} {request.Path}.\n", 404);
    }

    private static BackendResponse MethodNotAllowed(BackendRequest request) =>
        BackendResponse.Text($"Method {request.Method} is not allowed on {request.Path}.\n", 405);

    private void Count(string route) => Interlocked.Increment(ref _executions.GetOrAdd(route, static _ => new StrongBox<long>()).Value);

    private byte[] Stats()
    {
        var buffer = new ArrayBufferWriter<byte>();
        using (var json = new Utf8JsonWriter(buffer))
        {
            json.WriteStartObject();
            foreach (var (route, count) in _executions.OrderBy(e => e.Key, StringComparer.Ordinal))
            {
                json.WriteNumber(route, Interlocked.Read(ref count.Value));
            }

            json.WriteEndObject();
        }

        return buffer.WrittenSpan.ToArray();
    }
}
