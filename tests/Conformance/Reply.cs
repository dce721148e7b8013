using System.Text;
using Gateway.Ipc.Protocol;

namespace Gateway.Conformance;

/// <summary>One message the backend sent to the kit, reassembled if it was fragmented, decoded and judged.</summary>
internal sealed class Reply
{
    private Reply(FrameHeader header, byte[] raw, byte[] payload, int datagrams, string sender)
    {
        Header = header;
        Raw = raw;
        Payload = payload;
        Datagrams = datagrams;
        Sender = sender;
    }

    public FrameHeader Header { get; }

    /// <summary>The datagram as received (the first fragment for a fragmented message).</summary>
    public byte[] Raw { get; }

    public byte[] Payload { get; }

    /// <summary>How many datagrams carried the message.</summary>
    public int Datagrams { get; }

    /// <summary>The sender's address as the kernel reported it.</summary>
    public string Sender { get; }

    /// <summary>Why the message breaks the spec, or null when it does not.</summary>
    public string? Problem { get; private set; }

    public int Status { get; private set; }

    public IReadOnlyList<KeyValuePair<string, string>> Headers { get; private set; } = [];

    public byte[] Body { get; private set; } = [];

    public IpcErrorCode ErrorCode { get; private set; }

    /// <summary>A CHUNK's sequence number.</summary>
    public uint Sequence { get; private set; }

    /// <summary>An END's chunk count, or a CREDIT's bytes.</summary>
    public uint Value { get; private set; }

    public string ErrorMessage { get; private set; } = "";

    public MessageKind Kind => Header.Kind;

    public ulong CorrelationId => Header.CorrelationId;

    public ushort Attempt => Header.Attempt;

    public bool IsReplay => (Header.Flags & MessageFlags.Replay) != 0;

    public bool IsResponse(int status) => Problem is null && Kind == MessageKind.Response && Status == status;

    public bool IsError(IpcErrorCode code) => Problem is null && Kind == MessageKind.Error && ErrorCode == code;

    public string BodyText => Encoding.UTF8.GetString(Body);

    public string? GetHeader(string name) =>
        Headers.FirstOrDefault(h => string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)).Value;

    /// <summary>A datagram the kit could not even read as a header.</summary>
    public static Reply Invalid(byte[] raw, string sender, string problem) =>
        new(default, raw, [], 1, sender) { Problem = problem };

    /// <summary>Decodes a whole message and checks the rules a backend's reply must follow (§3, §4).</summary>
    public static Reply Decode(FrameHeader header, byte[] raw, byte[] payload, int datagrams, string sender)
    {
        var reply = new Reply(header, raw, payload, datagrams, sender);
        try
        {
            reply.Problem = reply.DecodePayload();
        }
        catch (ProtocolException e)
        {
            reply.Problem = $"{header.Kind} payload is malformed: {e.Message}";
        }

        if (reply.Problem is null && header.BudgetMs != 0)
        {
            reply.Problem = $"budget_ms is {header.BudgetMs} in a {header.Kind}; replies carry 0 (§3)";
        }

        if (reply.Problem is null && raw.Length > 5 && raw[5] != 0 && header.Kind != MessageKind.Pong)
        {
            // A PONG's features byte is its announcement (§4.5.1); every other reply writes 0.
            reply.Problem = $"the features byte is not 0 in a {header.Kind} (§3)";
        }

        return reply;
    }

    public override string ToString()
    {
        var flags = IsReplay ? " REPLAY" : "";
        var what = Problem is not null ? $"invalid ({Problem})" : Kind switch
        {
            MessageKind.Response => $"RESPONSE {Status}{flags}, {Body.Length} B body",
            MessageKind.Error => $"ERROR {ErrorCode}{flags} \"{ErrorMessage}\"",
            MessageKind.ResponseHead => $"RESPONSE_HEAD {Status}",
            MessageKind.Chunk => $"CHUNK {Sequence}, {Body.Length} B",
            MessageKind.End => $"END {Value}",
            MessageKind.Credit => $"CREDIT {Value}",
            _ => $"{Kind}{flags}",
        };
        return $"{what} (id {CorrelationId:x}, attempt {Attempt})";
    }

    private const string TChars = "!#$%&'*+-.^_`|~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

    /// <summary>§4.2 "Header encoding": a RESPONSE's names are tokens, its values visible ASCII, space and tab.</summary>
    private static string? HeaderProblem(ReadOnlySpan<byte> name, ReadOnlySpan<byte> value)
    {
        foreach (var b in name)
        {
            if (b >= 0x80 || !TChars.Contains((char)b, StringComparison.Ordinal))
            {
                return $"header name \"{Encoding.Latin1.GetString(name)}\" has byte 0x{b:x2}, not a token character (§4.2, header encoding)";
            }
        }

        for (var i = 0; i < value.Length; i++)
        {
            if (value[i] is not ((byte)'\t' or >= 0x20 and <= 0x7e))
            {
                return $"the value of header '{Encoding.Latin1.GetString(name)}' has byte 0x{value[i]:x2} at offset {i}; values are visible ASCII, space and tab (§4.2, header encoding; the gateway answers 502)";
            }
        }

        return null;
    }

    /// <summary>Takes the status and header fields of a RESPONSE or RESPONSE_HEAD; returns the first field that breaks §4.2, or null.</summary>
    private string? ReadStatusAndHeaders(ResponseView view)
    {
        Status = view.Status;
        var headers = new List<KeyValuePair<string, string>>();
        string? problem = null;
        foreach (var field in view.Headers)
        {
            headers.Add(new(Encoding.ASCII.GetString(field.Name), Encoding.UTF8.GetString(field.Value)));
            problem ??= HeaderProblem(field.Name, field.Value);
        }

        Headers = headers;
        return problem;
    }

    private string? DecodePayload()
    {
        switch (Header.Kind)
        {
            case MessageKind.Response:
                var response = ResponseView.Read(Payload);
                Body = response.Body.ToArray();
                return ReadStatusAndHeaders(response);
            case MessageKind.Error:
                var error = ErrorView.Read(Payload);
                ErrorCode = error.Code;
                ErrorMessage = error.GetMessage();
                return error.Message.Length > ProtocolConstants.MaxErrorMessageLength ? "the ERROR message is longer than 1,024 bytes (§4.3)" : null;
            case MessageKind.Pong:
                return Payload.Length == 0 ? null : "a PONG with a payload (§4.4)";
            case MessageKind.ResponseHead:
                return ReadStatusAndHeaders(ResponseView.ReadHead(Payload))
                    ?? (Datagrams > 1 ? "a RESPONSE_HEAD was fragmented (§4.5.2)" : null);
            case MessageKind.Chunk:
                Body = StreamFrames.ReadChunk(Payload, out var sequence).ToArray();
                Sequence = sequence;
                return Datagrams > 1 ? "a CHUNK was fragmented (§4.5.4)" : null;
            case MessageKind.End:
                Value = StreamFrames.ReadEnd(Payload);
                return null;
            case MessageKind.Credit:
                Value = StreamFrames.ReadCredit(Payload);
                return null;
            default:
                return $"a backend sent {Header.Kind}, a kind only clients send (§3)";
        }
    }
}
