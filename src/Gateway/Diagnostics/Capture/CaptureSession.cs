using System.Threading.Channels;

namespace Gateway.Diagnostics.Capture;

/// <summary>One running capture: a bounded queue between the datagram paths (writers) and the HTTP response (reader).</summary>
internal sealed class CaptureSession(CaptureFilter filter)
{
    /// <summary>Events held for a slow reader; beyond this they are dropped and counted in <see cref="Lost"/>.</summary>
    public const int QueueCapacity = 4096;

    private readonly Channel<CapturedDatagram> _queue = Channel.CreateBounded<CapturedDatagram>(new BoundedChannelOptions(QueueCapacity)
    {
        FullMode = BoundedChannelFullMode.Wait, // TryWrite fails when full: the event is dropped and counted, the writer never waits
        SingleReader = true,
        SingleWriter = false,
    });

    private long _lost;

    public CaptureFilter Filter { get; } = filter;

    /// <summary>Events dropped because the reader fell behind.</summary>
    public long Lost => Interlocked.Read(ref _lost);

    public ChannelReader<CapturedDatagram> Reader => _queue.Reader;

    public void Offer(CapturedDatagram datagram)
    {
        if (!_queue.Writer.TryWrite(datagram))
        {
            Interlocked.Increment(ref _lost);
        }
    }

    public void Complete() => _queue.Writer.TryComplete();
}
