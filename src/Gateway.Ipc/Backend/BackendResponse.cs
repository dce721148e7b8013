using System.Buffers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Backend;

/// <summary>
/// What a handler returns: a RESPONSE (status, headers, body) or, when made with <see cref="Error"/>, an ERROR
/// message.
/// </summary>
public sealed class BackendResponse
{
    /// <summary>The content type of <see cref="Text"/> responses.</summary>
    public const string TextContentType = "text/plain; charset=utf-8";

    /// <summary>The content type of <see cref="Json{T}"/> responses.</summary>
    public const string JsonContentType = "application/json; charset=utf-8";

    /// <summary>Creates a response.</summary>
    /// <param name="status">The HTTP status, 200–599.</param>
    /// <param name="headers">
    /// Header fields; names are sent in lower case. What the gateway accepts (docs/protocol.md section 4.2) is checked
    /// here, so a reply it would refuse with 502 <c>malformed-reply</c> fails at the call that builds it: a name is an
    /// RFC 9110 token of 1–255 characters, a value at most 65,535 characters of visible ASCII, space and tab (encode
    /// other text, e.g. RFC 8187 <c>filename*=UTF-8''…</c> or percent-encoding).
    /// </param>
    /// <param name="body">The body.</param>
    /// <exception cref="ArgumentOutOfRangeException"><paramref name="status"/> is outside 200–599.</exception>
    /// <exception cref="ArgumentException">A header field breaks the rules above; the message names the field, the character and its offset.</exception>
    public BackendResponse(int status = 200, IReadOnlyList<KeyValuePair<string, string>>? headers = null, ReadOnlyMemory<byte> body = default)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(status, 200);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(status, 599);
        headers ??= [];
        ValidateHeaders(headers);
        Status = status;
        Headers = headers;
        Body = body;
    }

    // RFC 9110 tchar.
    private static readonly SearchValues<char> TokenChars =
        SearchValues.Create("!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz");

    // RFC 9110 field-vchar without obs-text, space and horizontal tab.
    private static readonly SearchValues<char> ValueChars =
        SearchValues.Create("\t !\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefghijklmnopqrstuvwxyz{|}~");

    private static void ValidateHeaders(IReadOnlyList<KeyValuePair<string, string>> headers)
    {
        for (var i = 0; i < headers.Count; i++)
        {
            var (name, value) = headers[i];
            if (string.IsNullOrEmpty(name) || name.Length > byte.MaxValue)
            {
                throw new ArgumentException($"Header field {i} has a name of {name?.Length ?? 0} characters; a name has 1 to 255.", nameof(headers));
            }

            if (name.AsSpan().IndexOfAnyExcept(TokenChars) is var badName and >= 0)
            {
                throw new ArgumentException($"Header field {i} ('{Printable(name)}') has U+{(int)name[badName]:X4} at offset {badName} of its name; a name is an RFC 9110 token.", nameof(headers));
            }

            if (value is null)
            {
                throw new ArgumentException($"Header field {i} ('{name}') has a null value.", nameof(headers));
            }

            if (value.Length > ushort.MaxValue)
            {
                throw new ArgumentException($"Header field {i} ('{name}') has a value of {value.Length} characters; a value has at most 65,535.", nameof(headers));
            }

            if (value.AsSpan().IndexOfAnyExcept(ValueChars) is var badValue and >= 0)
            {
                throw new ArgumentException($"Header field {i} ('{name}') has U+{(int)value[badValue]:X4} at offset {badValue} of its value; a value is visible ASCII, space and tab (encode other text, e.g. RFC 8187 or percent-encoding).", nameof(headers));
            }
        }
    }

    private static string Printable(string name) => string.Concat(name.Select(c => c is >= ' ' and <= '~' ? c.ToString() : "?"));

    private BackendResponse(IpcErrorCode code, string message)
    {
        Headers = [];
        ErrorCode = code;
        ErrorMessage = message;
    }

    /// <summary>The HTTP status (0 for an error).</summary>
    public int Status { get; }

    /// <summary>Header fields.</summary>
    public IReadOnlyList<KeyValuePair<string, string>> Headers { get; }

    /// <summary>The body.</summary>
    public ReadOnlyMemory<byte> Body { get; }

    /// <summary>The error code when this is an error (sent as an ERROR message), else <see langword="null"/>.</summary>
    public IpcErrorCode? ErrorCode { get; }

    /// <summary>The error's message when this is an error, else <see langword="null"/>.</summary>
    public string? ErrorMessage { get; }

    /// <summary>
    /// For a streamed response (<see cref="Stream(Func{Stream, CancellationToken, Task}, string, int, IReadOnlyList{KeyValuePair{string, string}}?)"/>): writes the body;
    /// else <see langword="null"/>.
    /// </summary>
    public Func<Stream, CancellationToken, Task>? StreamBody { get; private init; }

    /// <summary>Whether the body is streamed (<see cref="StreamBody"/>).</summary>
    public bool IsStreamed => StreamBody is not null;

    /// <summary>Whether this is sent as an ERROR message.</summary>
    public bool IsError => ErrorCode.HasValue;

    /// <summary>A <c>text/plain; charset=utf-8</c> response.</summary>
    /// <param name="text">The body text.</param>
    /// <param name="status">The status.</param>
    /// <returns>The response.</returns>
    public static BackendResponse Text(string text, int status = 200)
    {
        ArgumentNullException.ThrowIfNull(text);
        return new BackendResponse(status, [new("content-type", TextContentType)], Encoding.UTF8.GetBytes(text));
    }

    /// <summary>A response with a body of <paramref name="contentType"/>.</summary>
    /// <param name="body">The body.</param>
    /// <param name="contentType">The content type.</param>
    /// <param name="status">The status.</param>
    /// <returns>The response.</returns>
    public static BackendResponse Bytes(ReadOnlyMemory<byte> body, string contentType, int status = 200)
    {
        ArgumentException.ThrowIfNullOrEmpty(contentType);
        return new BackendResponse(status, [new("content-type", contentType)], body);
    }

    /// <summary>An <c>application/json</c> response serialized with source-generated metadata (trimming- and AOT-safe).</summary>
    /// <typeparam name="T">The value's type.</typeparam>
    /// <param name="value">The value.</param>
    /// <param name="typeInfo">The type's metadata, e.g. from a <c>JsonSerializerContext</c>.</param>
    /// <param name="status">The status.</param>
    /// <returns>The response.</returns>
    public static BackendResponse Json<T>(T value, JsonTypeInfo<T> typeInfo, int status = 200)
    {
        ArgumentNullException.ThrowIfNull(typeInfo);
        return new BackendResponse(status, [new("content-type", JsonContentType)], JsonSerializer.SerializeToUtf8Bytes(value, typeInfo));
    }

    /// <summary>
    /// A streamed response (docs/protocol.md §4.5.2): the status and headers go out at once, then every write of
    /// <paramref name="writeBody"/> to its <see cref="System.IO.Stream"/> goes out as it is made (one or more CHUNKs), then the END.
    /// </summary>
    /// <remarks>
    /// <para>
    /// Writes wait while the client has granted no credit (flow control): a caller reading slowly slows the writer, and
    /// the backend buffers nothing. The token fires when the client CANCELs (its caller went away) or the server shuts
    /// down; then stop writing. An exception thrown by <paramref name="writeBody"/> after the head ends the stream with ERROR
    /// <c>INTERNAL</c>: the HTTP caller sees an aborted response, never a complete-looking one.
    /// </para>
    /// <para>
    /// When the request does not accept a streamed reply (<see cref="BackendRequest.AcceptsStreamedReply"/> false: an
    /// older client), the server collects the body into one ordinary RESPONSE (limited to the maximum message size).
    /// </para>
    /// </remarks>
    /// <param name="writeBody">Writes the body; flushes are not needed (each write is sent).</param>
    /// <param name="contentType">The content type, e.g. <c>text/event-stream</c>.</param>
    /// <param name="status">The status.</param>
    /// <param name="headers">More header fields.</param>
    /// <returns>The response.</returns>
    public static BackendResponse Stream(Func<Stream, CancellationToken, Task> writeBody, string contentType = "application/octet-stream", int status = 200, IReadOnlyList<KeyValuePair<string, string>>? headers = null)
    {
        ArgumentNullException.ThrowIfNull(writeBody);
        ArgumentException.ThrowIfNullOrEmpty(contentType);
        return new BackendResponse(status, [new("content-type", contentType), .. headers ?? []]) { StreamBody = writeBody };
    }

    /// <summary>A streamed response whose chunks are the items of <paramref name="chunks"/> (see <see cref="Stream(Func{Stream, CancellationToken, Task}, string, int, IReadOnlyList{KeyValuePair{string, string}}?)"/>).</summary>
    /// <param name="chunks">The body's pieces, each sent as it is yielded (empty ones are skipped).</param>
    /// <param name="contentType">The content type.</param>
    /// <param name="status">The status.</param>
    /// <returns>The response.</returns>
    public static BackendResponse Stream(IAsyncEnumerable<ReadOnlyMemory<byte>> chunks, string contentType = "application/octet-stream", int status = 200)
    {
        ArgumentNullException.ThrowIfNull(chunks);
        return Stream(
            async (stream, token) =>
            {
                await foreach (var chunk in chunks.WithCancellation(token).ConfigureAwait(false))
                {
                    if (!chunk.IsEmpty)
                    {
                        await stream.WriteAsync(chunk, token).ConfigureAwait(false);
                    }
                }
            },
            contentType,
            status);
    }

    /// <summary>An ERROR message instead of a response (see docs/protocol.md section 4.3).</summary>
    /// <param name="code">The error code.</param>
    /// <param name="message">A human-readable reason (at most 1,024 UTF-8 bytes are sent).</param>
    /// <returns>The error.</returns>
    public static BackendResponse Error(IpcErrorCode code, string message)
    {
        ArgumentNullException.ThrowIfNull(message);
        return new BackendResponse(code, message);
    }
}
