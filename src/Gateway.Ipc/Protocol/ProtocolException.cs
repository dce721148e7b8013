namespace Gateway.Ipc.Protocol;

/// <summary>Thrown when a datagram or payload breaks a rule of the wire protocol.</summary>
public sealed class ProtocolException : Exception
{
    /// <summary>Creates the exception.</summary>
    /// <param name="reason">Which rule was broken.</param>
    /// <param name="message">A human-readable description.</param>
    public ProtocolException(ProtocolViolation reason, string message)
        : base(message)
    {
        Reason = reason;
    }

    /// <summary>Which rule was broken.</summary>
    public ProtocolViolation Reason { get; }

    internal static ProtocolException Throw(ProtocolViolation reason, string message) => throw new ProtocolException(reason, message);
}

/// <summary>Classes of protocol violations, used for counting dropped datagrams.</summary>
public enum ProtocolViolation
{
    /// <summary>The magic bytes are not <c>GD</c>.</summary>
    BadMagic,

    /// <summary>The version is not 1.</summary>
    UnsupportedVersion,

    /// <summary>The kind is not one of the defined kinds.</summary>
    UnknownKind,

    /// <summary>Undefined flag bits are set, or a flag is used where it is not allowed.</summary>
    BadFlags,

    /// <summary>The correlation ID is 0.</summary>
    ZeroCorrelationId,

    /// <summary>A length field disagrees with the datagram's size or runs past the payload.</summary>
    BadLength,

    /// <summary>A field's value breaks its rule (empty method, wrong traceparent length, bad status, …).</summary>
    BadField,
}
