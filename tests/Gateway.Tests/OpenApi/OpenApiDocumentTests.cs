using System.Net;
using System.Text.Json.Nodes;
using Gateway.Routing;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Gateway.Tests.OpenApi;

/// <summary>The OpenAPI document at /openapi/v1.json and Swagger UI at /swagger.</summary>
public class OpenApiDocumentTests
{
    private static Dictionary<string, string?> Settings(TempSocketDirectory dir) => new()
    {
        ["Gateway:Backends:kv:Instances:0"] = dir.Socket("kv-1.sock"),
        ["Gateway:Backends:kv:Instances:1"] = dir.Socket("kv-2.sock"),
        ["Gateway:Backends:kv:Timeout"] = "00:00:05",
        ["Gateway:Backends:upper:Instances:0"] = dir.Socket("upper.sock"),
        ["Gateway:Backends:upper:Mode"] = "Raw",
        ["Gateway:Routes:kv:Path"] = "/kv/{key}",
        ["Gateway:Routes:kv:Methods:0"] = "GET",
        ["Gateway:Routes:kv:Methods:1"] = "PUT",
        ["Gateway:Routes:kv:Methods:2"] = "delete",
        ["Gateway:Routes:kv:Backend"] = "kv",
        ["Gateway:Routes:kv:Summary"] = "Key-value store",
        ["Gateway:Routes:kv:Description"] = "Values are opaque bytes.",
        ["Gateway:Routes:kv:MaxBodySize"] = "4096",
        ["Gateway:Routes:upper:Path"] = "/upper",
        ["Gateway:Routes:upper:Methods:0"] = "POST",
        ["Gateway:Routes:upper:Backend"] = "upper",
        ["Gateway:Routes:upper:ContentType"] = "text/plain",
        ["Gateway:Routes:upper:Timeout"] = "00:00:02",
        ["Gateway:Routes:files:Path"] = "/files/{**path}",
        ["Gateway:Routes:files:Backend"] = "kv",
    };

    private static async Task<JsonObject> GetDocumentAsync(HttpClient client)
    {
        using var response = await client.GetAsync("/openapi/v1.json");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        return JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject();
    }

    private static JsonObject Operation(JsonObject document, string path, string method) =>
        document["paths"]?[path]?[method]?.AsObject() ?? throw new Xunit.Sdk.XunitException($"{method} {path} is not in the document:\n{document["paths"]}");

    [Fact]
    public async Task Document_HasAnOperationPerRouteAndMethod_WithSummaryDescriptionAndExtensions()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, Settings(dir));
        using var client = factory.CreateClient();

        var document = await GetDocumentAsync(client);

        Assert.Equal(["delete", "get", "put"], document["paths"]!["/kv/{key}"]!.AsObject().Select(p => p.Key).Order());
        Assert.Equal(["post"], document["paths"]!["/upper"]!.AsObject().Select(p => p.Key));
        var put = Operation(document, "/kv/{key}", "put");
        Assert.Equal("kv_put", (string?)put["operationId"]);
        Assert.Equal("Key-value store", (string?)put["summary"]);
        Assert.StartsWith("Values are opaque bytes.", (string?)put["description"], StringComparison.Ordinal);
        Assert.Equal("kv", (string?)put["x-gateway-backend"]);
        Assert.Equal("Envelope", (string?)put["x-gateway-mode"]);
        Assert.Equal("00:00:05", (string?)put["x-gateway-timeout"]);
        Assert.Equal(4096, (long?)put["x-gateway-max-body-size"]);
        Assert.Equal([dir.Socket("kv-1.sock"), dir.Socket("kv-2.sock")], put["x-gateway-instances"]!.AsArray().Select(i => (string?)i));
        var key = Assert.Single(put["parameters"]!.AsArray());
        Assert.Equal("key", (string?)key!["name"]);
        Assert.Equal("path", (string?)key["in"]);
        Assert.True((bool?)key["required"]);
        Assert.Equal(["text/plain", "application/octet-stream"], put["requestBody"]!["content"]!.AsObject().Select(c => c.Key));
        Assert.Null(Operation(document, "/kv/{key}", "get")["requestBody"]);
        Assert.Equal("*/*", Assert.Single(put["responses"]!["200"]!["content"]!.AsObject()).Key);

        var upper = Operation(document, "/upper", "post");
        Assert.Equal("Raw", (string?)upper["x-gateway-mode"]);
        Assert.Equal("00:00:02", (string?)upper["x-gateway-timeout"]);
        Assert.Equal(212_960, (long?)upper["x-gateway-max-body-size"]);
        Assert.Equal("application/octet-stream", Assert.Single(upper["requestBody"]!["content"]!.AsObject()).Key);
        Assert.Equal("text/plain", Assert.Single(upper["responses"]!["200"]!["content"]!.AsObject()).Key);
    }

    [Fact]
    public async Task Document_RouteOperations_ReferenceProblemDetailsForEveryGatewayError()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, Settings(dir));
        using var client = factory.CreateClient();

        var document = await GetDocumentAsync(client);

        var get = Operation(document, "/kv/{key}", "get");
        foreach (var status in new[] { "400", "404", "405", "413", "431", "502", "503", "504" })
        {
            var schema = get["responses"]?[status]?["content"]?["application/problem+json"]?["schema"];
            Assert.Equal("#/components/schemas/GatewayProblemDetails", (string?)schema?["$ref"]);
        }

        // 405 only where the route restricts methods.
        Assert.Null(Operation(document, "/files/{path}", "get")["responses"]!["405"]);
        var problem = document["components"]!["schemas"]!["GatewayProblemDetails"]!["properties"]!.AsObject();
        Assert.Equal(["correlationId", "detail", "instance", "requestId", "status", "title", "traceId", "type"], problem.Select(p => p.Key).Order());
    }

    [Fact]
    public async Task Document_RouteWithoutMethods_DocumentsFiveMethods_AndItsCatchAllAsAPathParameter()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, Settings(dir));
        using var client = factory.CreateClient();

        var document = await GetDocumentAsync(client);

        Assert.Equal(["delete", "get", "patch", "post", "put"], document["paths"]!["/files/{path}"]!.AsObject().Select(p => p.Key).Order());
        var parameter = Assert.Single(Operation(document, "/files/{path}", "patch")["parameters"]!.AsArray());
        Assert.Equal("path", (string?)parameter!["name"]);
        Assert.Equal("path", (string?)parameter["in"]);
    }

    [Fact]
    public async Task Document_EveryOperationShowsItsCurlUnixSocketCommand()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, Settings(dir));
        using var client = factory.CreateClient();

        var document = await GetDocumentAsync(client);

        var socket = factory.SocketPath;
        Assert.Contains($"curl --unix-socket {socket} 'http://localhost/kv/<key>'", (string?)Operation(document, "/kv/{key}", "get")["description"], StringComparison.Ordinal);
        Assert.Contains($"curl --unix-socket {socket} -X DELETE 'http://localhost/kv/<key>'", (string?)Operation(document, "/kv/{key}", "delete")["description"], StringComparison.Ordinal);
        Assert.Contains($"curl --unix-socket {socket} -X PUT -H 'Content-Type: application/octet-stream' --data-binary @request.bin 'http://localhost/kv/<key>'", (string?)Operation(document, "/kv/{key}", "put")["description"], StringComparison.Ordinal);
        Assert.Contains($"curl --unix-socket {socket} http://localhost/healthz", (string?)Operation(document, "/healthz", "get")["description"], StringComparison.Ordinal);
        foreach (var (path, item) in document["paths"]!.AsObject())
        {
            foreach (var (method, operation) in item!.AsObject())
            {
                Assert.True(((string?)operation!["description"])?.Contains("curl --unix-socket " + socket, StringComparison.Ordinal), $"{method} {path} has no curl command");
            }
        }
    }

    [Fact]
    public async Task Document_DescribesTheGatewaysOwnEndpoints_ButNotItself()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, Settings(dir));
        using var client = factory.CreateClient();

        var document = await GetDocumentAsync(client);

        Assert.Equal("Liveness", (string?)Operation(document, "/healthz", "get")["operationId"]);
        Assert.Equal("Readiness", (string?)Operation(document, "/readyz", "get")["operationId"]);
        Assert.Equal("Health", (string?)Operation(document, "/readyz", "get")["tags"]![0]);
        Assert.DoesNotContain(document["paths"]!.AsObject(), p => p.Key.StartsWith("/openapi", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Document_HealthEndpoints_HaveDistinctSummaries_AndReadinessDocuments503()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, Settings(dir));
        using var client = factory.CreateClient();

        var document = await GetDocumentAsync(client);

        var live = Operation(document, "/healthz", "get");
        var ready = Operation(document, "/readyz", "get");
        Assert.StartsWith("Liveness", (string?)live["summary"], StringComparison.Ordinal);
        Assert.StartsWith("Readiness", (string?)ready["summary"], StringComparison.Ordinal);
        Assert.Equal(["200"], live["responses"]!.AsObject().Select(r => r.Key));
        Assert.Equal(["200", "503"], ready["responses"]!.AsObject().Select(r => r.Key).Order(StringComparer.Ordinal));
    }

    [Fact]
    public async Task Document_Servers_PointAtTheLoopbackTcpListener_WhenItIsOn()
    {
        using var dir = new TempSocketDirectory();
        var settings = Settings(dir);
        settings["Gateway:Listen:TcpPort"] = "5999";
        await using var factory = new GatewayFactory(dir, settings);
        using var client = factory.CreateClient();

        var document = await GetDocumentAsync(client);

        Assert.Equal("http://127.0.0.1:5999", (string?)Assert.Single(document["servers"]!.AsArray())!["url"]);
    }

    [Fact]
    public async Task Document_FollowsAConfigurationReload_WithoutRestart()
    {
        using var dir = new TempSocketDirectory();
        var file = Path.Combine(dir.Path, "gateway.json");
        await File.WriteAllTextAsync(file, Config("/v1/{**rest}", "First version", dir.Socket("b.sock")));
        await using var factory = new GatewayFactory(dir, jsonFile: file);
        using var client = factory.CreateClient();
        var provider = factory.Services.GetRequiredService<RouteTableProvider>();
        Assert.Equal("First version", (string?)Operation(await GetDocumentAsync(client), "/v1/{rest}", "get")["summary"]);

        var changed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        using var registration = provider.GetChangeToken().RegisterChangeCallback(_ => changed.TrySetResult(), null);
        await File.WriteAllTextAsync(file, Config("/v2/{id}", "Second version", dir.Socket("b.sock")));
        await changed.Task.WaitAsync(TimeSpan.FromSeconds(30));

        var document = await GetDocumentAsync(client);
        Assert.Null(document["paths"]!["/v1/{rest}"]);
        Assert.Equal("Second version", (string?)Operation(document, "/v2/{id}", "get")["summary"]);
    }

    private static string Config(string path, string summary, string backendSocket) => $$"""
        { "Gateway": {
            "Backends": { "b": { "Instances": [ "{{backendSocket}}" ] } },
            "Routes": { "r": { "Path": "{{path}}", "Methods": [ "GET" ], "Backend": "b", "Summary": "{{summary}}" } } } }
        """;

    [Fact]
    public async Task SwaggerUI_IsServedAtSwagger_AndLoadsTheDocument()
    {
        using var dir = new TempSocketDirectory();
        await using var factory = new GatewayFactory(dir, Settings(dir));
        using var client = factory.CreateClient(new Microsoft.AspNetCore.Mvc.Testing.WebApplicationFactoryClientOptions { AllowAutoRedirect = false });

        using var redirect = await client.GetAsync("/swagger");
        var index = await client.GetStringAsync("/swagger/index.html");
        var initializer = await client.GetStringAsync("/swagger/index.js");

        Assert.Equal(HttpStatusCode.MovedPermanently, redirect.StatusCode);
        Assert.EndsWith("swagger/index.html", redirect.Headers.Location?.ToString(), StringComparison.Ordinal);
        Assert.Contains("swagger-ui", index, StringComparison.Ordinal);
        Assert.Contains("../openapi/v1.json", initializer, StringComparison.Ordinal);
    }
}
