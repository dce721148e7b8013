// Key-value backend: a stateful sample on which duplicate execution would be visible (counters, /stats).
// Socket path: configuration key Backend:SocketPath (--Backend:SocketPath=... or env Backend__SocketPath);
// default /tmp/gateway/kv.sock.
using KeyValueBackend;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

var builder = Host.CreateApplicationBuilder(args);
builder.Services
    .AddDatagramBackend("kv", builder.Configuration.GetSection("Backend"), o => o.SocketPath = "/tmp/gateway/kv.sock")
    .Map<KeyValueHandler>();
builder.Build().Run();
