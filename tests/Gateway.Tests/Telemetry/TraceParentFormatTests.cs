using System.Diagnostics;
using Gateway.Forwarding;

namespace Gateway.Tests.Telemetry;

/// <summary>The traceparent the gateway writes into a request frame is the activity's own W3C Id, character for character.</summary>
public sealed class TraceParentFormatTests
{
    [Theory]
    [InlineData(null, false)]
    [InlineData(null, true)]
    [InlineData("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01", false)]
    [InlineData("00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00", true)]
    public void FormattedTraceParent_IsTheActivityId(string? parent, bool recorded)
    {
        using var activity = new Activity("test");
        activity.SetIdFormat(ActivityIdFormat.W3C);
        if (parent is not null)
        {
            activity.SetParentId(parent);
        }

        activity.Start();
        activity.ActivityTraceFlags = recorded ? ActivityTraceFlags.Recorded : ActivityTraceFlags.None;
        Span<char> formatted = stackalloc char[55];

        ForwardingHandler.FormatTraceParent(activity, formatted);

        Assert.Equal(activity.Id, formatted.ToString());
    }
}
