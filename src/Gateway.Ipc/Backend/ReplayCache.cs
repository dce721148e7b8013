using System.Net;
using System.Net.Sockets;

namespace Gateway.Ipc.Backend;

/// <summary>Identifies a request across its attempts: (sender address bytes, correlation ID).</summary>
internal readonly struct RequestKey : IEquatable<RequestKey>
{
    private readonly int _hash;

    public RequestKey(SocketAddress address, ulong correlationId)
    {
        Address = address;
        CorrelationId = correlationId;
        var hash = default(HashCode);
        hash.AddBytes(address.Buffer.Span[..address.Size]);
        hash.Add(correlationId);
        _hash = hash.ToHashCode();
    }

    /// <summary>A private copy of the sender's address; never mutated.</summary>
    public SocketAddress Address { get; }

    public ulong CorrelationId { get; }

    public bool Equals(RequestKey other) =>
        CorrelationId == other.CorrelationId
        && Address.Size == other.Address.Size
        && Address.Buffer.Span[..Address.Size].SequenceEqual(other.Address.Buffer.Span[..other.Address.Size]);

    public override bool Equals(object? obj) => obj is RequestKey other && Equals(other);

    public override int GetHashCode() => _hash;

    /// <summary>Copies <paramref name="source"/>, which the receive loop reuses.</summary>
    public static SocketAddress CopyAddress(SocketAddress source)
    {
        var copy = new SocketAddress(AddressFamily.Unix, source.Size);
        source.Buffer.Span[..source.Size].CopyTo(copy.Buffer.Span);
        return copy;
    }
}

/// <summary>Why an execution's cancellation token fired.</summary>
internal enum CancelReason
{
    /// <summary>Not cancelled by us: the deadline timer fired.</summary>
    Deadline = 0,

    /// <summary>The client sent CANCEL.</summary>
    ClientCancel = 1,

    /// <summary>The server shut down.</summary>
    Shutdown = 2,

    /// <summary>The client broke a rule of the request's reply stream (a malformed CREDIT).</summary>
    Violation = 3,
}

/// <summary>
/// The requests a backend has seen, keyed by <see cref="RequestKey"/>: executing ones (to drop duplicates and to
/// cancel them) and completed ones with their encoded reply (to replay it, docs/protocol.md section 5). Completed
/// entries are bounded by count, by total reply bytes and by age; the oldest is evicted first. Expiry is checked
/// lazily against the <see cref="TimeProvider"/> on every access. Thread-safe (one lock; all operations are O(1)
/// amortised).
/// </summary>
internal sealed class ReplayCache
{
    private readonly Lock _lock = new();
    private readonly Dictionary<RequestKey, Entry> _entries = [];
    private readonly LinkedList<Entry> _completed = new(); // oldest completion first
    private readonly int _maxEntries;
    private readonly TimeSpan _ttl;
    private readonly long _maxBytes;
    private long _bytes;

    public ReplayCache(int maxEntries, TimeSpan ttl, long maxBytes)
    {
        _maxEntries = maxEntries;
        _ttl = ttl;
        _maxBytes = maxBytes;
    }

    public int MaxEntries => _maxEntries;

    public TimeSpan Ttl => _ttl;

    private bool Enabled => _maxEntries > 0 && _ttl > TimeSpan.Zero && _maxBytes > 0;

    /// <summary>Finds the entry for <paramref name="key"/>, unless it has expired.</summary>
    public Entry? Find(in RequestKey key, DateTimeOffset now)
    {
        lock (_lock)
        {
            Purge(now);
            return _entries.GetValueOrDefault(key);
        }
    }

    /// <summary>Registers an executing request. The caller has checked that the key is absent.</summary>
    public void Add(Entry entry)
    {
        lock (_lock)
        {
            _entries[entry.Key] = entry;
        }
    }

    /// <summary>Marks an execution finished; keeps its reply for replay if the cache is enabled.</summary>
    public void Complete(Entry entry, byte[] reply, DateTimeOffset now)
    {
        lock (_lock)
        {
            if (!Enabled)
            {
                _entries.Remove(entry.Key);
                return;
            }

            entry.Reply = reply;
            entry.CompletedAt = now;
            entry.Node = _completed.AddLast(entry);
            _bytes += reply.Length;
            while (_completed.Count > _maxEntries || _bytes > _maxBytes)
            {
                RemoveCompleted(_completed.First!.Value);
            }

            Purge(now);
        }
    }

    /// <summary>Forgets an execution that produced no cacheable reply.</summary>
    public void Remove(Entry entry)
    {
        lock (_lock)
        {
            if (entry.Node is not null)
            {
                RemoveCompleted(entry);
            }
            else if (_entries.TryGetValue(entry.Key, out var current) && ReferenceEquals(current, entry))
            {
                _entries.Remove(entry.Key);
            }
        }
    }

    /// <summary>The number of completed replies held, after dropping expired ones.</summary>
    public int Count(DateTimeOffset now)
    {
        lock (_lock)
        {
            Purge(now);
            return _completed.Count;
        }
    }

    private void Purge(DateTimeOffset now)
    {
        while (_completed.First is { } oldest && now - oldest.Value.CompletedAt >= _ttl)
        {
            RemoveCompleted(oldest.Value);
        }
    }

    private void RemoveCompleted(Entry entry)
    {
        _completed.Remove(entry.Node!);
        entry.Node = null;
        _bytes -= entry.Reply!.Length;
        _entries.Remove(entry.Key);
    }

    /// <summary>One request: executing while <see cref="Reply"/> is null, then completed.</summary>
    internal sealed class Entry : IDisposable
    {
        private int _reason = -1;

        public Entry(RequestKey key, CancellationTokenSource cancellation)
        {
            Key = key;
            Cancellation = cancellation;
        }

        public RequestKey Key { get; }

        /// <summary>The handler's token source (deadline timer, CANCEL, shutdown).</summary>
        public CancellationTokenSource Cancellation { get; }

        public CancellationTokenRegistration ShutdownRegistration { get; set; }

        /// <summary>The encoded reply (attempt of the execution, no REPLAY flag) once completed; never mutated.</summary>
        public byte[]? Reply { get; set; }

        public DateTimeOffset CompletedAt { get; set; }

        public LinkedListNode<Entry>? Node { get; set; }

        /// <summary>Why the token fired; <see cref="CancelReason.Deadline"/> when nobody else cancelled it.</summary>
        public CancelReason Reason => _reason < 0 ? CancelReason.Deadline : (CancelReason)_reason;

        /// <summary>Cancels the handler's token without running its callbacks on the calling thread.</summary>
        public void Cancel(CancelReason reason)
        {
            Interlocked.CompareExchange(ref _reason, (int)reason, -1);
            try
            {
                _ = Cancellation.CancelAsync();
            }
            catch (ObjectDisposedException)
            {
                // The execution finished meanwhile.
            }
        }

        public void Dispose()
        {
            ShutdownRegistration.Dispose();
            Cancellation.Dispose();
        }
    }
}
