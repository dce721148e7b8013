using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Mvc;

namespace Gateway.Apis;

/// <summary>
/// The JSON metadata of every type the gateway's minimal APIs return, generated at build time: Native AOT has no
/// reflection-based serialization (docs/sidecar.md). Registered first in the HTTP JSON options
/// (<see cref="GatewayJsonServiceCollectionExtensions.AddGatewayJson"/>), which the endpoints, the OpenAPI document's
/// schemas and problem details use. A new endpoint type goes here; the AOT publish test fails without it.
/// The extension values of problem details (<c>requestId</c>, <c>limit</c>, …) are strings and numbers.
/// </summary>
[JsonSourceGenerationOptions(JsonSerializerDefaults.Web)]
[JsonSerializable(typeof(BackendStatus[]))]
[JsonSerializable(typeof(ProblemDetails))]
[JsonSerializable(typeof(HttpValidationProblemDetails))]
[JsonSerializable(typeof(string))]
[JsonSerializable(typeof(int))]
[JsonSerializable(typeof(long))]
[JsonSerializable(typeof(double))]
internal sealed partial class GatewayJsonContext : JsonSerializerContext;

internal static class GatewayJsonServiceCollectionExtensions
{
    /// <summary>Puts <see cref="GatewayJsonContext"/> first in the resolver chain of the HTTP JSON options.</summary>
    public static IServiceCollection AddGatewayJson(this IServiceCollection services) =>
        services.ConfigureHttpJsonOptions(options => options.SerializerOptions.TypeInfoResolverChain.Insert(0, GatewayJsonContext.Default));
}
