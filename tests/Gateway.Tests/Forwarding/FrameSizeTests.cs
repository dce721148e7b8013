using System.Diagnostics;
using Gateway.Forwarding;
using Gateway.Ipc.Protocol;
using Gateway.Security;
using Microsoft.AspNetCore.Http;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// The frame buffer a forwarded request rents: big enough that encoding its head never grows it, small enough that a
/// small request lands in the pool's 512-byte bucket (it is held for the request's whole life).
/// </summary>
public class FrameSizeTests
{
    private const long MaxBody = 1 << 20;

    [Fact]
    public void CurlLikeGet_WithTraceContextAndCallerHeaders_FitsItsEstimate_AndTheEstimateIsAtMost512Bytes()
    {
        var context = Request("GET", "/api/items/42", "?verbose=1", ("Host", "localhost"), ("User-Agent", "curl/7.88.1"), ("Accept", "*/*"));

        var (estimate, encoded) = EstimateAndEncode(context);

        Assert.True(encoded <= estimate, $"head of {encoded} bytes exceeds the estimate of {estimate}");
        Assert.True(estimate <= 512, $"estimate {estimate} does not fit the 512-byte bucket");
    }

    [Fact]
    public void ManyLongHeaders_FitTheirEstimate()
    {
        var headers = Enumerable.Range(0, 40).Select(i => ($"x-custom-{i}", new string('v', 100 + i))).Append(("Cookie", new string('c', 2048))).ToArray();
        var context = Request("PUT", "/api/" + new string('p', 300), "", headers);

        var (estimate, encoded) = EstimateAndEncode(context);

        Assert.True(encoded <= estimate, $"head of {encoded} bytes exceeds the estimate of {estimate}");
        Assert.True(estimate < encoded + 512, $"estimate {estimate} is far above the head's {encoded} bytes");
    }

    [Fact]
    public void DeclaredBody_IsAddedToTheHead_CappedByTheRoutesLimit_AndARawBufferHoldsTheBodyAlone()
    {
        var context = Request("POST", "/api/items", "", ("Host", "localhost"), ("Content-Type", "application/json"));
        context.Request.ContentLength = 4096;
        var head = ForwardingHandler.InitialFrameSize(context.Request, MaxBody) - 4096;

        Assert.InRange(head, 1, 512);
        Assert.Equal(head + 1000, ForwardingHandler.InitialFrameSize(context.Request, maxBodySize: 1000));
        Assert.Equal(4096, ForwardingHandler.InitialFrameSize(context.Request, MaxBody, withHead: false));

        context.Request.ContentLength = 50L << 20;
        Assert.Equal(1 << 20, ForwardingHandler.InitialFrameSize(context.Request, 100L << 20));
    }

    private static (int Estimate, int Encoded) EstimateAndEncode(DefaultHttpContext context)
    {
        using var activity = new Activity("test").SetIdFormat(ActivityIdFormat.W3C);
        activity.TraceStateString = "vendor=" + new string('s', 40);
        activity.Start();
        var estimate = ForwardingHandler.InitialFrameSize(context.Request, MaxBody);
        using var writer = new FrameWriter(16);
        ForwardingHandler.EncodeRequestHead(context, writer, correlationId: 1, TimeSpan.FromSeconds(30), forwardCaller: true);
        return (estimate, writer.WrittenMemory.Length);
    }

    private static DefaultHttpContext Request(string method, string path, string query, params (string Name, string Value)[] headers)
    {
        var context = new DefaultHttpContext { TraceIdentifier = "0HNHGK4C2JQ7V:00000001" };
        context.Request.Method = method;
        context.Request.Path = path;
        context.Request.QueryString = new QueryString(query);
        context.Request.Scheme = "http";
        foreach (var (name, value) in headers)
        {
            context.Request.Headers.Append(name, value);
        }

        context.Features.Set<IPeerCredentialsFeature>(new FakeCaller());
        return context;
    }

    private sealed class FakeCaller : IPeerCredentialsFeature
    {
        public int Pid => int.MaxValue;

        public uint Uid => uint.MaxValue;

        public uint Gid => uint.MaxValue - 1;

        public IReadOnlyList<uint> Groups => [];
    }
}
