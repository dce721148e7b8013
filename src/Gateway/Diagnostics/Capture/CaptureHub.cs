using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Text;
using Gateway.Ipc.Diagnostics;
using Gateway.Ipc.Protocol;
using Gateway.Routing;

namespace Gateway.Diagnostics.Capture;

/// <summary>
/// The live datagram capture behind <c>GET /admin/capture</c>. Every backend client is created with the hub's
/// <see cref="Tap"/>; the hub attaches itself as the tap's observer only while a capture runs, so with nobody capturing
/// a client pays one field read and a null check per datagram. While capturing, each datagram is matched against each
/// session's filter (backend and instance first, before anything is decoded) and, if it matches, described and offered
/// to the session's bounded queue: a full queue drops the event and counts it; forwarding never waits for a reader.
/// </summary>
internal sealed class CaptureHub : IDatagramObserver
{
    /// <summary>Captures that may run at once.</summary>
    public const int MaxSessions = 8;

    /// <summary>Correlation IDs remembered with their route while a capture runs (replies forget theirs).</summary>
    private const int MaxRememberedRoutes = 100_000;

    private readonly RouteTableProvider _routes;
    private readonly TimeProvider _timeProvider;
    private readonly Lock _gate = new();
    private readonly ConcurrentDictionary<ulong, string> _routeOf = new();
    private CaptureSession[] _sessions = [];
    private int _remembered;
    private InstanceMap? _map;

    public CaptureHub(RouteTableProvider routes, TimeProvider timeProvider, DatagramTap tap)
    {
        _routes = routes;
        _timeProvider = timeProvider;
        Tap = tap;
    }

    /// <summary>The tap every backend client of the route table is created with.</summary>
    public DatagramTap Tap { get; }

    /// <summary>Whether a capture runs (read on the forwarding path: one volatile read).</summary>
    public bool IsActive => Volatile.Read(ref _sessions).Length != 0;

    /// <summary>Records which route forwards <paramref name="correlationId"/>, while a capture runs (for the <c>route</c> field and filter).</summary>
    public void NoteRoute(ulong correlationId, string route, string backend)
    {
        var sessions = Volatile.Read(ref _sessions);
        if (sessions.Length == 0)
        {
            return;
        }

        foreach (var session in sessions)
        {
            if (session.Filter.MatchesBackend(backend))
            {
                // Counted here: ConcurrentDictionary.Count takes every lock, too slow for each request.
                if (Interlocked.Increment(ref _remembered) <= MaxRememberedRoutes)
                {
                    _routeOf[correlationId] = route;
                }
                else
                {
                    Interlocked.Decrement(ref _remembered);
                }

                return;
            }
        }
    }

    /// <summary>Starts a session, or returns null when <see cref="MaxSessions"/> already run.</summary>
    public CaptureSession? TryStart(CaptureFilter filter)
    {
        lock (_gate)
        {
            if (_sessions.Length >= MaxSessions)
            {
                return null;
            }

            var session = new CaptureSession(filter);
            Volatile.Write(ref _sessions, [.. _sessions, session]);
            Tap.Observer = this;
            return session;
        }
    }

    public void Stop(CaptureSession session)
    {
        lock (_gate)
        {
            var remaining = _sessions.Where(s => s != session).ToArray();
            Volatile.Write(ref _sessions, remaining);
            if (remaining.Length == 0)
            {
                Tap.Observer = null;
                _routeOf.Clear();
                Volatile.Write(ref _remembered, 0);
            }
        }

        session.Complete();
    }

    public void OnDatagram(DatagramDirection direction, string backendPath, ReadOnlySpan<byte> data)
    {
        try
        {
            Observe(direction, backendPath, data);
        }
#pragma warning disable CA1031 // An observer never throws into a client's send or receive path.
        catch (Exception)
#pragma warning restore CA1031
        {
        }
    }

    private void Observe(DatagramDirection direction, string backendPath, ReadOnlySpan<byte> data)
    {
        var sessions = Volatile.Read(ref _sessions);
        if (sessions.Length == 0)
        {
            return;
        }

        var instance = Map().Find(backendPath);
        var interested = false;
        foreach (var session in sessions)
        {
            interested |= session.Filter.MatchesInstance(instance.Backends, backendPath);
        }

        if (!interested)
        {
            return;
        }

        var time = _timeProvider.GetUtcNow();
        if (instance.Raw)
        {
            var raw = new CapturedDatagram(time, direction, instance.Backends[0], backendPath, "RAW", data.Length) { Route = null };
            Offer(sessions, raw, instance.Backends, data, data);
            return;
        }

        if (!TryReadHeader(data, out var header, out var problem))
        {
            var malformed = new CapturedDatagram(time, direction, instance.Backends[0], backendPath, "MALFORMED", data.Length) { Malformed = problem };
            Offer(sessions, malformed, instance.Backends, data, data);
            return;
        }

        var route = _routeOf.GetValueOrDefault(header.CorrelationId);
        if (direction == DatagramDirection.Received && header.Kind is MessageKind.Response or MessageKind.Error or MessageKind.End && route is not null
            && (!header.IsFragment || IsLastFragment(data, header)))
        {
            if (_routeOf.TryRemove(header.CorrelationId, out _))
            {
                Interlocked.Decrement(ref _remembered);
            }
        }

        var kind = KindName(header.Kind);
        if (direction == DatagramDirection.Sent && data.Length > ProtocolConstants.MaxDatagram)
        {
            // A whole message handed to the socket: it left as fragments (docs/protocol.md section 6).
            var payload = data[ProtocolConstants.HeaderSize..];
            var count = (payload.Length + ProtocolConstants.MaxFragmentData - 1) / ProtocolConstants.MaxFragmentData;
            for (var i = 0; i < count; i++)
            {
                var part = payload.Slice(i * ProtocolConstants.MaxFragmentData, Math.Min(ProtocolConstants.MaxFragmentData, payload.Length - (i * ProtocolConstants.MaxFragmentData)));
                var fragment = Describe(time, direction, instance, backendPath, kind, header, route, ProtocolConstants.FragmentHeaderSize + part.Length, i, count, i == 0 ? payload : default);
                var wire = WantsWire(sessions) ? FragmentDatagram(data[..ProtocolConstants.HeaderSize], (uint)(i * ProtocolConstants.MaxFragmentData), part) : default;
                Offer(sessions, fragment, instance.Backends, part, wire);
            }

            return;
        }

        int index = 0, total = 1;
        ReadOnlySpan<byte> body = data[ProtocolConstants.HeaderSize..];
        if (header.IsFragment && data.Length >= ProtocolConstants.FragmentHeaderSize)
        {
            var offset = BinaryPrimitives.ReadUInt32BigEndian(data[ProtocolConstants.HeaderSize..]);
            index = (int)(offset / ProtocolConstants.MaxFragmentData);
            total = (int)((header.PayloadLength + ProtocolConstants.MaxFragmentData - 1) / ProtocolConstants.MaxFragmentData);
            body = data[ProtocolConstants.FragmentHeaderSize..];
        }

        var described = Describe(time, direction, instance, backendPath, kind, header, route, data.Length, index, total, index == 0 ? body : default);
        Offer(sessions, described, instance.Backends, body, data);
    }

    private static bool TryReadHeader(ReadOnlySpan<byte> data, out FrameHeader header, out string? problem)
    {
        problem = null;
        try
        {
            if (FrameHeader.TryRead(data, out header))
            {
                return true;
            }

            problem = $"{data.Length} bytes, shorter than the {ProtocolConstants.HeaderSize}-byte header";
            return false;
        }
        catch (ProtocolException ex)
        {
            header = default;
            problem = ex.Message;
            return false;
        }
    }

    private static bool IsLastFragment(ReadOnlySpan<byte> data, FrameHeader header) =>
        data.Length > ProtocolConstants.FragmentHeaderSize
        && BinaryPrimitives.ReadUInt32BigEndian(data[ProtocolConstants.HeaderSize..]) + (uint)(data.Length - ProtocolConstants.FragmentHeaderSize) >= header.PayloadLength;

    private static CapturedDatagram Describe(
        DateTimeOffset time, DatagramDirection direction, InstanceInfo instance, string backendPath, string kind, FrameHeader header, string? route, int size, int index, int count, ReadOnlySpan<byte> payloadStart)
    {
        var datagram = new CapturedDatagram(time, direction, instance.Backends[0], backendPath, kind, size)
        {
            Route = route,
            CorrelationId = header.CorrelationId,
            Attempt = header.Attempt,
            FragmentIndex = index,
            FragmentCount = count,
            Replay = (header.Flags & MessageFlags.Replay) != 0,
            BudgetMs = header.Kind == MessageKind.Request ? header.BudgetMs : null,
        };

        if (payloadStart.IsEmpty)
        {
            return datagram;
        }

        switch (header.Kind)
        {
            case MessageKind.Request when TryReadMethodAndTarget(payloadStart, out var method, out var target):
                datagram.Method = method;
                datagram.Target = target;
                break;
            case MessageKind.Response or MessageKind.ResponseHead when payloadStart.Length >= 2:
                datagram.Status = BinaryPrimitives.ReadUInt16BigEndian(payloadStart);
                break;
            case MessageKind.Error when payloadStart.Length >= 2:
                var code = (IpcErrorCode)BinaryPrimitives.ReadUInt16BigEndian(payloadStart);
                datagram.ErrorCode = Enum.IsDefined(code) ? code.ToString() : ((ushort)code).ToString(System.Globalization.CultureInfo.InvariantCulture);
                break;
        }

        return datagram;
    }

    /// <summary>The method (<c>str8</c>) and target (<c>str16</c>) at the start of a REQUEST payload (section 4.1).</summary>
    private static bool TryReadMethodAndTarget(ReadOnlySpan<byte> payload, out string? method, out string? target)
    {
        method = target = null;
        if (payload.Length < 1 || payload.Length < 1 + payload[0] + 2)
        {
            return false;
        }

        var methodLength = payload[0];
        var targetLength = BinaryPrimitives.ReadUInt16BigEndian(payload[(1 + methodLength)..]);
        if (payload.Length < 3 + methodLength + targetLength)
        {
            return false;
        }

        method = Encoding.ASCII.GetString(payload.Slice(1, methodLength));
        target = Encoding.UTF8.GetString(payload.Slice(3 + methodLength, targetLength));
        return true;
    }

    private static bool WantsWire(CaptureSession[] sessions)
    {
        foreach (var session in sessions)
        {
            if (session.Filter.Pcapng)
            {
                return true;
            }
        }

        return false;
    }

    /// <summary>The datagram a fragment of a sent message was on the wire (docs/protocol.md section 6).</summary>
    private static byte[] FragmentDatagram(ReadOnlySpan<byte> header, uint offset, ReadOnlySpan<byte> part)
    {
        var datagram = new byte[ProtocolConstants.FragmentHeaderSize + part.Length];
        header.CopyTo(datagram);
        FrameHeader.AddFlags(datagram, MessageFlags.Fragment);
        BinaryPrimitives.WriteUInt32BigEndian(datagram.AsSpan(ProtocolConstants.HeaderSize), offset);
        part.CopyTo(datagram.AsSpan(ProtocolConstants.FragmentHeaderSize));
        return datagram;
    }

    private static void Offer(CaptureSession[] sessions, CapturedDatagram datagram, string[] backends, ReadOnlySpan<byte> payload, ReadOnlySpan<byte> wire)
    {
        foreach (var session in sessions)
        {
            if (!session.Filter.Matches(datagram, backends))
            {
                continue;
            }

            // The payload bytes are copied per session (each may ask for a different length).
            var offered = datagram;
            if (session.Filter.Pcapng)
            {
                offered = datagram.Clone();
                offered.Wire = wire.ToArray();
            }
            else if (session.Filter.PayloadBytes > 0)
            {
                offered = datagram.Clone();
                var length = Math.Min(payload.Length, session.Filter.PayloadBytes);
                offered.Payload = payload[..length].ToArray();
                offered.PayloadTruncated = length < payload.Length;
            }

            session.Offer(offered);
        }
    }

    private static string KindName(MessageKind kind) => kind switch
    {
        MessageKind.Request => "REQUEST",
        MessageKind.Response => "RESPONSE",
        MessageKind.Error => "ERROR",
        MessageKind.Ping => "PING",
        MessageKind.Pong => "PONG",
        MessageKind.Cancel => "CANCEL",
        MessageKind.ResponseHead => "RESPONSE_HEAD",
        MessageKind.RequestHead => "REQUEST_HEAD",
        MessageKind.Chunk => "CHUNK",
        MessageKind.End => "END",
        MessageKind.Credit => "CREDIT",
        _ => "UNKNOWN",
    };

    private InstanceMap Map()
    {
        var table = _routes.Current;
        var map = Volatile.Read(ref _map);
        if (map is null || map.Version != table.Version)
        {
            map = new InstanceMap(table);
            Volatile.Write(ref _map, map);
        }

        return map;
    }

    /// <summary>What the current route table says about an instance path: the backends using it and their mode.</summary>
    internal readonly record struct InstanceInfo(string[] Backends, bool Raw);

    private sealed class InstanceMap
    {
        private static readonly InstanceInfo Unknown = new(["?"], false);
        private readonly Dictionary<string, InstanceInfo> _byPath = new(StringComparer.Ordinal);

        public InstanceMap(RouteTable table)
        {
            Version = table.Version;
            foreach (var backend in table.Backends.Values.OrderBy(b => b.Name, StringComparer.Ordinal))
            {
                foreach (var instance in backend.Instances)
                {
                    _byPath[instance.SocketPath] = _byPath.TryGetValue(instance.SocketPath, out var known)
                        ? known with { Backends = [.. known.Backends, backend.Name] }
                        : new InstanceInfo([backend.Name], backend.Mode == Configuration.BackendMode.Raw);
                }
            }
        }

        public long Version { get; }

        public InstanceInfo Find(string path) => _byPath.GetValueOrDefault(path, Unknown);
    }
}
