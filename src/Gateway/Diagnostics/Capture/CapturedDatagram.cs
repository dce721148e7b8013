using System.Globalization;
using System.Text.Json;
using Gateway.Ipc.Diagnostics;

namespace Gateway.Diagnostics.Capture;

/// <summary>One datagram of a capture: one NDJSON line of <c>GET /admin/capture</c> (fields in docs/api.md).</summary>
internal sealed class CapturedDatagram(DateTimeOffset time, DatagramDirection direction, string backend, string instance, string kind, int size)
{
    public DateTimeOffset Time { get; } = time;

    public DatagramDirection Direction { get; } = direction;

    public string Backend { get; } = backend;

    public string Instance { get; } = instance;

    /// <summary>REQUEST, RESPONSE, ERROR, PING, PONG, CANCEL; RAW for a raw backend's bytes; MALFORMED for a datagram without a valid header.</summary>
    public string Kind { get; } = kind;

    /// <summary>Bytes of the datagram.</summary>
    public int Size { get; } = size;

    public string? Route { get; set; }

    public ulong? CorrelationId { get; set; }

    public int? Attempt { get; set; }

    public int FragmentIndex { get; set; }

    public int FragmentCount { get; set; } = 1;

    public bool Replay { get; set; }

    public uint? BudgetMs { get; set; }

    public string? Method { get; set; }

    public string? Target { get; set; }

    public int? Status { get; set; }

    public string? ErrorCode { get; set; }

    public string? Malformed { get; set; }

    public byte[]? Payload { get; set; }

    public bool PayloadTruncated { get; set; }

    /// <summary>The whole datagram as it was on the wire (pcapng captures only).</summary>
    public byte[]? Wire { get; set; }

    public CapturedDatagram Clone() => (CapturedDatagram)MemberwiseClone();

    /// <summary>The correlation ID as in <c>X-Correlation-Id</c>: 16 lower-case hex digits.</summary>
    public static string FormatCorrelationId(ulong id) => id.ToString("x16", CultureInfo.InvariantCulture);

    public void WriteTo(Utf8JsonWriter json)
    {
        json.WriteStartObject();
        json.WriteString("time"u8, Time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.ffffff'Z'", CultureInfo.InvariantCulture));
        json.WriteString("direction"u8, Direction == DatagramDirection.Sent ? "sent"u8 : "received"u8);
        json.WriteString("backend"u8, Backend);
        json.WriteString("instance"u8, Instance);
        if (Route is not null)
        {
            json.WriteString("route"u8, Route);
        }

        json.WriteString("kind"u8, Kind);
        if (CorrelationId is { } id)
        {
            json.WriteString("correlationId"u8, FormatCorrelationId(id));
        }

        if (Attempt is { } attempt)
        {
            json.WriteNumber("attempt"u8, attempt);
        }

        json.WriteNumber("fragmentIndex"u8, FragmentIndex);
        json.WriteNumber("fragmentCount"u8, FragmentCount);
        json.WriteNumber("size"u8, Size);
        if (Replay)
        {
            json.WriteBoolean("replay"u8, true);
        }

        if (BudgetMs is { } budget)
        {
            json.WriteNumber("budgetMs"u8, budget);
        }

        if (Method is not null)
        {
            json.WriteString("method"u8, Method);
        }

        if (Target is not null)
        {
            json.WriteString("target"u8, Target);
        }

        if (Status is { } status)
        {
            json.WriteNumber("status"u8, status);
        }

        if (ErrorCode is not null)
        {
            json.WriteString("errorCode"u8, ErrorCode);
        }

        if (Malformed is not null)
        {
            json.WriteString("malformed"u8, Malformed);
        }

        if (Payload is not null)
        {
            json.WriteBase64String("payload"u8, Payload);
            json.WriteBoolean("payloadTruncated"u8, PayloadTruncated);
        }

        json.WriteEndObject();
    }
}
