using Microsoft.AspNetCore.Mvc.Testing;

namespace UserTests;

// The gateway with its defaults: no backend configured, so it serves the demo echo route.
public class EchoRouteTests(WebApplicationFactory<Program> factory) : IClassFixture<WebApplicationFactory<Program>>
{
    [Fact]
    public async Task Get_echoes_the_method_and_target()
    {
        var client = factory.CreateClient();

        var body = await client.GetStringAsync("/echo/hello?x=1");

        Assert.Equal("GET /echo/hello?x=1\n", body);
    }

    [Fact]
    public async Task Post_echoes_the_body()
    {
        var client = factory.CreateClient();

        var response = await client.PostAsync("/echo/anything", new StringContent("hi there"));

        response.EnsureSuccessStatusCode();
        Assert.Equal("hi there", await response.Content.ReadAsStringAsync());
    }
}

// A second test class with its own default factory: xunit runs it in parallel with the one above.
public class HealthTests
{
    [Fact]
    public async Task The_gateway_is_healthy()
    {
        await using var factory = new WebApplicationFactory<Program>();
        var client = factory.CreateClient();

        var response = await client.GetAsync("/healthz");

        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("GET /echo/x\n", await client.GetStringAsync("/echo/x"));
    }
}
