using System.Globalization;
using System.Text;
using Gateway.Ipc.Backend;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Xunit.Abstractions;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// The C# backend helper and the gateway must agree on what a reply may carry: a <see cref="BackendResponse"/> the
/// helper lets a handler build is forwarded by the gateway, and one the helper refuses (an <see cref="ArgumentException"/>
/// at the call that builds it) is one the gateway would answer with 502 <c>malformed-reply</c> had its bytes been sent
/// anyway. Generated header fields (names and values from an alphabet of tokens, separators, controls, DEL and
/// non-ASCII) go both ways through one real gateway: accepted ones through a helper-hosted backend, refused ones,
/// encoded as the helper would have, through a scripted backend that sends any bytes.
/// Seed and size: GATEWAY_SEAM_SEED (default 2012) and GATEWAY_SEAM_CASES (default 300), printed.
/// </summary>
public class BackendResponseSeamTests(ITestOutputHelper output)
{
    private const string Alphabet = "abcXYZ09-_.!#$%&'*+^`|~ \t\"(),/:;<=>?@[\\]{}\u0000\u0001\u001f\u007f\u0080\u00e9\u00a0\u2028\u4e2d";

    [Fact]
    public async Task GeneratedHeaders_TheHelperBuildsExactlyWhatTheGatewayForwards()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("GATEWAY_SEAM_SEED"), CultureInfo.InvariantCulture, out var s) ? s : 2012;
        var cases = int.TryParse(Environment.GetEnvironmentVariable("GATEWAY_SEAM_CASES"), CultureInfo.InvariantCulture, out var n) && n > 0 ? n : 300;
        var random = new Random(seed);
        using var dir = new TempSocketDirectory();
        List<KeyValuePair<string, string>>? current = null;
        await using var helper = await TestBackend.StartAsync(dir.Socket("helper.sock"), (_, _) =>
            ValueTask.FromResult(new BackendResponse(200, Volatile.Read(ref current), "ok"u8.ToArray())));
        await using var scripted = new ScriptedReplyBackend(dir.Socket("scripted.sock"), _ =>
            ScriptedReplyBackend.Payload(200, Volatile.Read(ref current)!.Select(h => (Encoding.UTF8.GetBytes(h.Key.ToLowerInvariant()), Encoding.UTF8.GetBytes(h.Value))), "ok"u8.ToArray()));
        await using var factory = new GatewayFactory(dir, new Dictionary<string, string?>
        {
            ["Gateway:Backends:helper:Instances:0"] = helper.SocketPath,
            ["Gateway:Backends:helper:Retry:MaxAttempts"] = "1",
            ["Gateway:Backends:scripted:Instances:0"] = scripted.SocketPath,
            ["Gateway:Backends:scripted:Retry:MaxAttempts"] = "1",
            ["Gateway:Routes:helper:Path"] = "/helper/{**rest}",
            ["Gateway:Routes:helper:Backend"] = "helper",
            ["Gateway:Routes:scripted:Path"] = "/scripted/{**rest}",
            ["Gateway:Routes:scripted:Backend"] = "scripted",
        }).StartKestrel();

        var failures = new List<string>();
        int accepted = 0, refused = 0;
        for (var i = 0; i < cases; i++)
        {
            var headers = Generate(random);
            var shown = string.Join(", ", headers.Select(h => $"{Escape(h.Key)}: {Escape(h.Value)}"));
            bool builds;
            try
            {
                _ = new BackendResponse(200, headers);
                builds = true;
            }
            catch (ArgumentException)
            {
                builds = false;
            }

            Volatile.Write(ref current, headers);
            var bytes = await RawUnixHttp.ExchangeAsync(factory.SocketPath, RawUnixHttp.Request("GET", builds ? "/helper/x" : "/scripted/x"), ReplyMappingTests.HangGuard);
            try
            {
                var response = Http11ResponseParser.Parse(bytes, headRequest: false);
                if (builds)
                {
                    accepted++;
                    Assert.Equal(200, response.Status);
                    Assert.Equal("ok", Encoding.ASCII.GetString(response.Body));
                    foreach (var (name, value) in headers.Where(h => h.Value.Trim(' ', '\t').Length > 0))
                    {
                        Assert.Contains(value.Trim(' ', '\t'), response.GetAll(name));
                    }
                }
                else
                {
                    refused++;
                    ReplyMappingTests.AssertMalformedReply(response, head: false);
                }
            }
            catch (Exception ex)
            {
                failures.Add($"case {i} ({(builds ? "built" : "refused")} by the helper) [{shown}]: {ex.Message.ReplaceLineEndings(" ")}");
            }
        }

        output.WriteLine($"seed {seed}: {cases} cases, {accepted} built and forwarded, {refused} refused by both");
        Assert.True(failures.Count == 0, $"seed {seed} (GATEWAY_SEAM_SEED): {failures.Count} disagreements; first ones:\n{string.Join("\n", failures.Take(5))}");
        Assert.True(accepted > cases / 5 && refused > cases / 5, $"the generator should exercise both sides: {accepted} built, {refused} refused");
    }

    [Theory]
    [InlineData("x-ok", "caf\u00e9", "U+00E9 at offset 3 of its value")]
    [InlineData("x-ok", "a\r\nb", "U+000D at offset 1 of its value")]
    [InlineData("x ok", "v", "U+0020 at offset 1 of its name")]
    [InlineData("", "v", "a name of 0 characters")]
    public void Refused_TheMessageNamesTheFieldAndTheCharacter(string name, string value, string expected)
    {
        var ex = Assert.Throws<ArgumentException>(() => new BackendResponse(200, [new("content-type", "text/plain"), new(name, value)]));
        Assert.Contains("Header field 1", ex.Message, StringComparison.Ordinal);
        Assert.Contains(expected, ex.Message, StringComparison.Ordinal);
    }

    private static List<KeyValuePair<string, string>> Generate(Random random)
    {
        var count = random.Next(1, 4);
        var headers = new List<KeyValuePair<string, string>>();
        for (var i = 0; i < count; i++)
        {
            // Mostly clean fields, so a case breaks the rules about half the time.
            var name = "x-" + Text(random, random.Next(1, 6), clean: random.Next(6) != 0, token: true);
            var value = Text(random, random.Next(0, 12), clean: random.Next(5) != 0, token: false);
            headers.Add(new(name, value));
        }

        return headers;
    }

    private static string Text(Random random, int length, bool clean, bool token)
    {
        const string Tokens = "abcxyzXYZ0123456789-_.!#$%&'*+^`|~";
        const string Visible = Tokens + " \t\"(),/:;<=>?@[\\]{}";
        var source = clean ? (token ? Tokens : Visible) : Alphabet;
        return string.Create(length, (random, source), static (span, state) =>
        {
            for (var i = 0; i < span.Length; i++)
            {
                span[i] = state.source[state.random.Next(state.source.Length)];
            }
        });
    }

    private static string Escape(string text) =>
        string.Concat(text.Select(c => c is >= '!' and <= '~' ? c.ToString() : $"\\u{(int)c:x4}"));
}
