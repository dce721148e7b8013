namespace Gateway.Tests.Resilience;

/// <summary>Configuration for one route <c>/api/{**rest}</c> to backend <c>b</c> with the given instances.</summary>
internal static class ResilienceSettings
{
    public static Dictionary<string, string?> Route(params string[] instances)
    {
        var settings = new Dictionary<string, string?>
        {
            ["Gateway:Routes:api:Path"] = "/api/{**rest}",
            ["Gateway:Routes:api:Backend"] = "b",
            ["Gateway:Backends:b:Timeout"] = "00:00:10",
            ["Gateway:Backends:b:AttemptTimeout"] = "00:00:01",
            ["Gateway:Backends:b:Retry:BaseDelay"] = "00:00:00",
            ["Gateway:Backends:b:Retry:MaxDelay"] = "00:00:00",
        };
        for (var i = 0; i < instances.Length; i++)
        {
            settings[$"Gateway:Backends:b:Instances:{i}"] = instances[i];
        }

        return settings;
    }
}
