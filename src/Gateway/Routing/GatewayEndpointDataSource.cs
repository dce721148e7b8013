using Gateway.Forwarding;
using Microsoft.Extensions.Primitives;

namespace Gateway.Routing;

/// <summary>
/// Publishes one ASP.NET Core endpoint per configured route, rebuilt whenever the route table changes, so
/// ASP.NET Core routing does the matching (and answers 405 for a known path with another method).
/// </summary>
internal sealed class GatewayEndpointDataSource : EndpointDataSource
{
    private readonly RouteTableProvider _provider;
    private readonly RequestDelegate _forward;
    private readonly Lock _gate = new();
    private (long Version, IReadOnlyList<Endpoint> Endpoints) _cache = (-1, []);

    public GatewayEndpointDataSource(RouteTableProvider provider, ForwardingHandler handler)
    {
        _provider = provider;
        _forward = handler.HandleAsync;
    }

    public override IReadOnlyList<Endpoint> Endpoints
    {
        get
        {
            var table = _provider.Current;
            lock (_gate)
            {
                if (_cache.Version != table.Version)
                {
                    _cache = (table.Version, BuildEndpoints(table));
                }

                return _cache.Endpoints;
            }
        }
    }

    public override IChangeToken GetChangeToken() => _provider.GetRoutingChangeToken();

    private List<Endpoint> BuildEndpoints(RouteTable table)
    {
        var endpoints = new List<Endpoint>(table.Routes.Count);
        foreach (var route in table.Routes)
        {
            var builder = new RouteEndpointBuilder(_forward, route.Pattern, order: 0)
            {
                DisplayName = $"Gateway route '{route.Name}' ({route.PathTemplate})",
            };
            builder.Metadata.Add(route);
            if (route.Methods.Count > 0)
            {
                builder.Metadata.Add(new HttpMethodMetadata(route.Methods));
            }

            endpoints.Add(builder.Build());
        }

        return endpoints;
    }
}
