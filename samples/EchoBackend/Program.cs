// Echo backend: serves the echo behaviour (ECHO.md) on a Unix datagram socket.
// Socket path: configuration key Backend:SocketPath (--Backend:SocketPath=/tmp/x/echo.sock, or env
// Backend__SocketPath); default /tmp/gateway/echo.sock. Other Backend:* keys bind DatagramBackendOptions.
using EchoBackend;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

var builder = Host.CreateApplicationBuilder(args);
builder.Services
    .AddDatagramBackend("echo", builder.Configuration.GetSection("Backend"), o =>
    {
        o.SocketPath = "/tmp/gateway/echo.sock";

        // The echo answers at once (or awaits its delay): start it on the receive thread, no thread-pool hop.
        o.RunHandlersInline = true;
    })
    .Map<EchoHandler>();
builder.Build().Run();
