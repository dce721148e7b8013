using Gateway.Configuration;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.Options;

namespace Gateway.Tests.Configuration;

public class ValidationTests
{
    [Fact]
    public void Start_WithSeveralErrors_ReportsEveryOneNamingItsKey()
    {
        using var dir = new TempSocketDirectory();
        using var factory = new GatewayFactory(dir, new Dictionary<string, string?>
        {
            ["Gateway:Listen:SocketMode"] = "999",
            ["Gateway:Backends:b:Instances:0"] = "relative.sock",
            ["Gateway:Backends:b:Timeout"] = "-00:00:01",
            ["Gateway:Routes:r1:Path"] = "/x/{",
            ["Gateway:Routes:r1:Backend"] = "b",
            ["Gateway:Routes:r2:Path"] = "/y",
            ["Gateway:Routes:r2:Backend"] = "missing",
            ["Gateway:Routes:r3:Path"] = "/healthz",
            ["Gateway:Routes:r3:Backend"] = "b",
            ["Gateway:Routes:r3:Methods:0"] = "GE T",
        });

        var ex = Assert.Throws<OptionsValidationException>(() => factory.CreateClient());

        var failures = string.Join("\n", ex.Failures);
        Assert.Contains("Gateway:Listen:SocketMode:", failures);
        Assert.Contains("Gateway:Backends:b:Instances:0: 'relative.sock' must be an absolute path", failures);
        Assert.Contains("Gateway:Backends:b:Timeout: must be positive", failures);
        Assert.Contains("Gateway:Routes:r1:Path: '/x/{' is not a valid route template", failures);
        Assert.Contains("Gateway:Routes:r2:Backend: 'missing' is not a configured backend (known: b)", failures);
        Assert.Contains("Gateway:Routes:r3:Path: '/healthz' is reserved", failures);
        Assert.Contains("Gateway:Routes:r3:Methods:0: 'GE T' is not an HTTP method token", failures);
        Assert.Equal(7, ex.Failures.Count());
    }

    [Fact]
    public void Validate_SocketPathLongerThanSunPath_NamesKeyAndLimit()
    {
        var options = new GatewayOptions();
        options.Listen.UnixSocket = "/" + new string('a', 120);

        var errors = GatewayOptionsValidator.Validate(options);

        Assert.Contains(errors, e => e.StartsWith("Gateway:Listen:UnixSocket:", StringComparison.Ordinal) && e.Contains("at most 107", StringComparison.Ordinal));
    }

    [Fact]
    public void Validate_UnknownSocketGroup_NamesTheKey()
    {
        var options = new GatewayOptions();
        options.Listen.SocketGroup = "no-such-group-here";

        Assert.Equal(["Gateway:Listen:SocketGroup: group 'no-such-group-here' does not exist (a name from /etc/group or a numeric id)."], GatewayOptionsValidator.Validate(options));
    }

    [Fact]
    public void Validate_OverlappingRoutes_Rejected()
    {
        var options = new GatewayOptions();
        options.Backends["b"] = new BackendOptions { Instances = ["/tmp/b.sock"] };
        options.Routes["one"] = new RouteOptions { Path = "/a/{id}", Backend = "b", Methods = ["GET"] };
        options.Routes["two"] = new RouteOptions { Path = "/a/{id}/", Backend = "b", Methods = ["get", "POST"] };

        var errors = GatewayOptionsValidator.Validate(options);

        Assert.Single(errors);
        Assert.Contains("overlaps route", errors[0], StringComparison.Ordinal);
    }

    [Fact]
    public void Validate_RawBackendBodyLargerThanOneDatagram_Rejected()
    {
        var options = new GatewayOptions();
        options.Backends["raw"] = new BackendOptions { Instances = ["/tmp/r.sock"], Mode = BackendMode.Raw, MaxBodySize = 300_000 };

        var errors = GatewayOptionsValidator.Validate(options);

        Assert.Equal(["Gateway:Backends:raw:MaxBodySize: 300000 is out of range; Raw backends accept 1 to 212960 bytes."], errors);
    }

    [Fact]
    public void DemoDefaults_NoBackends_AddsEchoRouteBesideTheSocket()
    {
        var options = new GatewayOptions();
        options.Listen.UnixSocket = "/run/gw/http.sock";

        DemoDefaults.Apply(options);

        Assert.Equal(["/run/gw/demo-echo.sock"], options.Backends["echo"].Instances);
        Assert.Equal("/echo/{**rest}", options.Routes["echo"].Path);
        Assert.Empty(GatewayOptionsValidator.Validate(options));
    }

    [Fact]
    public void DemoDefaults_BackendsConfigured_AddsNothing()
    {
        var options = new GatewayOptions();
        options.Backends["b"] = new BackendOptions { Instances = ["/tmp/b.sock"] };

        DemoDefaults.Apply(options);

        Assert.False(options.Backends.ContainsKey("echo"));
        Assert.Empty(options.Routes);
    }
}
