// Key-value backend: a stateful sample on which duplicate execution would be visible (counters, /stats, /ops).
// Socket path: configuration key Backend:SocketPath (--Backend:SocketPath=... or env Backend__SocketPath);
// default /tmp/gateway/kv.sock. KeyValue:JournalPath (optional): a file recording each executed POST /ops/{id},
// kept across restarts (the chaos soak counts executions in it; Idempotency-Keys in it are not executed again).
using KeyValueBackend;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

var builder = Host.CreateApplicationBuilder(args);
var journalPath = builder.Configuration["KeyValue:JournalPath"];
builder.Services.AddSingleton(_ => new KeyValueHandler(string.IsNullOrEmpty(journalPath) ? null : new OperationJournal(journalPath)));
builder.Services
    .AddDatagramBackend("kv", builder.Configuration.GetSection("Backend"), o => o.SocketPath = "/tmp/gateway/kv.sock")
    .Map<KeyValueHandler>();
builder.Build().Run();
