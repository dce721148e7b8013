using System.Diagnostics.Metrics;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;
using Gateway.Testing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Gateway.Tests.Infrastructure;
using Microsoft.Extensions.DependencyInjection;

namespace Gateway.Tests.Forwarding;

/// <summary>
/// Replies the wire protocol allows, or that break it, each become a well-formed HTTP/1.1 response: the backend's
/// status and headers, or a 502 <c>malformed-reply</c> problem; never Kestrel's empty 500 (docs/protocol.md section 4.2).
/// Every response is read from the raw bytes of a real Unix socket and parsed strictly (<see cref="Http11ResponseParser"/>).
/// </summary>
public class ReplyMappingTests
{
    internal static readonly TimeSpan HangGuard = TimeSpan.FromSeconds(30);

    internal static Dictionary<string, string?> Settings(string backendPath) => new()
    {
        ["Gateway:Backends:s:Instances:0"] = backendPath,
        ["Gateway:Backends:s:Retry:MaxAttempts"] = "1",
        ["Gateway:Routes:r:Path"] = "/r/{**rest}",
        ["Gateway:Routes:r:Backend"] = "s",
    };

    internal static async Task<Http11Response> SendAsync(GatewayFactory factory, string method, byte[]? body = null)
    {
        var bytes = await RawUnixHttp.ExchangeAsync(factory.SocketPath, RawUnixHttp.Request(method, "/r/x", body), HangGuard);
        return Http11ResponseParser.Parse(bytes, HttpMethods.IsHead(method));
    }

    internal static void AssertMalformedReply(Http11Response response, bool head, string? detailContains = null)
    {
        Assert.Equal(502, response.Status);
        Assert.Equal("application/problem+json", response.Get("Content-Type"));
        if (head)
        {
            return;
        }

        var problem = JsonDocument.Parse(response.Body).RootElement;
        Assert.Equal("urn:gateway:problem:malformed-reply", problem.GetProperty("type").GetString());
        Assert.Equal(502, problem.GetProperty("status").GetInt32());
        if (detailContains is not null)
        {
            Assert.Contains(detailContains, problem.GetProperty("detail").GetString(), StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData(204, "GET")]
    [InlineData(204, "POST")]
    [InlineData(205, "GET")]
    [InlineData(304, "GET")]
    [InlineData(204, "HEAD")]
    public async Task NoContentStatus_WithBody_StatusAndHeadersForwarded_BodyDroppedAndCounted(int status, string method)
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new ScriptedReplyBackend(dir.Socket("b.sock"), _ => ScriptedReplyBackend.Payload(status, [("etag", "\"v1\""), ("x-kind", "empty")], "a body that must not be sent"));
        await using var factory = new GatewayFactory(dir, Settings(backend.SocketPath)).StartKestrel();
        var dropped = new List<(long Value, int Status)>();
        using var listener = ListenBodyDropped(factory, dropped);

        var response = await SendAsync(factory, method, method == "POST" ? "x"u8.ToArray() : null);

        Assert.Equal(status, response.Status);
        Assert.Equal("\"v1\"", response.Get("ETag"));
        Assert.Equal("empty", response.Get("x-kind"));
        Assert.Empty(response.Body);
        Assert.Equal(status == 205 ? "0" : null, response.Get("Content-Length")); // 205: zero-length content, RFC 9110 section 15.3.6
        Assert.Null(response.Get("Transfer-Encoding"));
        listener.RecordObservableInstruments();
        Assert.Equal([(1L, status)], dropped);
    }

    [Fact]
    public async Task Head_ReplyWithTheGetBody_ContentLengthIsItsLength_NoBodySent_NotCountedAsDropped()
    {
        using var dir = new TempSocketDirectory();
        var methods = new List<string>();
        await using var backend = new ScriptedReplyBackend(dir.Socket("b.sock"), method =>
        {
            lock (methods)
            {
                methods.Add(method);
            }

            return ScriptedReplyBackend.Payload(200, [("content-type", "text/plain")], "twelve bytes");
        });
        await using var factory = new GatewayFactory(dir, Settings(backend.SocketPath)).StartKestrel();
        var dropped = new List<(long Value, int Status)>();
        using var listener = ListenBodyDropped(factory, dropped);

        var head = await SendAsync(factory, "HEAD");
        var get = await SendAsync(factory, "GET");

        Assert.Equal(200, head.Status);
        Assert.Equal("12", head.Get("Content-Length"));
        Assert.Equal("text/plain", head.Get("Content-Type"));
        Assert.Empty(head.Body);
        Assert.Equal("twelve bytes", Encoding.ASCII.GetString(get.Body));
        Assert.Equal(["HEAD", "GET"], methods);
        Assert.Empty(dropped);
    }

    public static TheoryData<string, byte[], byte[], string> BadHeaders => new()
    {
        { "non-ASCII byte (UTF-8 é)", "x-name"u8.ToArray(), "caf\u00e9"u8.ToArray(), "byte 0xc3 at offset 3" },
        { "Latin-1 byte", "x-name"u8.ToArray(), [0x61, 0xe9], "byte 0xe9 at offset 1" },
        { "LF (response splitting)", "x-name"u8.ToArray(), "a\nset-cookie: evil=1"u8.ToArray(), "byte 0x0a at offset 1" },
        { "CR", "x-name"u8.ToArray(), "a\rb"u8.ToArray(), "byte 0x0d at offset 1" },
        { "NUL", "x-name"u8.ToArray(), [0x61, 0x00], "byte 0x00 at offset 1" },
        { "DEL", "x-name"u8.ToArray(), [0x7f], "byte 0x7f at offset 0" },
        { "space in the name", "x name"u8.ToArray(), "v"u8.ToArray(), "byte 0x20 at offset 1" },
        { "colon in the name", ":status"u8.ToArray(), "200"u8.ToArray(), "byte 0x3a at offset 0" },
        { "non-ASCII name", [0x78, 0xff], "v"u8.ToArray(), "byte 0xff at offset 1" },
    };

    [Theory]
    [MemberData(nameof(BadHeaders))]
    public async Task HeaderFieldThatHttpCannotCarry_Is502MalformedReply_NamingTheByte_GatewayStaysUp(string why, byte[] name, byte[] value, string detail)
    {
        using var dir = new TempSocketDirectory();
        var good = true;
        await using var backend = new ScriptedReplyBackend(dir.Socket("b.sock"), _ => Volatile.Read(ref good)
            ? ScriptedReplyBackend.Payload(200, [("x-ok", "1")], "fine")
            : ScriptedReplyBackend.Payload(200, [("x-ok"u8.ToArray(), "1"u8.ToArray()), (name, value)], "body"u8.ToArray()));
        await using var factory = new GatewayFactory(dir, Settings(backend.SocketPath)).StartKestrel();

        Volatile.Write(ref good, false);
        var bad = await SendAsync(factory, "GET");
        var badHead = await SendAsync(factory, "HEAD");
        Volatile.Write(ref good, true);
        var after = await SendAsync(factory, "GET");

        Assert.True(bad.Status == 502, $"{why}: {bad.Status}");
        AssertMalformedReply(bad, head: false, detail);
        Assert.Null(bad.Get("x-ok")); // nothing of the rejected reply leaks into the problem response
        Assert.NotNull(bad.Get("X-Correlation-Id"));
        AssertMalformedReply(badHead, head: true);
        Assert.Equal(200, after.Status);
        Assert.Equal("fine", Encoding.ASCII.GetString(after.Body));
    }

    [Fact]
    public async Task HopByHopAndFramingHeadersFromTheBackend_AreDropped_TheGatewayFramesTheBody()
    {
        using var dir = new TempSocketDirectory();
        await using var backend = new ScriptedReplyBackend(dir.Socket("b.sock"), _ => ScriptedReplyBackend.Payload(
            200,
            [("connection", "close"), ("keep-alive", "timeout=5"), ("transfer-encoding", "chunked"), ("content-length", "999"), ("te", "trailers"),
             ("trailer", "x-t"), ("upgrade", "h2c"), ("proxy-authenticate", "Basic"), ("x-a", "1"), ("x-a", "2")],
            "hello"));
        await using var factory = new GatewayFactory(dir, Settings(backend.SocketPath)).StartKestrel();

        var response = await SendAsync(factory, "GET");

        Assert.Equal(200, response.Status);
        Assert.Equal("hello", Encoding.ASCII.GetString(response.Body));
        Assert.Equal("5", response.Get("Content-Length"));
        Assert.Equal(["1", "2"], response.GetAll("x-a"));
        foreach (var name in new[] { "keep-alive", "transfer-encoding", "te", "trailer", "upgrade", "proxy-authenticate" })
        {
            Assert.Empty(response.GetAll(name));
        }
    }

    /// <summary>The gateway's <c>gateway.reply.body_dropped</c> measurements (this host's meter only).</summary>
    internal static MeterListener ListenBodyDropped(GatewayFactory factory, List<(long Value, int Status)> into)
    {
        var scope = factory.Services.GetRequiredService<IMeterFactory>();
        var listener = new MeterListener
        {
            InstrumentPublished = (instrument, l) =>
            {
                if (instrument.Meter.Scope == scope && instrument.Name == "gateway.reply.body_dropped")
                {
                    l.EnableMeasurementEvents(instrument);
                }
            },
        };
        listener.SetMeasurementEventCallback<long>((_, value, tags, _) =>
        {
            var status = 0;
            foreach (var tag in tags)
            {
                if (tag.Key == "http.response.status_code")
                {
                    status = (int)tag.Value!;
                }
            }

            lock (into)
            {
                into.Add((value, status));
            }
        });
        listener.Start();
        return listener;
    }
}

/// <summary>
/// The safety net behind the reply rules: a failure the rules did not foresee, injected into the response body, is a
/// 502 <c>malformed-reply</c> before the response has started, and an aborted connection (never a truncated success)
/// after it has started; the gateway keeps answering.
/// </summary>
public class ReplyMappingSafetyNetTests
{
    private const string FaultHeader = "x-test-fault";

    [Theory]
    [InlineData("envelope")]
    [InlineData("raw")]
    public async Task FailureBeforeTheResponseStarted_Is502MalformedReply_NotAnEmpty500(string mode)
    {
        await using var setup = await StartAsync(mode);

        var response = await SendAsync(setup.Factory, setup.Path, "before-start");
        var after = await SendAsync(setup.Factory, setup.Path, null);

        ReplyMappingTests.AssertMalformedReply(response, head: false, "could not be turned into an HTTP response: injected");
        Assert.Equal(200, after.Status);
        Assert.Equal("0123456789", Encoding.ASCII.GetString(after.Body));
    }

    [Theory]
    [InlineData("envelope")]
    [InlineData("raw")]
    public async Task FailureAfterTheResponseStarted_AbortsTheConnection_TheCallerCannotTakeItForComplete(string mode)
    {
        await using var setup = await StartAsync(mode);

        var bytes = await RawUnixHttp.ExchangeAsync(setup.Factory.SocketPath, RawUnixHttp.Request("GET", setup.Path, null, (FaultHeader, "after-start")), ReplyMappingTests.HangGuard);
        var after = await SendAsync(setup.Factory, setup.Path, null);

        // The abort may come before Kestrel flushed the head (nothing at all) or after (a head without its body);
        // either way the caller cannot take it for a complete response.
        if (bytes.Length > 0)
        {
            Assert.StartsWith("HTTP/1.1 200 ", Encoding.ASCII.GetString(bytes), StringComparison.Ordinal);
            var ex = Assert.Throws<FormatException>(() => Http11ResponseParser.Parse(bytes, headRequest: false));
            Assert.Contains("Content-Length 10 but 0 bytes", ex.Message, StringComparison.Ordinal);
        }

        Assert.Equal(200, after.Status);
    }

    private static async Task<Http11Response> SendAsync(GatewayFactory factory, string path, string? fault)
    {
        var request = fault is null ? RawUnixHttp.Request("GET", path) : RawUnixHttp.Request("GET", path, null, (FaultHeader, fault));
        return Http11ResponseParser.Parse(await RawUnixHttp.ExchangeAsync(factory.SocketPath, request, ReplyMappingTests.HangGuard), headRequest: false);
    }

    private sealed class Setup(TempSocketDirectory dir, IAsyncDisposable backend, GatewayFactory factory, string path) : IAsyncDisposable
    {
        public GatewayFactory Factory => factory;

        public string Path => path;

        public async ValueTask DisposeAsync()
        {
            await factory.DisposeAsync();
            await backend.DisposeAsync();
            dir.Dispose();
        }
    }

    private static async Task<Setup> StartAsync(string mode)
    {
        var dir = new TempSocketDirectory();
        IAsyncDisposable backend;
        Dictionary<string, string?> settings;
        if (mode == "raw")
        {
            var raw = new RawEchoServer(dir.Socket("raw.sock"), "0123456789"u8.ToArray());
            backend = raw;
            settings = new()
            {
                ["Gateway:Backends:s:Mode"] = "Raw",
                ["Gateway:Backends:s:Instances:0"] = raw.Path,
                ["Gateway:Routes:r:Path"] = "/r/{**rest}",
                ["Gateway:Routes:r:Backend"] = "s",
            };
        }
        else
        {
            var scripted = new ScriptedReplyBackend(dir.Socket("b.sock"), _ => ScriptedReplyBackend.Payload(200, [("x-a", "1")], "0123456789"));
            backend = scripted;
            settings = ReplyMappingTests.Settings(scripted.SocketPath);
        }

        var factory = new GatewayFactory(dir, settings, services => services.AddSingleton<IStartupFilter, FaultInjection>()).StartKestrel();
        return new Setup(dir, backend, factory, "/r/x");
    }

    /// <summary>A raw daemon that answers every datagram with the same bytes.</summary>
    private sealed class RawEchoServer : IAsyncDisposable
    {
        private readonly Socket _socket = new(AddressFamily.Unix, SocketType.Dgram, ProtocolType.Unspecified);
        private readonly Task _loop;

        public RawEchoServer(string path, byte[] reply)
        {
            Path = path;
            _socket.Bind(new UnixDomainSocketEndPoint(path));
            _loop = Task.Run(async () =>
            {
                var buffer = new byte[65536];
                var sender = new SocketAddress(AddressFamily.Unix, 128);
                while (true)
                {
                    sender.Size = 128;
                    try
                    {
                        await _socket.ReceiveFromAsync(buffer, SocketFlags.None, sender);
                        var to = new SocketAddress(AddressFamily.Unix, sender.Size);
                        sender.Buffer.Span[..sender.Size].CopyTo(to.Buffer.Span);
                        await _socket.SendToAsync(reply, SocketFlags.None, to);
                    }
                    catch (Exception ex) when (ex is ObjectDisposedException or SocketException)
                    {
                        return;
                    }
                }
            });
        }

        public string Path { get; }

        public async ValueTask DisposeAsync()
        {
            _socket.Dispose();
            await _loop.ConfigureAwait(ConfigureAwaitOptions.SuppressThrowing);
        }
    }

    /// <summary>Puts a response body that fails once (before or after starting the response) under requests that ask for it.</summary>
    private sealed class FaultInjection : IStartupFilter
    {
        public Action<IApplicationBuilder> Configure(Action<IApplicationBuilder> next) => app =>
        {
            app.Use((context, nextMiddleware) =>
            {
                if (context.Request.Headers[FaultHeader] is [var fault])
                {
                    var inner = context.Features.Get<IHttpResponseBodyFeature>()!;
                    context.Features.Set<IHttpResponseBodyFeature>(new FailingBody(inner, startFirst: fault == "after-start"));
                }

                return nextMiddleware(context);
            });
            next(app);
        };
    }

    private sealed class FailingBody(IHttpResponseBodyFeature inner, bool startFirst) : Stream, IHttpResponseBodyFeature
    {
        private int _failed;

        public Stream Stream => this;

        public PipeWriter Writer => inner.Writer;

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => throw new NotSupportedException();

        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public Task CompleteAsync() => inner.CompleteAsync();

        public void DisableBuffering() => inner.DisableBuffering();

        public Task SendFileAsync(string path, long offset, long? count, CancellationToken cancellationToken = default) => inner.SendFileAsync(path, offset, count, cancellationToken);

        public Task StartAsync(CancellationToken cancellationToken = default) => inner.StartAsync(cancellationToken);

        public override async ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (Interlocked.Exchange(ref _failed, 1) == 0)
            {
                if (startFirst)
                {
                    await inner.StartAsync(cancellationToken);
                    await inner.Writer.FlushAsync(cancellationToken); // the status line and headers are on the wire
                }

                throw new InvalidOperationException("injected");
            }

            await inner.Stream.WriteAsync(buffer, cancellationToken);
        }

        public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            WriteAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override void Flush()
        {
        }

        public override Task FlushAsync(CancellationToken cancellationToken) => inner.Stream.FlushAsync(cancellationToken);

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }
}
