using System.Text;
using FsCheck;
using FsCheck.Fluent;
using FsCheck.Xunit;
using Gateway.Ipc.Protocol;

namespace Gateway.Ipc.Tests.Protocol;

public class RoundTripProperties
{
    private static readonly string[] Methods = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "PROPFIND"];

    [Property(MaxTest = 300)]
    public void Request_RoundTrips(ulong id, ushort attempt, uint budget, byte methodIndex, NonNull<string> path, byte[] body, NonNull<string>[] headerValues)
    {
        var correlationId = id == 0 ? 1 : id;
        var method = Methods[methodIndex % Methods.Length];
        var target = "/" + path.Get;
        if (Encoding.UTF8.GetByteCount(target) > ushort.MaxValue || headerValues.Length > 50)
        {
            return;
        }

        using var writer = new FrameWriter();
        writer.BeginRequest(correlationId, attempt, budget, method, target);
        for (var i = 0; i < headerValues.Length; i++)
        {
            writer.AddHeader($"X-H{i}", headerValues[i].Get);
        }

        writer.WriteBody(body);
        var frame = writer.Complete().ToArray();

        var header = FrameHeader.ReadDatagram(frame);
        var request = RequestView.Read(frame.AsSpan(ProtocolConstants.HeaderSize));
        Assert.Equal(new FrameHeader(MessageKind.Request, MessageFlags.None, attempt, correlationId, budget, (uint)(frame.Length - 24)), header);
        Assert.Equal(method, request.GetMethod());
        Assert.Equal(Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(target)), request.GetTarget());
        Assert.Equal(body, request.Body.ToArray());
        Assert.Equal(headerValues.Length, request.Headers.Count);
        var n = 0;
        foreach (var field in request.Headers)
        {
            Assert.Equal($"x-h{n}", Encoding.ASCII.GetString(field.Name));
            Assert.Equal(Encoding.UTF8.GetString(Encoding.UTF8.GetBytes(headerValues[n].Get)), Encoding.UTF8.GetString(field.Value));
            n++;
        }
    }

    [Property(MaxTest = 300)]
    public Property Response_RoundTrips(ulong id, ushort attempt, byte[] body)
    {
        var correlationId = id == 0 ? 1 : id;
        return Prop.ForAll(Gen.Choose(200, 599).ToArbitrary(), status =>
        {
            using var writer = new FrameWriter(16);
            writer.BeginResponse(correlationId, attempt, status);
            writer.AddHeader("content-type", "application/octet-stream");
            writer.WriteBody(body);
            var frame = writer.Complete().ToArray();

            var header = FrameHeader.ReadDatagram(frame);
            var response = ResponseView.Read(frame.AsSpan(ProtocolConstants.HeaderSize));
            return header.CorrelationId == correlationId && header.Attempt == attempt && response.Status == status
                && response.Body.SequenceEqual(body) && response.Headers.GetValue("content-type") == "application/octet-stream";
        });
    }

    [Fact]
    public void Writer_IsReusable_AndPatchesAttemptAndBudget()
    {
        using var writer = new FrameWriter();
        writer.BeginRequest(9, 1, 1000, "POST", "/a");
        writer.WriteBody(new byte[10_000]);
        writer.Complete();
        FrameHeader.PatchAttempt(writer.WrittenSpan, 3);
        FrameHeader.PatchBudget(writer.WrittenSpan, 250);

        var header = FrameHeader.ReadDatagram(writer.WrittenSpan);
        Assert.Equal(3, header.Attempt);
        Assert.Equal(250u, header.BudgetMs);

        writer.BeginRequest(10, 1, 0, "GET", "/b");
        var second = FrameHeader.ReadDatagram(writer.Complete().Span);
        Assert.Equal(10ul, second.CorrelationId);
        Assert.Equal("/b", RequestView.Read(writer.WrittenSpan[24..]).GetTarget());
    }

    [Fact]
    public void Error_LongMessage_IsTruncatedAtCharacterBoundary()
    {
        using var writer = new FrameWriter();
        writer.WriteError(5, 1, IpcErrorCode.Internal, new string('é', 2000));

        var error = ErrorView.Read(writer.WrittenSpan[24..]);
        Assert.True(error.Message.Length <= ProtocolConstants.MaxErrorMessageLength);
        Assert.Equal(new string('é', error.Message.Length / 2), error.GetMessage());
    }
}
