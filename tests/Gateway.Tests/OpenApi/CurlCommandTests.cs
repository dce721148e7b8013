using Gateway.OpenApi;
using Microsoft.AspNetCore.Routing.Patterns;

namespace Gateway.Tests.OpenApi;

public class CurlCommandTests
{
    [Theory]
    [InlineData("/echo/{**rest}", "/echo/{rest}")]
    [InlineData("/kv/{key:minlength(1)}", "/kv/{key}")]
    [InlineData("/files/{name}.{ext?}", "/files/{name}.{ext}")]
    [InlineData("/", "/")]
    public void OpenApiPath_DropsCatchAllMarkersConstraintsAndDefaults(string template, string expected) =>
        Assert.Equal(expected, CurlCommand.OpenApiPath(RoutePatternFactory.Parse(template)));

    [Fact]
    public void For_QuotesASocketPathWithSpacesAndQuotes()
    {
        var command = CurlCommand.For("/tmp/my dir/it's.sock", "GET", "/healthz", withBody: false);

        Assert.Equal("curl --unix-socket '/tmp/my dir/it'\\''s.sock' http://localhost/healthz", command);
    }

    [Fact]
    public void For_PostWithBody_ImpliesThePostMethod()
    {
        var command = CurlCommand.For("/s.sock", "POST", "/upper", withBody: true);

        Assert.Equal("curl --unix-socket /s.sock -H 'Content-Type: application/octet-stream' --data-binary @request.bin http://localhost/upper", command);
    }
}
