using Gateway.Configuration;
using Gateway.Routing;

namespace Gateway.Resilience;

/// <summary>
/// Chooses the instance of an attempt: among the available instances (not ejected, circuit not open) not yet
/// tried by this request, by the backend's <see cref="LoadBalancingPolicy"/>; failing that an available one
/// already tried; failing that any (its breaker then answers for it).
/// </summary>
internal static class InstanceSelector
{
    public static BackendInstance Select(GatewayBackend backend, IReadOnlyList<BackendInstance> tried)
    {
        var instances = backend.Instances;
        if (instances.Count == 1)
        {
            return instances[0];
        }

        return Pick(backend, i => i.Resilience.IsAvailable && !Contains(tried, i))
            ?? Pick(backend, i => i.Resilience.IsAvailable)
            ?? Pick(backend, i => !Contains(tried, i))
            ?? Pick(backend, static _ => true)!;
    }

    private static BackendInstance? Pick(GatewayBackend backend, Func<BackendInstance, bool> eligible)
    {
        var instances = backend.Instances;
        if (backend.LoadBalancing == LoadBalancingPolicy.PowerOfTwoChoices)
        {
            BackendInstance? first = null;
            BackendInstance? second = null;
            var seen = 0;
            foreach (var instance in instances)
            {
                if (!eligible(instance))
                {
                    continue;
                }

                // Reservoir sampling of two distinct eligible instances.
                seen++;
                if (first is null)
                {
                    first = instance;
                }
                else if (second is null)
                {
                    second = instance;
                }
                else
                {
                    var j = Random.Shared.Next(seen);
                    if (j == 0)
                    {
                        first = instance;
                    }
                    else if (j == 1)
                    {
                        second = instance;
                    }
                }
            }

            if (second is null)
            {
                return first;
            }

            return second.InFlight < first!.InFlight || (second.InFlight == first.InFlight && Random.Shared.Next(2) == 0) ? second : first;
        }

        var start = backend.NextRoundRobin();
        for (var k = 0; k < instances.Count; k++)
        {
            var instance = instances[(int)((start + (uint)k) % (uint)instances.Count)];
            if (eligible(instance))
            {
                return instance;
            }
        }

        return null;
    }

    private static bool Contains(IReadOnlyList<BackendInstance> tried, BackendInstance instance)
    {
        for (var i = 0; i < tried.Count; i++)
        {
            if (ReferenceEquals(tried[i], instance))
            {
                return true;
            }
        }

        return false;
    }
}
