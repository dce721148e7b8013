using System.Globalization;
using System.Net;
using System.Reflection;
using Gateway.Configuration;
using Gateway.Ipc.Backend;
using Gateway.Routing;
using Gateway.Testing;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;

namespace Gateway.Tests.Configuration;

/// <summary>
/// Generated from the options classes (<see cref="OptionKeys"/>): for every option, wherever it sits (top level, a backend
/// entry, a route entry, a list item), a bad value gives an error naming its full key and the expected format — so a new
/// option cannot go untested. In process through the options factory that start-up and reload use; a few through the
/// real process and a real reload.
/// </summary>
public class EveryOptionTests
{
    /// <summary>Bad values of the string options, and a fragment of the error each must give.</summary>
    private static readonly Dictionary<string, (string Value, string Expected)> BadStrings = new(StringComparer.Ordinal)
    {
        ["Gateway:Listen:UnixSocket"] = ("relative.sock", "must be an absolute path"),
        ["Gateway:Listen:SocketMode"] = ("999", "is not an octal file mode"),
        ["Gateway:Listen:SocketGroup"] = ("no-such-group-zz9", "does not exist"),
        ["Gateway:RequestIdHeader"] = ("X Request", "is not a valid header name"),
        ["Gateway:ReplySocketDirectory"] = ("relative/dir", "must be an absolute path"),
        ["Gateway:DemoBackend:SocketPath"] = ("relative.sock", "must be an absolute path"),
        ["Gateway:Backends:<name>:Instances:<i>"] = ("relative.sock", "must be an absolute path"),
        ["Gateway:Routes:<name>:Path"] = ("no-slash", "must start with '/'"),
        ["Gateway:Routes:<name>:Methods:<i>"] = ("GE T", "is not an HTTP method token"),
        ["Gateway:Routes:<name>:Backend"] = ("missing", "is not a configured backend"),
        ["Gateway:Routes:<name>:ContentType"] = ("plain", "is not a media type"),
        ["Gateway:Routes:<name>:AllowedUids:<i>"] = ("no-such-user-zz9", "is not a uid"),
        ["Gateway:Routes:<name>:AllowedGids:<i>"] = ("no-such-group-zz9", "is not a gid"),
        ["Gateway:Authorization:AllowedUids:<i>"] = ("no-such-user-zz9", "is not a uid"),
        ["Gateway:Authorization:AllowedGids:<i>"] = ("no-such-group-zz9", "is not a gid"),
        ["Gateway:Admin:AllowedUids:<i>"] = ("no-such-user-zz9", "is not a uid"),
        ["Gateway:Admin:AllowedGids:<i>"] = ("no-such-group-zz9", "is not a gid"),
    };

    /// <summary>String options with no bad value: any text goes.</summary>
    private static readonly HashSet<string> FreeText = new(StringComparer.Ordinal)
    {
        "Gateway:Routes:<name>:Summary",
        "Gateway:Routes:<name>:Description",
    };

    public static TheoryData<string> Templates => new(OptionKeys.All.Select(o => o.Template));

    public static TheoryData<string> ListTemplates => new(OptionKeys.All.Where(o => o.IsListItem).Select(o => o.Template));

    public static TheoryData<string> NullableTemplates => new(OptionKeys.All.Where(o => o.IsNullable).Select(o => o.Template));

    public static TheoryData<string> NonStringScalarTemplates => new(OptionKeys.All.Where(o => !o.IsNullable && o.Scalar != typeof(string)).Select(o => o.Template));

    /// <summary>A valid configuration with one backend (<c>b</c>) and one route (<c>r</c>) for the entries' keys to go into.</summary>
    private static Dictionary<string, string?> Base() => new(StringComparer.OrdinalIgnoreCase)
    {
        ["Gateway:Listen:UnixSocket"] = "/tmp/gw-options-test/gw.sock",
        [$"Gateway:Backends:{OptionKeys.BackendName}:Instances:0"] = "/tmp/gw-options-test/b.sock",
        [$"Gateway:Routes:{OptionKeys.RouteName}:Path"] = "/r",
        [$"Gateway:Routes:{OptionKeys.RouteName}:Backend"] = OptionKeys.BackendName,
    };

    private static Dictionary<string, string?> With(params (string Key, string? Value)[] values)
    {
        var settings = Base();
        foreach (var (key, value) in values)
        {
            if (value is null)
            {
                settings.Remove(key);
            }
            else
            {
                settings[key] = value;
            }
        }

        return settings;
    }

    /// <summary>The errors that start-up and reload report for these settings (the same options factory and validators).</summary>
    internal static IReadOnlyList<string> Errors(IDictionary<string, string?> settings)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(settings).Build();
        using var services = new ServiceCollection().AddSingleton<IConfiguration>(configuration).AddGatewayOptions().BuildServiceProvider();
        try
        {
            services.GetRequiredService<IOptionsFactory<GatewayOptions>>().Create(Options.DefaultName);
            return [];
        }
        catch (OptionsValidationException ex)
        {
            return [.. ex.Failures];
        }
    }

    /// <summary>A bad value for the option and fragments its error must contain; null for free text.</summary>
    private static (string Value, string[] Expected)? BadValue(OptionKey option)
    {
        var type = option.Scalar;
        if (type == typeof(TimeSpan))
        {
            return ("5s", ["'5s' is not a time span", "hh:mm:ss"]);
        }

        if (type == typeof(int) || type == typeof(long))
        {
            return ("ten", ["'ten' is not a whole number"]);
        }

        if (type == typeof(double))
        {
            return ("0,5", ["'0,5' is not a number", "'.' as the decimal point"]);
        }

        if (type == typeof(bool))
        {
            return ("yes", ["'yes' is not a boolean", "true or false"]);
        }

        if (type.IsEnum)
        {
            var value = Enum.GetNames(type)[0] + "x";
            return (value, [$"'{value}' is not a valid value", .. Enum.GetNames(type)]);
        }

        if (type == typeof(string))
        {
            if (BadStrings.TryGetValue(option.Template, out var bad))
            {
                return (bad.Value, [$"'{bad.Value}'", bad.Expected]);
            }

            Assert.True(FreeText.Contains(option.Template), $"{option.Template} is a new string option: give it a bad value in {nameof(BadStrings)}, or list it in {nameof(FreeText)}.");
            return null;
        }

        Assert.Fail($"{option.Template}: no bad value for options of type {type}; add one.");
        return null;
    }

    private static OptionKey Option(string template) => OptionKeys.All.Single(o => o.Template == template);

    [Fact]
    public void Walk_FindsTheOptionsOfEveryKindOfPlace()
    {
        Assert.Contains(OptionKeys.All, o => o.Template == "Gateway:DrainTimeout" && o.Type == typeof(TimeSpan));
        Assert.Contains(OptionKeys.All, o => o.Template == "Gateway:Backends:<name>:Retry:BaseDelay");
        Assert.Contains(OptionKeys.All, o => o.Template == "Gateway:Routes:<name>:Timeout" && o.Type == typeof(TimeSpan?));
        Assert.Contains(OptionKeys.All, o => o.Template == "Gateway:Backends:<name>:Instances:<i>" && o.IsListItem);
        Assert.DoesNotContain(OptionKeys.All, o => o.Template.Contains("EffectiveMaxBodySize", StringComparison.Ordinal));
    }

    [Fact]
    public void Base_IsValid() => Assert.Empty(Errors(Base()));

    [Theory]
    [MemberData(nameof(Templates))]
    public void BadValue_GivesOneErrorNamingItsFullKeyAndTheExpectedFormat(string template)
    {
        var option = Option(template);
        if (BadValue(option) is not { } bad)
        {
            // Free text: anything goes, and the key is known.
            Assert.DoesNotContain(Errors(With((option.Key, "any text: {at all} 'quoted'"))), e => e.StartsWith(option.Key, StringComparison.OrdinalIgnoreCase));
            return;
        }

        var errors = Errors(With((option.Key, bad.Value)));

        var error = Assert.Single(errors);
        Assert.StartsWith(option.Key + ": ", error, StringComparison.Ordinal);
        foreach (var expected in bad.Expected)
        {
            Assert.Contains(expected, error, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void EveryBadValueAtOnce_EachIsReportedNamingItsKey()
    {
        var bad = OptionKeys.All.Select(o => (Option: o, Bad: BadValue(o))).Where(x => x.Bad is not null).ToList();
        var settings = With([.. bad.Select(x => (x.Option.Key, (string?)x.Bad!.Value.Value))]);

        var errors = Errors(settings);

        foreach (var (option, _) in bad)
        {
            Assert.Contains(errors, e => e.StartsWith(option.Key + ": ", StringComparison.Ordinal));
        }
    }

    [Theory]
    [MemberData(nameof(Templates))]
    public void MisspelledKey_IsUnknown_AndTheNearestNameSuggested(string template)
    {
        var option = Option(template);
        var parts = option.Key.Split(':');
        var nameIndex = option.IsListItem ? parts.Length - 2 : parts.Length - 1;
        parts[nameIndex] = option.Name.Remove(1, 1); // "Timeout" → "Tmeout"
        var misspelled = string.Join(':', parts[..(nameIndex + 1)]);

        var errors = Errors(With((string.Join(':', parts), "x")));

        Assert.Equal([$"{misspelled}: unknown key (did you mean '{option.Name}'?)."], errors);
    }

    [Theory]
    [MemberData(nameof(ListTemplates))]
    public void List_GivenAsOneValue_IsAnErrorNamingTheList(string template)
    {
        var list = Option(template).Key[..^2];

        var errors = Errors(With((list, "/tmp/one.sock"), (list + ":0", null)));

        Assert.Contains(errors, e => e.StartsWith($"{list}: '/tmp/one.sock' is a single value, but a list is expected", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(ListTemplates))]
    public void ListItem_Empty_IsOneErrorNamingTheItem_AndTheNextItemKeepsItsIndex(string template)
    {
        var option = Option(template);
        var next = option.Key[..^1] + "1";

        var errors = Errors(With((option.Key, ""), (next, BadValue(option)!.Value.Value)));

        Assert.Equal(2, errors.Count);
        Assert.Equal($"{option.Key}: is empty (a list item needs a value; remove it instead).", errors[0]);
        Assert.StartsWith(next + ": ", errors[1], StringComparison.Ordinal);
    }

    [Fact]
    public void ListItem_Null_IsAnError_NotACrash()
    {
        var errors = Errors(With(("Gateway:Routes:r:Methods:0", "GET")));
        var json = """{ "Gateway": { "Routes": { "r": { "Methods": [ null, "GET" ] } } } }""";
        var configuration = new ConfigurationBuilder()
            .AddInMemoryCollection(Base())
            .AddJsonStream(new MemoryStream(System.Text.Encoding.UTF8.GetBytes(json)))
            .Build();
        using var services = new ServiceCollection().AddSingleton<IConfiguration>(configuration).AddGatewayOptions().BuildServiceProvider();

        var ex = Assert.Throws<OptionsValidationException>(() => services.GetRequiredService<IOptionsFactory<GatewayOptions>>().Create(Options.DefaultName));

        Assert.Empty(errors);
        Assert.Equal(["Gateway:Routes:r:Methods:0: is empty (a list item needs a value; remove it instead)."], ex.Failures);
    }

    [Theory]
    [MemberData(nameof(ListTemplates))]
    public void ListItem_NotNumbered_IsAnError(string template)
    {
        var option = Option(template);
        var item = option.Key[..^1] + "first";

        var errors = Errors(With((item, "x")));

        Assert.Contains(errors, e => e.StartsWith($"{item}: 'first' is not a list index", StringComparison.Ordinal));
    }

    [Theory]
    [MemberData(nameof(NullableTemplates))]
    public void NullableOption_EmptyValue_UnsetsIt(string template)
    {
        var option = Option(template);

        var errors = Errors(With((option.Key, "")));

        Assert.DoesNotContain(errors, e => e.StartsWith(option.Key, StringComparison.OrdinalIgnoreCase));
    }

    [Theory]
    [MemberData(nameof(NonStringScalarTemplates))]
    public void NonNullableOption_EmptyValue_IsAnError(string template)
    {
        var option = Option(template);

        var error = Assert.Single(Errors(With((option.Key, ""))));

        Assert.StartsWith($"{option.Key}: is empty (expected ", error, StringComparison.Ordinal);
    }

    [Theory]
    [MemberData(nameof(NonStringScalarTemplates))]
    public void ScalarOption_GivenASection_IsAnError(string template)
    {
        var option = Option(template);

        var errors = Errors(With((option.Key + ":Nested", "1")));

        Assert.Contains(errors, e => e.StartsWith($"{option.Key}: is a section, but a single value is expected", StringComparison.Ordinal));
    }

    [Fact]
    public void Section_GivenAValue_IsAnError()
    {
        var errors = Errors(With(("Gateway:Listen", "/tmp/x.sock"), ($"Gateway:Backends:{OptionKeys.BackendName}:Retry", "3")));

        Assert.Contains(errors, e => e.StartsWith("Gateway:Listen: '/tmp/x.sock' is a single value, but a section is expected", StringComparison.Ordinal));
        Assert.Contains(errors, e => e.StartsWith("Gateway:Backends:b:Retry: '3' is a single value, but a section is expected", StringComparison.Ordinal));
    }

    [Fact]
    public void UnknownKey_FarFromAnyName_ListsTheKeysThere()
    {
        var error = Assert.Single(Errors(With(("Gateway:Backends:b:Colour", "blue"))));

        Assert.StartsWith("Gateway:Backends:b:Colour: unknown key (the keys here are Instances, Mode, Timeout,", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("5")] // would bind as five days
    [InlineData("10:00")] // would bind as ten hours
    [InlineData("00:00:05s")]
    [InlineData("00:60:00")]
    public void TimeSpan_ThatTheBinderWouldMisread_IsRejected(string value)
    {
        var error = Assert.Single(Errors(With(($"Gateway:Routes:{OptionKeys.RouteName}:Timeout", value))));

        Assert.Equal($"Gateway:Routes:r:Timeout: '{value}' is not a time span (expected {OptionsShape.TimeSpanFormat}).", error);
    }

    [Theory]
    [InlineData("Gateway:Backends:b:Mode", "1")] // the binder takes numbers
    [InlineData("Gateway:Backends:b:Mode", "Envelope,Raw")] // and ORs names
    [InlineData("Gateway:Backends:b:LoadBalancing", "RoundRobin|PowerOfTwoChoices")]
    public void Enum_OnlyItsNames_AreAccepted(string key, string value)
    {
        var error = Assert.Single(Errors(With((key, value))));

        Assert.StartsWith($"{key}: '{value}' is not a valid value (expected ", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Enum_Misspelled_SuggestsTheName()
    {
        var error = Assert.Single(Errors(With(("Gateway:Backends:b:Mode", "Rawx"))));

        Assert.Equal("Gateway:Backends:b:Mode: 'Rawx' is not a valid value (expected Envelope or Raw; did you mean 'Raw'?).", error);
    }

    [Theory]
    [InlineData("Gateway:Backends:b:Timeout", "5s")]
    [InlineData("Gateway:Backends:b:Mode", "Rawx")]
    [InlineData("Gateway:Backends:b:Retry:MaxAttempts", "three")]
    public void BadValueInABackend_KeepsTheBackend_SoTheDemoStaysOff(string key, string value)
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(With((key, value))).Build();
        var options = new GatewayOptions();

        OptionsShape.Bind(configuration.GetSection(GatewayOptions.SectionName), options);
        DemoDefaults.Apply(options);
        var errors = Errors(With((key, value)));

        Assert.Equal([OptionKeys.BackendName], options.Backends.Keys);
        Assert.False(options.DemoBackend.Enabled);
        var error = Assert.Single(errors);
        Assert.StartsWith(key + ": ", error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("Gateway:Backends:b:Retry:BaseDelay", "Gateway:Backends:b:Retry:MaxDelay", "00:00:00.010")] // MaxDelay < BaseDelay's default
    [InlineData("Gateway:Backends:b:Timeout", "Gateway:Backends:b:AttemptTimeout", "00:01:00")] // AttemptTimeout > Timeout's default
    [InlineData("Gateway:RateLimiting:PermitsPerSecond", "Gateway:RateLimiting:Burst", "5")] // Burst without PermitsPerSecond
    public void BadValue_ComparedWithAnother_GivesOnlyItsOwnError(string badKey, string otherKey, string otherValue)
    {
        var error = Assert.Single(Errors(With((badKey, "bad"), (otherKey, otherValue))));

        Assert.StartsWith($"{badKey}: 'bad' is not ", error, StringComparison.Ordinal);
    }

    [Fact]
    public void BadValue_DoesNotHideTheErrorsOfKeysThatBeginWithTheSameName()
    {
        var errors = Errors(With(("Gateway:Backends:b:Timeout", "bad"), ("Gateway:Backends:b:Instances:0", "relative.sock"), ("Gateway:Routes:r:Timeout", "-00:00:01")));

        Assert.Equal(3, errors.Count);
        Assert.Contains("Gateway:Routes:r:Timeout: must be positive.", errors);
    }

    [Fact]
    public void BadValueInARoute_KeepsTheRoute()
    {
        var configuration = new ConfigurationBuilder().AddInMemoryCollection(With(("Gateway:Routes:r:Timeout", "abc"), ("Gateway:Routes:r:Methods:0", "GET"))).Build();
        var options = new GatewayOptions();

        OptionsShape.Bind(configuration.GetSection(GatewayOptions.SectionName), options);

        var route = options.Routes[OptionKeys.RouteName];
        Assert.Equal("/r", route.Path);
        Assert.Equal(["GET"], route.Methods);
        Assert.Null(route.Timeout);
    }

    /// <summary>
    /// The shape check and the binder must agree: whatever the check accepts, the binder binds without an error and to
    /// the value the check read. Generated values (fixed seed, overridable with GATEWAY_TEST_SEED) of every scalar kind.
    /// </summary>
    [Fact]
    public void AcceptedValues_BindToTheSameValue_GeneratedInputs()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("GATEWAY_TEST_SEED"), CultureInfo.InvariantCulture, out var s) ? s : 19;
        var random = new Random(seed);
        string[] pieces = ["0", "1", "5", "9", "12", "59", "60", "99", ":", ":", ".", ".", "-", "+", " ", "e", "E3", "x", "Raw", "raw", "Envelope", ",", "true", "False", "0x1F", "NaN", "Infinity", "2147483648", "9223372036854775808"];
        var types = new[] { typeof(TimeSpan), typeof(int), typeof(long), typeof(double), typeof(bool), typeof(BackendMode) };
        var accepted = 0;
        for (var n = 0; n < 4000; n++)
        {
            var value = string.Concat(Enumerable.Range(0, random.Next(1, 7)).Select(_ => pieces[random.Next(pieces.Length)]));
            var type = types[n % types.Length];
            if (OptionsShape.ScalarError(type, value) is not null)
            {
                continue;
            }

            accepted++;
            var configuration = new ConfigurationBuilder().AddInMemoryCollection(new Dictionary<string, string?> { ["v"] = value }).Build();
            var bound = configuration.GetValue(type, "v");
            object expected = type switch
            {
                _ when type == typeof(TimeSpan) => TimeSpan.ParseExact(value, "c", CultureInfo.InvariantCulture),
                _ when type == typeof(int) => int.Parse(value, CultureInfo.InvariantCulture),
                _ when type == typeof(long) => long.Parse(value, CultureInfo.InvariantCulture),
                _ when type == typeof(double) => double.Parse(value, CultureInfo.InvariantCulture),
                _ when type == typeof(bool) => bool.Parse(value),
                _ => Enum.Parse(type, value, ignoreCase: true),
            };
            Assert.True(Equals(expected, bound), $"seed {seed}: '{value}' as {type.Name}: the check read {expected}, the binder {bound}");
        }

        Assert.True(accepted > 100, $"seed {seed}: only {accepted} generated values were accepted; the generator needs more valid shapes");
    }

    [Fact]
    public async Task Process_BadValuesInEntries_ExitsTwoListingEveryError()
    {
        using var dir = new TempSocketDirectory();

        await using var gateway = GatewayProcess.Start(
            "--Gateway:Listen:UnixSocket=" + dir.Socket("gw.sock"),
            "--Gateway:Backends:b:Instances:0=" + dir.Socket("b.sock"),
            "--Gateway:Backends:b:Timeout=5s",
            "--Gateway:Backends:b:Mode=Rawx",
            "--Gateway:Backends:b:Tmeout=00:00:05",
            "--Gateway:Routes:r:Path=/r",
            "--Gateway:Routes:r:Backend=b",
            "--Gateway:Routes:r:Timeout=abc",
            "--Gateway:Listen:TcpPort=http");
        var exitCode = await gateway.WaitForExitAsync();

        Assert.Equal(2, exitCode);
        var output = gateway.Output;
        Assert.Contains("Gateway: invalid configuration:", output, StringComparison.Ordinal);
        Assert.Contains("  - Gateway:Backends:b:Timeout: '5s' is not a time span (expected hh:mm:ss", output, StringComparison.Ordinal);
        Assert.Contains("  - Gateway:Backends:b:Mode: 'Rawx' is not a valid value (expected Envelope or Raw; did you mean 'Raw'?).", output, StringComparison.Ordinal);
        Assert.Contains("  - Gateway:Backends:b:Tmeout: unknown key (did you mean 'Timeout'?).", output, StringComparison.Ordinal);
        Assert.Contains("  - Gateway:Routes:r:Timeout: 'abc' is not a time span (expected hh:mm:ss", output, StringComparison.Ordinal);
        Assert.Contains("  - Gateway:Listen:TcpPort: 'http' is not a whole number", output, StringComparison.Ordinal);
        Assert.DoesNotContain("is not a configured backend", output, StringComparison.Ordinal);
        Assert.DoesNotContain("   at ", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Reload_BadValue_IsLoggedNamingTheKey_AndTheOldRoutesServe()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = await TestBackend.StartAsync(dir.Socket("b.sock"), (_, _) => ValueTask.FromResult(BackendResponse.Text("still here")));
        var file = Path.Combine(dir.Path, "gateway.json");
        static string Config(string socket, string timeout) => $$"""
            { "Gateway": {
                "Backends": { "b": { "Instances": [ "{{socket}}" ] } },
                "Routes": { "r": { "Path": "/r/{**rest}", "Backend": "b", "Timeout": "{{timeout}}" } } } }
            """;
        await File.WriteAllTextAsync(file, Config(backend.SocketPath, "00:00:05"));
        var logs = new CapturingLoggerProvider();
        await using var factory = new GatewayFactory(dir, jsonFile: file, services: s => s.AddSingleton<ILoggerProvider>(logs));
        using var client = factory.CreateClient();
        var routes = factory.Services.GetRequiredService<RouteTableProvider>();
        var version = routes.Current.Version;

        await File.WriteAllTextAsync(file, Config(backend.SocketPath, "abc").Replace("\"Backend\"", "\"Backnd\"", StringComparison.Ordinal));
        var error = await logs.WaitForAsync(1013);

        Assert.Contains("  - Gateway:Routes:r:Timeout: 'abc' is not a time span (expected hh:mm:ss", error, StringComparison.Ordinal);
        Assert.Contains("  - Gateway:Routes:r:Backnd: unknown key (did you mean 'Backend'?).", error, StringComparison.Ordinal);
        Assert.Equal(version, routes.Current.Version);
        Assert.Equal(TimeSpan.FromSeconds(5), Assert.Single(routes.Current.Routes).Timeout);
        using var response = await client.GetAsync("/r/x");
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal("still here", await response.Content.ReadAsStringAsync());
    }

    /// <summary>
    /// The shape check walks a listed set of options classes (so that a Native AOT build keeps their properties); every
    /// class reachable from <see cref="GatewayOptions"/> — found here by following property types, dictionary values and
    /// list items — must be in that list, and nothing else.
    /// </summary>
    [Fact]
    public void EveryOptionsClass_IsKnownToTheWalk()
    {
        var found = new HashSet<Type>();
        void Walk(Type type)
        {
            if (type == typeof(string) || type.IsValueType || !found.Add(type))
            {
                return;
            }

            foreach (var property in type.GetProperties(BindingFlags.Public | BindingFlags.Instance).Where(p => p.SetMethod?.IsPublic == true))
            {
                var t = property.PropertyType;
                if (t.IsGenericType)
                {
                    Walk(t.GetGenericArguments()[^1]);
                }
                else
                {
                    Walk(t.IsArray ? t.GetElementType()! : t);
                }
            }
        }

        Walk(typeof(GatewayOptions));

        Assert.Equal(found.Select(t => t.Name).Order(StringComparer.Ordinal), OptionsShape.KnownTypes.Select(t => t.Name).Order(StringComparer.Ordinal));
    }
}
