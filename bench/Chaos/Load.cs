using System.Collections.Concurrent;
using System.Globalization;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Text.Json;

namespace Gateway.Bench.Chaos;

/// <summary>A POST /ops/{id} as the client saw it.</summary>
internal sealed record PostRecord(string Id, bool WithKey, string Outcome, int Status)
{
    public bool Succeeded => Status is >= 200 and < 300;
}

/// <summary>
/// Concurrent clients over the gateway's Unix socket: GET /counter/{name}, POST /ops/{id} with a unique id, with and
/// without <c>Idempotency-Key</c>; some requests are aborted by the client after a random short delay. Every
/// request has a client-side deadline beyond the gateway's budget; one that passes it is a hang (a failure).
/// Outcomes are tallied by category: 2xx, status + problem type, client-aborted, deadline-exceeded, transport error.
/// </summary>
internal sealed class Load(string socketPath, int seed, TimeSpan deadline)
{
    public const string Aborted = "client-aborted";
    public const string DeadlineExceeded = "deadline-exceeded (hang)";

    private readonly ConcurrentDictionary<string, long> _outcomes = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<PostRecord> _posts = new();
    private long _requests;

    public IReadOnlyDictionary<string, long> Outcomes => _outcomes;

    public IReadOnlyCollection<PostRecord> Posts => _posts;

    public long Requests => Interlocked.Read(ref _requests);

    public static HttpClient CreateClient(string socketPath) => new(new SocketsHttpHandler
    {
        MaxConnectionsPerServer = 1024,
        PooledConnectionIdleTimeout = TimeSpan.FromSeconds(30),
        ConnectCallback = async (_, token) =>
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            try
            {
                await socket.ConnectAsync(new UnixDomainSocketEndPoint(socketPath), token);
                return new NetworkStream(socket, ownsSocket: true);
            }
            catch
            {
                socket.Dispose();
                throw;
            }
        },
    })
    {
        BaseAddress = new Uri("http://localhost/"),
        Timeout = Timeout.InfiniteTimeSpan, // each request has its own deadline
    };

    /// <summary>Runs <paramref name="workers"/> clients until <paramref name="stop"/>; each finishes its current request.</summary>
    public Task RunAsync(int workers, string phase, CancellationToken stop)
    {
        var client = CreateClient(socketPath);
        var tasks = Enumerable.Range(0, workers).Select(w => Task.Run(() => WorkerAsync(client, w, phase, stop))).ToArray();
        return Task.WhenAll(tasks).ContinueWith(_ => client.Dispose(), TaskScheduler.Default);
    }

    private async Task WorkerAsync(HttpClient client, int worker, string phase, CancellationToken stop)
    {
        var random = new Random(unchecked((seed * 31) + (worker * 7919) + phase.Length)); // not HashCode: it is randomized per process
        for (var seq = 0; !stop.IsCancellationRequested; seq++)
        {
            var roll = random.Next(100);
            var abortAfter = random.Next(100) < 8 ? TimeSpan.FromMilliseconds(random.Next(0, 40)) : (TimeSpan?)null;
            HttpRequestMessage request;
            string? opId = null;
            var withKey = false;
            if (roll < 50)
            {
                request = new HttpRequestMessage(HttpMethod.Get, $"/counter/c{random.Next(8)}");
            }
            else
            {
                opId = string.Create(CultureInfo.InvariantCulture, $"{phase}-{seed:x}-{worker}-{seq}");
                withKey = roll < 78;
                request = new HttpRequestMessage(HttpMethod.Post, "/ops/" + opId) { Content = new ByteArrayContent([]) };
                if (withKey)
                {
                    request.Headers.Add("Idempotency-Key", opId);
                }
            }

            var outcome = await SendAsync(client, request, abortAfter);
            Interlocked.Increment(ref _requests);
            _outcomes.AddOrUpdate(outcome.Category, 1, static (_, n) => n + 1);
            if (opId is not null)
            {
                _posts.Enqueue(new PostRecord(opId, withKey, outcome.Category, outcome.Status));
            }
        }
    }

    private async Task<(string Category, int Status)> SendAsync(HttpClient client, HttpRequestMessage request, TimeSpan? abortAfter)
    {
        using var _ = request;
        using var deadlineCts = new CancellationTokenSource(deadline);
        using var abortCts = new CancellationTokenSource();
        if (abortAfter is { } after)
        {
            abortCts.CancelAfter(after);
        }

        using var linked = CancellationTokenSource.CreateLinkedTokenSource(deadlineCts.Token, abortCts.Token);
        try
        {
            using var response = await client.SendAsync(request, HttpCompletionOption.ResponseContentRead, linked.Token);
            var status = (int)response.StatusCode;
            if (status is >= 200 and < 300)
            {
                return ("2xx", status);
            }

            return (Categorize(status, response.Content.Headers.ContentType, await response.Content.ReadAsStringAsync(linked.Token)), status);
        }
        catch (OperationCanceledException) when (abortCts.IsCancellationRequested && !deadlineCts.IsCancellationRequested)
        {
            return (Aborted, 0);
        }
        catch (OperationCanceledException) when (deadlineCts.IsCancellationRequested)
        {
            return (DeadlineExceeded, 0);
        }
        catch (HttpRequestException ex)
        {
            return ("transport error: " + (ex.HttpRequestError.ToString()), 0);
        }
    }

    private static string Categorize(int status, MediaTypeHeaderValue? contentType, string body)
    {
        if (contentType?.MediaType == "application/problem+json")
        {
            try
            {
                using var json = JsonDocument.Parse(body);
                if (json.RootElement.TryGetProperty("type", out var type) && type.GetString() is { } t)
                {
                    return string.Create(CultureInfo.InvariantCulture, $"{status} {t}");
                }
            }
            catch (JsonException)
            {
            }
        }

        return string.Create(CultureInfo.InvariantCulture, $"{status} (no problem type)");
    }
}
