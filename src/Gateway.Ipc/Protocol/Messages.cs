using System.Text;

namespace Gateway.Ipc.Protocol;

/// <summary>A decoded REQUEST payload. Fields are views into the payload; nothing is copied.</summary>
public readonly ref struct RequestView
{
    private RequestView(ReadOnlySpan<byte> method, ReadOnlySpan<byte> target, ReadOnlySpan<byte> traceParent, ReadOnlySpan<byte> traceState, HeaderFields headers, ReadOnlySpan<byte> body)
    {
        Method = method;
        Target = target;
        TraceParent = traceParent;
        TraceState = traceState;
        Headers = headers;
        Body = body;
    }

    /// <summary>HTTP method (ASCII).</summary>
    public ReadOnlySpan<byte> Method { get; }

    /// <summary>Path and query (UTF-8), starting with '/'.</summary>
    public ReadOnlySpan<byte> Target { get; }

    /// <summary>W3C traceparent (ASCII), empty when absent.</summary>
    public ReadOnlySpan<byte> TraceParent { get; }

    /// <summary>W3C tracestate (ASCII), empty when absent.</summary>
    public ReadOnlySpan<byte> TraceState { get; }

    /// <summary>Header fields.</summary>
    public HeaderFields Headers { get; }

    /// <summary>Body.</summary>
    public ReadOnlySpan<byte> Body { get; }

    /// <summary>Method as a string.</summary>
    /// <returns>The method.</returns>
    public string GetMethod() => Encoding.ASCII.GetString(Method);

    /// <summary>Target as a string.</summary>
    /// <returns>The target.</returns>
    public string GetTarget() => Encoding.UTF8.GetString(Target);

    /// <summary>Decodes a REQUEST payload (the bytes after the header, reassembled if fragmented).</summary>
    /// <param name="payload">The payload.</param>
    /// <returns>The view.</returns>
    /// <exception cref="ProtocolException">The payload breaks a rule of section 4.1.</exception>
    public static RequestView Read(ReadOnlySpan<byte> payload)
    {
        var reader = new PayloadReader(payload);
        var method = reader.ReadStr8("method");
        if (method.IsEmpty || method.Length > ProtocolConstants.MaxMethodLength)
        {
            ProtocolException.Throw(ProtocolViolation.BadField, $"The method has {method.Length} bytes; 1 to {ProtocolConstants.MaxMethodLength} are allowed.");
        }

        var target = reader.ReadStr16("target");
        if (target.IsEmpty || target[0] != (byte)'/')
        {
            ProtocolException.Throw(ProtocolViolation.BadField, "The target does not start with '/'.");
        }

        var traceParent = reader.ReadStr8("traceparent");
        if (traceParent.Length is not (0 or ProtocolConstants.TraceParentLength))
        {
            ProtocolException.Throw(ProtocolViolation.BadField, $"The traceparent has {traceParent.Length} bytes; 0 or {ProtocolConstants.TraceParentLength} are allowed.");
        }

        var traceState = reader.ReadStr16("tracestate");
        if (traceState.Length > ProtocolConstants.MaxTraceStateLength || (traceParent.IsEmpty && !traceState.IsEmpty))
        {
            ProtocolException.Throw(ProtocolViolation.BadField, "The tracestate is longer than 512 bytes or present without a traceparent.");
        }

        var headers = ReadHeaders(reader.Rest, lowerCaseNames: true, out var body);
        return new RequestView(method, target, traceParent, traceState, headers, body);
    }

    /// <summary>Decodes a REQUEST_HEAD payload: a REQUEST payload whose body is empty (the body follows as CHUNKs).</summary>
    /// <param name="payload">The payload.</param>
    /// <returns>The view (its <see cref="Body"/> is empty).</returns>
    /// <exception cref="ProtocolException">The payload breaks a rule of section 4.1, or carries body bytes.</exception>
    public static RequestView ReadHead(ReadOnlySpan<byte> payload)
    {
        var view = Read(payload);
        if (!view.Body.IsEmpty)
        {
            ProtocolException.Throw(ProtocolViolation.BadLength, $"A REQUEST_HEAD carries {view.Body.Length} body bytes; its body follows as CHUNKs.");
        }

        return view;
    }

    internal static HeaderFields ReadHeaders(ReadOnlySpan<byte> fields, bool lowerCaseNames, out ReadOnlySpan<byte> body)
    {
        if (fields.Length < 2)
        {
            ProtocolException.Throw(ProtocolViolation.BadLength, "The field 'header_count' runs past the end of the payload.");
        }

        int count = System.Buffers.Binary.BinaryPrimitives.ReadUInt16BigEndian(fields);
        var rest = fields[2..];
        var length = HeaderFields.Validate(rest, count, lowerCaseNames);
        body = rest[length..];
        return new HeaderFields(rest[..length], count);
    }
}

/// <summary>A decoded RESPONSE payload. Fields are views into the payload; nothing is copied.</summary>
public readonly ref struct ResponseView
{
    private ResponseView(int status, HeaderFields headers, ReadOnlySpan<byte> body)
    {
        Status = status;
        Headers = headers;
        Body = body;
    }

    /// <summary>HTTP status (200–599).</summary>
    public int Status { get; }

    /// <summary>Header fields.</summary>
    public HeaderFields Headers { get; }

    /// <summary>Body.</summary>
    public ReadOnlySpan<byte> Body { get; }

    /// <summary>Decodes a RESPONSE payload.</summary>
    /// <param name="payload">The payload.</param>
    /// <returns>The view.</returns>
    /// <exception cref="ProtocolException">The payload breaks a rule of section 4.2.</exception>
    public static ResponseView Read(ReadOnlySpan<byte> payload)
    {
        var reader = new PayloadReader(payload);
        int status = reader.ReadUInt16("status");
        if (status is < 200 or > 599)
        {
            ProtocolException.Throw(ProtocolViolation.BadField, $"The status {status} is not in 200–599.");
        }

        var headers = RequestView.ReadHeaders(reader.Rest, lowerCaseNames: false, out var body);
        return new ResponseView(status, headers, body);
    }

    /// <summary>Decodes a RESPONSE_HEAD payload: a RESPONSE payload without body bytes.</summary>
    /// <param name="payload">The payload.</param>
    /// <returns>The view (its <see cref="Body"/> is empty).</returns>
    /// <exception cref="ProtocolException">The payload breaks a rule of section 4.2, or has bytes after the headers.</exception>
    public static ResponseView ReadHead(ReadOnlySpan<byte> payload)
    {
        var view = Read(payload);
        if (!view.Body.IsEmpty)
        {
            ProtocolException.Throw(ProtocolViolation.BadLength, $"A RESPONSE_HEAD has {view.Body.Length} bytes after its headers; the body follows as CHUNKs.");
        }

        return view;
    }
}

/// <summary>A decoded ERROR payload.</summary>
public readonly ref struct ErrorView
{
    private ErrorView(IpcErrorCode code, ReadOnlySpan<byte> message)
    {
        Code = code;
        Message = message;
    }

    /// <summary>The error code (unknown codes are kept as they are).</summary>
    public IpcErrorCode Code { get; }

    /// <summary>The UTF-8 message.</summary>
    public ReadOnlySpan<byte> Message { get; }

    /// <summary>The message as a string.</summary>
    /// <returns>The message.</returns>
    public string GetMessage() => Encoding.UTF8.GetString(Message);

    /// <summary>Decodes an ERROR payload.</summary>
    /// <param name="payload">The payload.</param>
    /// <returns>The view.</returns>
    /// <exception cref="ProtocolException">The payload breaks a rule of section 4.3.</exception>
    public static ErrorView Read(ReadOnlySpan<byte> payload)
    {
        var reader = new PayloadReader(payload);
        var code = (IpcErrorCode)reader.ReadUInt16("code");
        var message = reader.ReadStr16("message");
        if (message.Length > ProtocolConstants.MaxErrorMessageLength)
        {
            ProtocolException.Throw(ProtocolViolation.BadField, $"The ERROR message has {message.Length} bytes; at most {ProtocolConstants.MaxErrorMessageLength} are allowed.");
        }

        if (!reader.Rest.IsEmpty)
        {
            ProtocolException.Throw(ProtocolViolation.BadLength, "The ERROR payload has bytes after the message.");
        }

        return new ErrorView(code, message);
    }
}
