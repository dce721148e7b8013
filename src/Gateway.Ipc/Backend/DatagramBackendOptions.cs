using System.ComponentModel.DataAnnotations;
using Gateway.Ipc.Protocol;
using Microsoft.Extensions.Options;

namespace Gateway.Ipc.Backend;

/// <summary>Options of a <see cref="DatagramBackendServer"/>.</summary>
public sealed class DatagramBackendOptions
{
    /// <summary>The path of the datagram socket to bind (at most 107 bytes). Its directory is created if missing.</summary>
    /// <value>Required; there is no default.</value>
    [Required]
    [StringLength(107)]
    public string SocketPath { get; set; } = string.Empty;

    /// <summary>The mode of the socket file as three or four octal digits; clients need write permission to connect.</summary>
    /// <value>The default value is <c>"0660"</c> (owner and group).</value>
    [Required]
    [RegularExpression("^[0-7]{3,4}$", ErrorMessage = "The FileMode field must be three or four octal digits, such as 0660.")]
    public string FileMode { get; set; } = "0660";

    /// <summary>
    /// The most requests executing at once; a request beyond it is answered with ERROR <c>OVERLOADED</c>
    /// without running the handler. PING is answered regardless.
    /// </summary>
    /// <value>The default value is 1024.</value>
    [Range(1, 1_000_000)]
    public int MaxConcurrency { get; set; } = 1024;

    /// <summary>
    /// The most completed replies kept for at-most-once replay (docs/protocol.md section 5); the oldest is evicted
    /// first. 0 disables replay (duplicates of requests still executing are still dropped).
    /// </summary>
    /// <value>The default value is 10,000.</value>
    [Range(0, 10_000_000)]
    public int ReplayCacheSize { get; set; } = 10_000;

    /// <summary>
    /// How long a completed reply stays in the replay cache. A retry later than this executes again, so clients
    /// must not retry later than this.
    /// </summary>
    /// <value>The default value is 120 seconds.</value>
    [TimeSpanRange("00:00:00", "1.00:00:00")]
    public TimeSpan ReplayCacheTtl { get; set; } = TimeSpan.FromSeconds(120);

    /// <summary>
    /// The most bytes of encoded replies held by the replay cache; the oldest entries are evicted beyond it.
    /// Bounds memory when replies are large (10,000 entries of 200 KB would be 2 GB).
    /// </summary>
    /// <value>The default value is 64 MiB.</value>
    [Range(0, long.MaxValue)]
    public long ReplayCacheMaxBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>
    /// The largest request or reply payload, in bytes; messages larger than one datagram travel as fragments. A
    /// larger request is answered with ERROR <c>TOO_LARGE</c> (once); a larger reply is replaced by ERROR <c>TOO_LARGE</c>.
    /// </summary>
    /// <value>The default value is 17 MiB (<see cref="ProtocolConstants.DefaultMaxMessageBytes"/>): a 16 MiB body plus up to 1 MiB of envelope fields, the largest message the gateway sends.</value>
    [Range(1024, 1024 * 1024 * 1024)]
    public int MaxMessageBytes { get; set; } = ProtocolConstants.DefaultMaxMessageBytes;

    /// <summary>
    /// The most memory reserved by partially received fragmented requests (docs/protocol.md section 6); a message
    /// that would exceed it is dropped and counted.
    /// </summary>
    /// <value>The default value is 64 MiB.</value>
    [Range(1024, long.MaxValue)]
    public long MaxReassemblyBytes { get; set; } = 64L * 1024 * 1024;

    /// <summary>How long a partially received fragmented request is kept before it is freed and counted.</summary>
    /// <value>The default value is 10 seconds.</value>
    [TimeSpanRange("00:00:00.001", "00:10:00")]
    public TimeSpan ReassemblyTimeout { get; set; } = TimeSpan.FromSeconds(10);

    /// <summary>On shutdown, how long requests in flight may run before their cancellation tokens fire.</summary>
    /// <value>The default value is 5 seconds.</value>
    [TimeSpanRange("00:00:00", "00:10:00")]
    public TimeSpan DrainTimeout { get; set; } = TimeSpan.FromSeconds(5);

    /// <summary>
    /// How long a client with replies queued for it may accept no datagram at all (no progress) before its queued replies
    /// are dropped and counted in <see cref="DatagramBackendStatistics.ReplyFailures"/>. A client that keeps reading,
    /// however slowly, gets every reply. Replies sent from the receive loop (PONG, ERROR) never wait.
    /// </summary>
    /// <value>The default value is 1 second.</value>
    [TimeSpanRange("00:00:00.001", "00:10:00")]
    public TimeSpan ReplySendTimeout { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>
    /// Whether a request's handler is started on the receive thread instead of being queued to the thread pool
    /// (default <see langword="false"/>). It then runs there until its first asynchronous wait, and a reply it has
    /// ready by then is sent from there too: one thread wake-up less per request, which on a small, busy machine is
    /// most of a request's cost. Only for handlers that do little synchronous work before they await (or finish):
    /// while a handler runs inline, no other datagram is received.
    /// </summary>
    public bool RunHandlersInline { get; set; }

    /// <summary>
    /// Whether this backend accepts streamed request bodies (docs/protocol.md §4.5.3): its PONG then announces
    /// <c>STREAM_REQUEST</c>, and a client may send a large or unknown-length body as a REQUEST_HEAD followed by CHUNKs,
    /// which the handler reads from <see cref="BackendRequest.BodyStream"/> (<see cref="BackendRequest.Body"/> is empty
    /// then). Turn it on only for handlers that read <see cref="BackendRequest.BodyStream"/>.
    /// </summary>
    /// <value>The default value is <see langword="false"/>.</value>
    public bool AcceptStreamedRequestBodies { get; set; }

    /// <summary>
    /// The flow-control window of a streamed request body: the credit granted when the handler starts, and granted again
    /// as the handler reads (once half of it has been read). At most this much of one request's body waits in memory.
    /// </summary>
    /// <value>The default value is 256 KiB.</value>
    [Range(1, int.MaxValue)]
    public int StreamWindowBytes { get; set; } = 256 * 1024;

    /// <summary>The parsed <see cref="FileMode"/>.</summary>
    internal UnixFileMode GetUnixFileMode() => Transport.UnixSocketFile.ParseFileMode(FileMode);
}

/// <summary>Validates that a <see cref="TimeSpan"/> lies within [minimum, maximum] (trimming-safe, unlike <c>RangeAttribute(Type, …)</c>).</summary>
[AttributeUsage(AttributeTargets.Property)]
internal sealed class TimeSpanRangeAttribute : ValidationAttribute
{
    public TimeSpanRangeAttribute(string minimum, string maximum)
        : base("The field {0} must be between {1} and {2}.")
    {
        Minimum = TimeSpan.Parse(minimum, System.Globalization.CultureInfo.InvariantCulture);
        Maximum = TimeSpan.Parse(maximum, System.Globalization.CultureInfo.InvariantCulture);
    }

    public TimeSpan Minimum { get; }

    public TimeSpan Maximum { get; }

    public override bool IsValid(object? value) => value is not TimeSpan t || (t >= Minimum && t <= Maximum);

    public override string FormatErrorMessage(string name) =>
        string.Format(System.Globalization.CultureInfo.InvariantCulture, ErrorMessageString, name, Minimum, Maximum);
}

/// <summary>Source-generated DataAnnotations validator of <see cref="DatagramBackendOptions"/> (trimming- and AOT-safe).</summary>
[OptionsValidator]
internal sealed partial class DatagramBackendOptionsValidator : IValidateOptions<DatagramBackendOptions>
{
}
