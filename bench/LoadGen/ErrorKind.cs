namespace Gateway.Bench.LoadGen;

internal enum ErrorKind
{
    Connect,
    Send,
    Receive,
    Eof,
    Malformed,
    BodyMismatch,
    Timeout,
}

internal static class ErrorKinds
{
    public static readonly ErrorKind[] All = Enum.GetValues<ErrorKind>();

    public static string Name(ErrorKind kind) => kind switch
    {
        ErrorKind.Connect => "connect",
        ErrorKind.Send => "send",
        ErrorKind.Receive => "receive",
        ErrorKind.Eof => "eof",
        ErrorKind.Malformed => "malformed",
        ErrorKind.BodyMismatch => "body_mismatch",
        ErrorKind.Timeout => "timeout",
        _ => kind.ToString(),
    };
}
