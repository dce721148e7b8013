using System.Globalization;
using System.Text.Json.Nodes;
using Gateway.Configuration;
using Gateway.Routing;
using Microsoft.AspNetCore.Http.Metadata;
using Microsoft.AspNetCore.OpenApi;
using Microsoft.AspNetCore.Routing.Patterns;
using Microsoft.Extensions.Options;
using Microsoft.OpenApi;

namespace Gateway.OpenApi;

/// <summary>
/// Completes the generated document with what ApiExplorer cannot see: every configured route of the
/// <em>current</em> route table (read at generation time, so reloads show up), the gateway's own endpoints
/// that carry no delegate metadata (health checks), the problem-details errors, the <c>x-gateway-*</c>
/// extensions, the loopback TCP server for Swagger UI, and a <c>curl --unix-socket</c> line per operation.
/// </summary>
internal sealed class GatewayDocumentTransformer(RouteTableProvider routes, EndpointDataSource endpoints, IOptions<GatewayOptions> options) : IOpenApiDocumentTransformer
{
    private static readonly (string Status, string Description)[] Problems =
    [
        ("404", "No route matches the path (e.g. the route was removed by a configuration reload)."),
        ("413", "The request body exceeds the route's limit, or the backend refused it as too large."),
        ("502", "The backend answered an error, or its reply broke the wire protocol."),
        ("503", "The backend is not running or its receive queue stayed full (`Retry-After`)."),
        ("504", "No reply within the route's time budget, or the backend ran out of time."),
    ];

    public Task TransformAsync(OpenApiDocument document, OpenApiDocumentTransformerContext context, CancellationToken cancellationToken)
    {
        var gateway = options.Value;
        document.Info ??= new OpenApiInfo();
        document.Info.Title = "Gateway";
        document.Info.Description = "HTTP on a Unix socket, forwarded as datagrams to backend processes. "
            + "The gateway's own endpoints and every configured route (as configured now: the document follows reloads).";
        document.Paths ??= [];
        var problem = AddProblemSchema(document);
        var table = routes.Current;

        foreach (var route in table.Routes)
        {
            AddRoute(document, route, problem, table.CallerRule, gateway.RateLimiting.Enabled);
        }

        AddOwnEndpoints(document);
        AddCurlCommands(document, gateway.Listen.UnixSocket);

        if (gateway.Listen.TcpPort is { } port)
        {
            // Swagger UI's "Try it out" runs in the browser, which cannot reach a Unix socket.
            document.Servers = [new OpenApiServer
            {
                Url = string.Create(CultureInfo.InvariantCulture, $"http://127.0.0.1:{port}"),
                Description = "Loopback TCP listener (Gateway:Listen:TcpPort); the same API is on the Unix socket " + gateway.Listen.UnixSocket,
            }];
        }

        document.Tags ??= new HashSet<OpenApiTag>();
        document.Tags.Add(new OpenApiTag { Name = GatewayOpenApi.RoutesTag, Description = "Configured routes, forwarded to datagram backends." });
        return Task.CompletedTask;
    }

    private static void AddRoute(OpenApiDocument document, GatewayRoute route, OpenApiSchemaReference problem, Security.CallerRule? globalRule, bool rateLimited)
    {
        var rules = string.Join(" and ", new[] { globalRule?.Name, route.CallerRule?.Name }.OfType<string>().Select(n => "`" + n + "`"));
        var path = CurlCommand.OpenApiPath(route.Pattern);
        var item = GetPathItem(document, path);
        var raw = route.Backend.Mode == BackendMode.Raw;
        var methods = route.Methods.Count > 0 ? route.Methods : GatewayOpenApi.DefaultMethods;
        foreach (var method in methods)
        {
            var operation = new OpenApiOperation
            {
                OperationId = route.Name + "_" + method.ToLowerInvariant(),
                Summary = route.Summary ?? $"Route '{route.Name}' → backend '{route.Backend.Name}'",
                Description = Describe(route),
                Tags = new HashSet<OpenApiTagReference> { new(GatewayOpenApi.RoutesTag, document) },
                Parameters = [.. PathParameters(route.Pattern)],
                Responses = [],
            };
            if (HasBody(method))
            {
                operation.RequestBody = new OpenApiRequestBody
                {
                    Description = string.Create(CultureInfo.InvariantCulture, $"Forwarded to the backend as is (at most {route.MaxBodySize} bytes)."),
                    Required = false,
                    Content = raw
                        ? new Dictionary<string, OpenApiMediaType> { ["application/octet-stream"] = Binary() }
                        : new Dictionary<string, OpenApiMediaType> { ["text/plain"] = Text(), ["application/octet-stream"] = Binary() },
                };
            }

            var replyType = route.ContentType ?? (raw ? "application/octet-stream" : "*/*");
            operation.Responses["200"] = new OpenApiResponse
            {
                Description = raw ? "The daemon's reply datagram." : "The backend's reply (its status, headers and body).",
                Content = new Dictionary<string, OpenApiMediaType> { [replyType] = Text() },
            };
            if (route.Methods.Count > 0)
            {
                operation.Responses["405"] = ProblemResponse($"Methods other than {string.Join(", ", route.Methods)} on this path (`Allow` lists them).", problem);
            }

            foreach (var (status, description) in Problems)
            {
                operation.Responses[status] = ProblemResponse(description, problem);
            }

            if (rules.Length > 0)
            {
                operation.Responses["403"] = ProblemResponse($"The caller (by the Unix socket's peer credentials) is not allowed by {rules}; `rule` names the one it failed.", problem);
            }

            if (rateLimited)
            {
                operation.Responses["429"] = ProblemResponse("The caller's uid exceeded `Gateway:RateLimiting` (rate: with `Retry-After`; or requests in flight).", problem);
            }

            operation.Responses["400"] = ProblemResponse("The target is refused by the path rule (dot or empty segments, encoded `/` `\\` `?` `#` `%`, `;`, control characters, bad or overlong UTF-8, characters that fold to ASCII); `reason` names it. See docs/security.md.", problem);
            operation.Responses["431"] = ProblemResponse("Too many header fields, or too large in total (`Gateway:Limits`; `limit` and `actual` given).", problem);

            operation.Extensions = new Dictionary<string, IOpenApiExtension>
            {
                [GatewayOpenApi.RouteExtension] = new JsonNodeExtension(JsonValue.Create(route.Name)),
                [GatewayOpenApi.BackendExtension] = new JsonNodeExtension(JsonValue.Create(route.Backend.Name)),
                [GatewayOpenApi.ModeExtension] = new JsonNodeExtension(JsonValue.Create(route.Backend.Mode.ToString())),
                [GatewayOpenApi.TimeoutExtension] = new JsonNodeExtension(JsonValue.Create(route.Timeout.ToString("c", CultureInfo.InvariantCulture))),
                [GatewayOpenApi.MaxBodySizeExtension] = new JsonNodeExtension(JsonValue.Create(route.MaxBodySize)),
                [GatewayOpenApi.InstancesExtension] = new JsonNodeExtension(new JsonArray([.. route.Backend.Instances.Select(i => JsonValue.Create(i.SocketPath))])),
            };
            item.Operations ??= [];
            item.Operations[new HttpMethod(method)] = operation;
        }
    }

    private static string Describe(GatewayRoute route)
    {
        var text = route.Description is null ? string.Empty : route.Description + "\n\n";
        return text + string.Create(CultureInfo.InvariantCulture,
            $"Forwarded to backend `{route.Backend.Name}` ({route.Backend.Mode}, {route.Backend.Instances.Count} instance(s)); timeout {route.Timeout:c}; body limit {route.MaxBodySize} bytes.");
    }

    private static IEnumerable<IOpenApiParameter> PathParameters(RoutePattern pattern)
    {
        foreach (var parameter in pattern.Parameters)
        {
            yield return new OpenApiParameter
            {
                Name = parameter.Name,
                In = ParameterLocation.Path,
                Required = true,
                Description = parameter.IsCatchAll
                    ? "The rest of the path; may span segments (`a/b/c`), sent unescaped."
                    : "A path segment.",
                Schema = new OpenApiSchema { Type = JsonSchemaType.String },
            };
        }
    }

    /// <summary>
    /// Endpoints that ApiExplorer skips because they have no delegate metadata (the health checks, plain
    /// <c>Map(pattern, RequestDelegate)</c>): documented from their route pattern, name, tags and methods.
    /// </summary>
    private void AddOwnEndpoints(OpenApiDocument document)
    {
        foreach (var endpoint in endpoints.Endpoints.OfType<RouteEndpoint>())
        {
            var metadata = endpoint.Metadata;
            if (metadata.GetMetadata<GatewayRoute>() is not null
                || metadata.GetMetadata<IExcludeFromDescriptionMetadata>() is { ExcludeFromDescription: true })
            {
                continue;
            }

            var path = CurlCommand.OpenApiPath(endpoint.RoutePattern);
            var methods = metadata.GetMetadata<IHttpMethodMetadata>()?.HttpMethods is { Count: > 0 } m ? m : ["GET"];
            foreach (var method in methods)
            {
                var item = GetPathItem(document, path);
                var key = new HttpMethod(method);
                if (item.Operations?.ContainsKey(key) == true)
                {
                    continue; // ApiExplorer described it already
                }

                var operation = new OpenApiOperation
                {
                    OperationId = metadata.GetMetadata<IEndpointNameMetadata>()?.EndpointName,
                    Summary = metadata.GetMetadata<IEndpointSummaryMetadata>()?.Summary ?? endpoint.DisplayName,
                    Description = metadata.GetMetadata<IEndpointDescriptionMetadata>()?.Description,
                    Parameters = [.. PathParameters(endpoint.RoutePattern)],
                    Responses = [],
                };
                var tags = metadata.GetOrderedMetadata<ITagsMetadata>().SelectMany(t => t.Tags).Distinct(StringComparer.Ordinal).ToList();
                if (tags.Count > 0)
                {
                    operation.Tags = new HashSet<OpenApiTagReference>(tags.Select(t => new OpenApiTagReference(t, document)));
                    document.Tags ??= new HashSet<OpenApiTag>();
                    foreach (var tag in tags)
                    {
                        document.Tags.Add(new OpenApiTag { Name = tag });
                    }
                }

                foreach (var produces in metadata.GetOrderedMetadata<IProducesResponseTypeMetadata>())
                {
                    operation.Responses[produces.StatusCode.ToString(CultureInfo.InvariantCulture)] = new OpenApiResponse
                    {
                        Description = produces.Description ?? "See the status code.",
                        Content = produces.ContentTypes.ToDictionary(c => c, _ => Text()),
                    };
                }

                if (operation.Responses.Count == 0)
                {
                    operation.Responses["200"] = new OpenApiResponse { Description = "Success." };
                }

                item.Operations ??= [];
                item.Operations[key] = operation;
            }
        }
    }

    /// <summary>Appends the equivalent <c>curl --unix-socket</c> command to every operation's description.</summary>
    private static void AddCurlCommands(OpenApiDocument document, string socketPath)
    {
        foreach (var (path, pathItem) in document.Paths)
        {
            if (pathItem.Operations is null)
            {
                continue;
            }

            foreach (var (method, operation) in pathItem.Operations)
            {
                if (operation.Description?.Contains(CurlCommand.Marker, StringComparison.Ordinal) == true)
                {
                    continue;
                }

                var curl = CurlCommand.For(socketPath, method.Method.ToUpperInvariant(), path, operation.RequestBody is not null);
                operation.Description = (string.IsNullOrEmpty(operation.Description) ? string.Empty : operation.Description + "\n\n")
                    + "Over the Unix socket:\n\n```\n" + curl + "\n```";
            }
        }
    }

    private static OpenApiPathItem GetPathItem(OpenApiDocument document, string path)
    {
        if (document.Paths.TryGetValue(path, out var existing) && existing is OpenApiPathItem item)
        {
            return item;
        }

        item = new OpenApiPathItem();
        document.Paths[path] = item;
        return item;
    }

    private static OpenApiSchemaReference AddProblemSchema(OpenApiDocument document)
    {
        var schema = new OpenApiSchema
        {
            Type = JsonSchemaType.Object,
            Description = "RFC 9457 problem details, as every gateway error is returned (`application/problem+json`).",
            Properties = new Dictionary<string, IOpenApiSchema>
            {
                ["type"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "`urn:gateway:problem:<kind>` (see docs/api.md, Errors)." },
                ["title"] = new OpenApiSchema { Type = JsonSchemaType.String },
                ["status"] = new OpenApiSchema { Type = JsonSchemaType.Integer, Format = "int32" },
                ["detail"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "The reason, in words." },
                ["instance"] = new OpenApiSchema { Type = JsonSchemaType.String },
                ["requestId"] = new OpenApiSchema { Type = JsonSchemaType.String },
                ["correlationId"] = new OpenApiSchema { Type = JsonSchemaType.String, Description = "The datagram exchange's ID, once one was involved." },
                ["traceId"] = new OpenApiSchema { Type = JsonSchemaType.String },
            },
        };
        document.AddComponent<IOpenApiSchema>(GatewayOpenApi.ProblemSchemaName, schema);
        return new OpenApiSchemaReference(GatewayOpenApi.ProblemSchemaName, document);
    }

    private static OpenApiResponse ProblemResponse(string description, OpenApiSchemaReference problem) => new()
    {
        Description = description,
        Content = new Dictionary<string, OpenApiMediaType> { ["application/problem+json"] = new() { Schema = problem } },
    };

    private static bool HasBody(string method) => method is "POST" or "PUT" or "PATCH";

    private static OpenApiMediaType Text() => new() { Schema = new OpenApiSchema { Type = JsonSchemaType.String } };

    private static OpenApiMediaType Binary() => new() { Schema = new OpenApiSchema { Type = JsonSchemaType.String, Format = "binary" } };
}
