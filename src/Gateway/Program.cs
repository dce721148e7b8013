using Gateway.Hosting;
using Microsoft.Extensions.Options;

try
{
    if (StartupErrors.IsMainProgram)
    {
        // Before the first socket operation: the runtime reads it once (SocketCompletions; issue 20).
        SocketCompletions.PreferInline();
    }

    args = ConfigurationFiles.ExtractConfigSwitch(args, out var configFile);
    if (args.Contains(HealthCheckCommand.Switch))
    {
        var healthBuilder = WebApplication.CreateBuilder(new WebApplicationOptions
        {
            Args = args.Where(a => a != HealthCheckCommand.Switch).ToArray(),
            ContentRootPath = AppContext.BaseDirectory,
        });
        ConfigurationFiles.Apply(healthBuilder, configFile);
        return await HealthCheckCommand.RunAsync(healthBuilder.Configuration);
    }

    // appsettings*.json are read from beside the executable, whatever the working directory (in Development, from
    // the project directory when it exists), then the --config / GATEWAY_CONFIG file; all are watched.
    var builder = WebApplication.CreateBuilder(new WebApplicationOptions { Args = args, ContentRootPath = AppContext.BaseDirectory });
    var configurationFiles = ConfigurationFiles.Apply(builder, configFile);
    builder.Services.AddSingleton(configurationFiles);
    builder.Services.AddHostedService<ConfigurationFilesLog>();
    builder.AddGateway();

    var app = builder.Build();
    app.MapGateway();
    await app.RunAsync();
    return 0;
}
catch (OptionsValidationException ex) when (StartupErrors.IsMainProgram)
{
    // Every configuration error at once, each naming its key; no stack trace for a user's typo.
    await Console.Error.WriteLineAsync("Gateway: invalid configuration:");
    foreach (var failure in ex.Failures)
    {
        await Console.Error.WriteLineAsync($"  - {failure}");
    }

    return 2;
}
catch (Exception ex) when (StartupErrors.IsMainProgram && StartupErrors.IsUserFacing(ex))
{
    await Console.Error.WriteLineAsync($"Gateway: cannot start: {StartupErrors.Message(ex)}");
    return 2;
}
