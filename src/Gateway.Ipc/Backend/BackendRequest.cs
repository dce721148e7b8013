namespace Gateway.Ipc.Backend;

/// <summary>A request received by a backend: the decoded REQUEST message plus what the transport knows.</summary>
/// <remarks>Instances are immutable; the constructor is public so that handlers can be unit-tested.</remarks>
public sealed class BackendRequest
{
    /// <summary>Creates a request.</summary>
    /// <param name="method">The HTTP method, e.g. <c>GET</c>.</param>
    /// <param name="target">The path and, if any, <c>?</c> and the query, as sent by the gateway (percent-encoding preserved).</param>
    /// <param name="headers">Header fields, names in lower case; a name may repeat.</param>
    /// <param name="body">The body.</param>
    public BackendRequest(string method, string target, IReadOnlyList<KeyValuePair<string, string>>? headers = null, ReadOnlyMemory<byte> body = default)
    {
        ArgumentException.ThrowIfNullOrEmpty(method);
        ArgumentException.ThrowIfNullOrEmpty(target);
        Method = method;
        Target = target;
        Headers = headers ?? [];
        Body = body;
        var q = target.IndexOf('?', StringComparison.Ordinal);
        Path = q < 0 ? target : target[..q];
        Query = q < 0 ? string.Empty : target[(q + 1)..];
    }

    /// <summary>The HTTP method, e.g. <c>GET</c>.</summary>
    public string Method { get; }

    /// <summary>The path and query exactly as received, e.g. <c>/echo/hello?x=1</c>.</summary>
    public string Target { get; }

    /// <summary>The part of <see cref="Target"/> before <c>?</c>, e.g. <c>/echo/hello</c> (still percent-encoded).</summary>
    public string Path { get; }

    /// <summary>The part of <see cref="Target"/> after <c>?</c>, without the <c>?</c>; empty when there is none.</summary>
    public string Query { get; }

    /// <summary>Header fields in the order received; names are lower case and may repeat.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Headers { get; }

    /// <summary>
    /// The body (may be empty). Empty for a streamed upload (<see cref="IsBodyStreamed"/>): read <see cref="BodyStream"/>,
    /// which serves every request.
    /// </summary>
    public ReadOnlyMemory<byte> Body { get; }

    /// <summary>
    /// The body as a stream, for every request: the chunks of a streamed upload as they arrive (docs/protocol.md §4.5.3,
    /// only when <see cref="DatagramBackendOptions.AcceptStreamedRequestBodies"/> is on), else a read-only stream over
    /// <see cref="Body"/>. Read it within the handler (or within the body of a streamed reply the handler returns); for a
    /// streamed upload each read grants the client more credit, so the backend holds at most one window
    /// (<see cref="DatagramBackendOptions.StreamWindowBytes"/>) of the body. A read throws
    /// <see cref="InvalidDataException"/> when the client breaks the stream's rules (the backend then answers ERROR
    /// <c>MALFORMED</c>) and <see cref="OperationCanceledException"/> when the client cancels the request.
    /// </summary>
    public Stream BodyStream => _bodyStream ??= CreateBodyStream(Body);

    /// <summary>Whether the body arrives as a streamed upload (REQUEST_HEAD, then CHUNKs): read it from <see cref="BodyStream"/>.</summary>
    public bool IsBodyStreamed { get; private init; }

    /// <summary>The streamed upload's body (the server's side of it).</summary>
    internal RequestBodyStream? StreamedBody
    {
        get => _bodyStream as RequestBodyStream;
        init
        {
            _bodyStream = value;
            IsBodyStreamed = value is not null;
        }
    }

    private Stream? _bodyStream;

    private static MemoryStream CreateBodyStream(ReadOnlyMemory<byte> body) =>
        System.Runtime.InteropServices.MemoryMarshal.TryGetArray(body, out var segment)
            ? new MemoryStream(segment.Array!, segment.Offset, segment.Count, writable: false)
            : new MemoryStream(body.ToArray(), writable: false);

    /// <summary>The correlation ID chosen by the client (the same for every attempt).</summary>
    public ulong CorrelationId { get; init; }

    /// <summary>The attempt number of the datagram that started this execution (1 for the first try).</summary>
    public ushort Attempt { get; init; }

    /// <summary>Time of receipt plus the request's budget; <see langword="null"/> when the client set no budget.</summary>
    public DateTimeOffset? Deadline { get; init; }

    /// <summary>The W3C <c>traceparent</c>, or <see langword="null"/> when absent.</summary>
    public string? TraceParent { get; init; }

    /// <summary>The W3C <c>tracestate</c>, or <see langword="null"/> when absent.</summary>
    public string? TraceState { get; init; }

    /// <summary>The client's socket address: a path, or <c>@name</c> for a Linux abstract name.</summary>
    public string SenderAddress { get; init; } = string.Empty;

    /// <summary>
    /// Whether the client accepts a streamed reply to this request (the REQUEST's <c>STREAM_REPLY</c> feature, docs/protocol.md
    /// §4.5.1). A handler may return <see cref="BackendResponse.Stream(Func{Stream, CancellationToken, Task}, string, int, IReadOnlyList{KeyValuePair{string, string}}?)"/>
    /// either way: without it the server collects the stream into one RESPONSE.
    /// </summary>
    public bool AcceptsStreamedReply { get; init; }

    /// <summary>
    /// Whether the client announced that it will not retry this request (the REQUEST's <c>NO_RETRY</c> feature,
    /// docs/protocol.md §5): the server then does not keep the reply in its replay cache, since no retry can ask for it.
    /// </summary>
    public bool WillNotBeRetried { get; init; }

    /// <summary>Returns the value of the first header named <paramref name="name"/> (case-insensitive), or <see langword="null"/>.</summary>
    /// <param name="name">The header name.</param>
    /// <returns>The value, or <see langword="null"/>.</returns>
    public string? GetHeader(string name)
    {
        ArgumentNullException.ThrowIfNull(name);
        foreach (var header in Headers)
        {
            if (string.Equals(header.Key, name, StringComparison.OrdinalIgnoreCase))
            {
                return header.Value;
            }
        }

        return null;
    }
}
