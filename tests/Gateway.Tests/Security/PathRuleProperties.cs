using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using System.Text.Json;
using FsCheck;
using FsCheck.Fluent;
using Gateway.Ipc.Backend;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using static Gateway.Tests.Security.ProcessIdentity;

namespace Gateway.Tests.Security;

/// <summary>
/// Routing, caller authorization and the backend must agree on one path (docs/security.md, "The path rule").
/// Targets are generated from the ingredients of path confusion (dot and empty segments, encoded delimiters,
/// overlong and invalid UTF-8, characters that fold to ASCII, path parameters, whitespace, absolute form). For each
/// one, either the gateway refuses it with 400, or the route the gateway matched and authorized is the route that
/// a backend which decodes and normalises the forwarded target, as lax HTTP routers do, would choose. Checked for an
/// envelope backend, a raw backend and the gateway's own endpoints.
/// </summary>
public sealed class PathRuleProperties : IAsyncLifetime
{
    /// <summary>Cases per run; <c>GATEWAY_PATH_SEED</c> replays a seed that a failure printed.</summary>
    private const int Cases = 1000;

    /// <summary>Segments that every reader reads alike.</summary>
    private static readonly string[] Plain =
    [
        "echo", "ECHO", "Echo", "secret", "SECRET", "raw", "admin", "backends", "healthz", "readyz", "a", "x",
        "sec%72et", "%65cho", "%73ecret", "a%2eb", "caf%c3%a9", "%e6%97%a5", "a%20b",
    ];

    /// <summary>The ingredients of path confusion.</summary>
    private static readonly string[] Tricky =
    [
        "", ".", "..", "%2e", "%2E%2e", ".%2e", "%2e.", "%2f", "%2F", "%5c", "\\", "%00", "%01", "%0a", "%7f",
        "%c0%af", "%c0%ae%c0%ae", "%e0%80%ae", "%ff", "%c3", "%e2%82", ";x", "secret;x", "%3b", "%3f", "%23", "%25",
        "%252f", "%2525", "%20", "secret%20", "%20secret", "secret%c2%a0", "%c2%85", "secret%e2%80%8b", "%c5%bfecret",
        "%e2%84%aa", "s%c4%b1", "%c4%b0", "%ef%bc%8f", "%ef%bd%93ecret", "%e2%80%a4%e2%80%a4", "%c2%bd",
    ];

    private static readonly string[] Queries = ["", "?a=1", "?x=/echo/secret", "?%2f..%2f", "?;a", "?"];

    private readonly TempSocketDirectory _dir = new();
    private readonly ConcurrentQueue<string> _received = new();
    private TestBackend? _backend;
    private ExternalProcess? _raw;
    private GatewayFactory? _factory;

    private enum RouteClass
    {
        None,
        Echo,
        Raw,
        Secret,
        Reserved,
    }

    public async Task InitializeAsync()
    {
        _backend = await TestBackend.StartAsync(_dir.Socket("b.sock"), (request, _) =>
        {
            _received.Enqueue(request.Target);
            return ValueTask.FromResult(new BackendResponse(200, [new("content-type", "text/plain"), new("x-test-backend", "envelope")], Encoding.UTF8.GetBytes(request.Target)));
        });
        _raw = await RawServers.StartPythonAsync(_dir.Socket("raw.sock"));
        var restricted = Text(OtherUid);
        _factory = new GatewayFactory(_dir, new Dictionary<string, string?>
        {
            ["Gateway:Backends:b:Instances:0"] = _backend.SocketPath,
            ["Gateway:Backends:raw:Mode"] = "Raw",
            ["Gateway:Backends:raw:Instances:0"] = _dir.Socket("raw.sock"),
            ["Gateway:Routes:echo:Path"] = "/echo/{**rest}",
            ["Gateway:Routes:echo:Backend"] = "b",
            ["Gateway:Routes:secret:Path"] = "/echo/secret/{**rest}",
            ["Gateway:Routes:secret:Backend"] = "b",
            ["Gateway:Routes:secret:AllowedUids:0"] = restricted,
            ["Gateway:Routes:raw:Path"] = "/raw/{**rest}",
            ["Gateway:Routes:raw:Backend"] = "raw",
            ["Gateway:Routes:raw:ContentType"] = "application/x-raw-test",
            ["Gateway:Routes:rawsecret:Path"] = "/raw/secret/{**rest}",
            ["Gateway:Routes:rawsecret:Backend"] = "raw",
            ["Gateway:Routes:rawsecret:AllowedUids:0"] = restricted,
        }).StartKestrel();
    }

    public async Task DisposeAsync()
    {
        if (_factory is not null)
        {
            await _factory.DisposeAsync();
        }

        if (_raw is not null)
        {
            await _raw.DisposeAsync();
        }

        if (_backend is not null)
        {
            await _backend.DisposeAsync();
        }

        _dir.Dispose();
    }

    [Fact]
    public async Task RoutedPath_IsThePathEveryBackendReads()
    {
        var seed = ulong.TryParse(Environment.GetEnvironmentVariable("GATEWAY_PATH_SEED"), NumberStyles.None, CultureInfo.InvariantCulture, out var s)
            ? s
            : 20261203UL;
        var targets = FsCheck.FSharp.Gen.Sample(new Rnd(seed), 10, Cases, TargetGen());
        var failures = new List<string>();
        var counts = new Dictionary<string, int>();
        foreach (var target in targets)
        {
            var (verdict, failure) = await CheckAsync(target);
            counts[verdict] = counts.GetValueOrDefault(verdict) + 1;
            if (failure is not null)
            {
                failures.Add($"{target}: {failure}");
            }
        }

        Assert.True(failures.Count == 0, $"seed {seed} (GATEWAY_PATH_SEED): {failures.Count} of {Cases} targets disagree:\n" + string.Join('\n', failures.Take(30)));

        // The generator reaches both sides of the rule, and every route class.
        Assert.True(counts.GetValueOrDefault("refused") > Cases / 10, Summary(counts));
        Assert.True(counts.GetValueOrDefault(nameof(RouteClass.Echo)) > 10, Summary(counts));
        Assert.True(counts.GetValueOrDefault(nameof(RouteClass.Raw)) > 5, Summary(counts));
        Assert.True(counts.GetValueOrDefault(nameof(RouteClass.Secret)) > 5, Summary(counts));
        Assert.True(counts.GetValueOrDefault(nameof(RouteClass.Reserved)) > 0, Summary(counts));
    }

    [Theory]
    [InlineData("/echo//secret/a", "empty-segment")]
    [InlineData("/echo/secret%2fa", "encoded-slash")]
    [InlineData("/x/../../admin/backends", "dot-segment")]
    [InlineData("/echo/%2e%2e/admin/backends", "dot-segment")]
    [InlineData("/echo/%c5%bfecret/a", "ambiguous-character")]
    [InlineData("/echo/secret;a/b", "path-parameter")]
    [InlineData("/raw//secret", "empty-segment")]
    public async Task KnownBypass_Is400NamingTheReason_AndNeverReachesABackend(string target, string reason)
    {
        var before = _received.Count;

        var response = await RawHttp.SendAsync(_factory!.SocketPath, "GET", target);

        Assert.Equal(400, response.Status);
        Assert.Equal("application/problem+json", response.Header("content-type"));
        using var problem = JsonDocument.Parse(response.Body);
        Assert.Equal("urn:gateway:problem:bad-target", problem.RootElement.GetProperty("type").GetString());
        Assert.Equal(reason, problem.RootElement.GetProperty("reason").GetString());
        Assert.Contains("docs/security.md", problem.RootElement.GetProperty("detail").GetString(), StringComparison.Ordinal);
        Assert.Equal(before, _received.Count);
    }

    [Theory]
    [InlineData("/echo/a/b?q=1&r=%2f", "/echo/a/b?q=1&r=%2f")]
    [InlineData("/echo/caf%C3%A9?x", "/echo/caf%C3%A9?x")]
    [InlineData("/echo/%61", "/echo/%61")]
    [InlineData("http://localhost/echo/abs?q", "/echo/abs?q")]
    public async Task AcceptedTarget_ReachesTheBackendAsSent(string target, string expected)
    {
        var response = await RawHttp.SendAsync(_factory!.SocketPath, "GET", target);

        Assert.Equal(200, response.Status);
        Assert.Equal(expected, response.BodyText);
    }

    private static string Summary(Dictionary<string, int> counts) =>
        string.Join(", ", counts.OrderBy(c => c.Key, StringComparer.Ordinal).Select(c => $"{c.Key}={c.Value}"));

    private static Gen<string> TargetGen() =>
        from count in Gen.Choose(1, 4)
        from segments in Gen.ArrayOf(Gen.Frequency((4, Gen.Elements(Plain)), (1, Gen.Elements(Tricky))), count)
        from first in Gen.Elements("echo", "raw", "echo", "raw", "admin", "healthz", "readyz", "x", "ECHO", "%65cho", "")
        from query in Gen.Elements(Queries)
        from absolute in Gen.Elements(false, false, false, true)
        select (absolute ? "http://localhost" : "") + "/" + string.Join('/', segments.Prepend(first)) + query;

    private async Task<(string Verdict, string? Failure)> CheckAsync(string target)
    {
        var before = _received.Count;
        RawHttpResponse response;
        try
        {
            response = await RawHttp.SendAsync(_factory!.SocketPath, "GET", target);
        }
        catch (Exception e) when (e is IOException or InvalidDataException)
        {
            return ("error", $"not a valid HTTP/1.1 response: {e.Message}");
        }

        if (response.Status == 400)
        {
            // Refused, by the path rule (problem+json) or by Kestrel itself (a bare 400): nothing reached a backend.
            if (response.Header("content-type") == "application/problem+json"
                && JsonDocument.Parse(response.Body).RootElement.GetProperty("type").GetString() != "urn:gateway:problem:bad-target")
            {
                return ("refused", "a 400 that is not bad-target");
            }

            return ("refused", _received.Count != before ? "refused, yet the backend got a request" : null);
        }

        var gateway = response.Status switch
        {
            200 when response.Header("x-test-backend") == "envelope" => RouteClass.Echo,
            200 when response.Header("content-type") == "application/x-raw-test" => RouteClass.Raw,
            200 => RouteClass.Reserved,
            503 when response.Header("content-type") == "application/json" => RouteClass.Reserved, // readiness
            403 => RouteClass.Secret,
            404 => RouteClass.None,
            _ => (RouteClass?)null,
        };
        if (gateway is null)
        {
            return ("other", $"unexpected status {response.Status}");
        }

        // What a lax backend router makes of the target: the envelope backend's reader gets what the gateway sent;
        // for the others (raw, the gateway's own) the caller's target is what the path rule passed.
        var forwarded = target;
        if (gateway == RouteClass.Echo)
        {
            forwarded = response.BodyText;
            if (forwarded != Gateway.Security.RequestTargetRule.OriginForm(target))
            {
                return (gateway.ToString()!, $"the backend received '{forwarded}'");
            }
        }

        var expected = Classify(Normalize(Gateway.Security.RequestTargetRule.OriginForm(forwarded)));
        if (gateway == RouteClass.Secret && _received.Count != before)
        {
            return ("Secret", "a refused caller reached the backend");
        }

        return (gateway.ToString()!, expected == gateway ? null : $"the gateway chose {gateway}, a normalising backend reads {expected} ('{Normalize(forwarded)}')");
    }

    /// <summary>
    /// Everything lax routers do: decode twice, read <c>\</c> as <c>/</c>, cut at a decoded <c>?</c> or <c>#</c>,
    /// NFKC and case-fold, drop <c>;</c> parameters, trim segments, collapse empty ones, resolve dot segments.
    /// </summary>
    private static string Normalize(string target)
    {
        var path = target.Split('?')[0];
        path = Decode(Decode(path));
        var cut = path.IndexOfAny(['?', '#']);
        if (cut >= 0)
        {
            path = path[..cut];
        }

        path = path.Replace('\\', '/').Normalize(NormalizationForm.FormKC).ToLowerInvariant();
        var output = new List<string>();
        foreach (var raw in path.Split('/'))
        {
            var segment = raw.Split(';')[0].Trim().Trim('\u200B', '\uFEFF');
            if (segment.Length == 0 || segment == ".")
            {
                continue;
            }

            if (segment == "..")
            {
                if (output.Count > 0)
                {
                    output.RemoveAt(output.Count - 1);
                }

                continue;
            }

            output.Add(segment);
        }

        return "/" + string.Join('/', output);
    }

    private static string Decode(string text)
    {
        var bytes = new List<byte>();
        for (var i = 0; i < text.Length; i++)
        {
            if (text[i] == '%' && i + 2 < text.Length && Uri.IsHexDigit(text[i + 1]) && Uri.IsHexDigit(text[i + 2]))
            {
                bytes.Add(byte.Parse(text.AsSpan(i + 1, 2), NumberStyles.HexNumber, CultureInfo.InvariantCulture));
                i += 2;
            }
            else
            {
                bytes.AddRange(Encoding.UTF8.GetBytes(text[i].ToString()));
            }
        }

        // Lax: overlong forms decoded as old decoders did (C0 AF → '/', C0 AE → '.').
        var decoded = new StringBuilder();
        for (var i = 0; i < bytes.Count; i++)
        {
            if (bytes[i] is 0xC0 or 0xC1 && i + 1 < bytes.Count)
            {
                decoded.Append((char)(((bytes[i] & 0x1F) << 6) | (bytes[i + 1] & 0x3F)));
                i++;
                continue;
            }

            var length = bytes[i] < 0x80 ? 1 : bytes[i] >= 0xF0 ? 4 : bytes[i] >= 0xE0 ? 3 : 2;
            length = Math.Min(length, bytes.Count - i);
            decoded.Append(Encoding.UTF8.GetString(bytes.GetRange(i, length).ToArray()));
            i += length - 1;
        }

        return decoded.ToString();
    }

    private static RouteClass Classify(string path)
    {
        var segments = path.TrimEnd('/').Split('/', StringSplitOptions.RemoveEmptyEntries);
        if (segments.Length == 0)
        {
            return RouteClass.None;
        }

        return segments[0] switch
        {
            "echo" or "raw" when segments.Length >= 2 && segments[1] == "secret" => RouteClass.Secret,
            "echo" => RouteClass.Echo,
            "raw" => RouteClass.Raw,
            "healthz" or "readyz" when segments.Length == 1 => RouteClass.Reserved,
            "admin" when segments.Length == 2 && segments[1] == "backends" => RouteClass.Reserved,
            _ => RouteClass.None,
        };
    }
}
