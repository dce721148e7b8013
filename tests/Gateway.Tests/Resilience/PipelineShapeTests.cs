using Gateway.Ipc.Client;
using Gateway.Resilience;
using Gateway.Routing;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging.Abstractions;
using Polly;

namespace Gateway.Tests.Resilience;

/// <summary>The route pipeline a request runs through: with retries, or without for a request that is never retried.</summary>
public class PipelineShapeTests
{
    [Fact]
    public async Task RequestThatIsNeverRetried_GetsThePipelineWithoutRetries_WhileTheRoutesPipelineRetriesTheSameOutcome()
    {
        using var dir = new TempSocketDirectory();
        var settings = ResilienceSettings.Route(dir.Socket("b.sock"));
        settings["Gateway:Backends:b:Retry:MaxAttempts"] = "3";
        await using var factory = new GatewayFactory(dir, settings);
        var pipelines = factory.Services.GetRequiredService<ForwardingPipelineProvider>();
        var route = Assert.Single(factory.Services.GetRequiredService<RouteTableProvider>().Current.Routes);

        Assert.Equal(3, await CallsAsync(pipelines.GetPipeline<DatagramReply>(route, retryable: true), route));
        Assert.Equal(1, await CallsAsync(pipelines.GetPipeline<DatagramReply>(route, retryable: false), route));
    }

    /// <summary>Runs an attempt that always times out (a retryable failure, for a request marked retryable) and counts the calls.</summary>
    private static async Task<int> CallsAsync(ResiliencePipeline<DatagramReply> pipeline, GatewayRoute route)
    {
        var attempt = new ForwardingAttempt(route, route.Backend.Instances[0], ReadOnlyMemory<byte>.Empty, 1, idempotent: true, retryable: true, TimeProvider.System, NullLogger.Instance);
        var context = ResilienceContextPool.Shared.Get();
        context.Properties.Set(ForwardingPipelineProvider.Attempt, attempt);
        var calls = 0;
        try
        {
            var outcome = await pipeline.ExecuteOutcomeAsync(
                (_, path) =>
                {
                    calls++;
                    return Outcome.FromExceptionAsValueTask<DatagramReply>(new DatagramException(DatagramFailure.Timeout, path));
                },
                context,
                route.Backend.Instances[0].SocketPath);
            Assert.IsType<DatagramException>(outcome.Exception);
            return calls;
        }
        finally
        {
            ResilienceContextPool.Shared.Return(context);
        }
    }
}
