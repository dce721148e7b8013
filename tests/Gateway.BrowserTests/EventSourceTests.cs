using Gateway.Testing;
using Microsoft.Playwright;

namespace Gateway.BrowserTests;

/// <summary>A browser's EventSource receives server-sent events streamed by a backend through the gateway.</summary>
public class EventSourceTests
{
    [ChromiumFact]
    public async Task EventSource_OnTheDemoEcho_ReceivesEveryStreamedEvent()
    {
        using var dir = new TempSocketDirectory();
        await using var gateway = await GatewayWithTcp.StartAsync(dir);
        using var playwright = await Playwright.CreateAsync();
        await using var browser = await playwright.Chromium.LaunchAsync(new()
        {
            ExecutablePath = ChromiumFactAttribute.ExecutablePath,
            Headless = true,
            Args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"],
        });
        var page = await browser.NewPageAsync();

        // Same origin as the stream (a page served through the gateway); EventSource sends Accept: text/event-stream, and
        // cannot set headers, so the echo's stream settings travel as query parameters.
        await page.GotoAsync(gateway.BaseUrl + "/echo/page");
        var events = await page.EvaluateAsync<string[]>(
            """
            () => new Promise((resolve, reject) => {
                const got = [];
                const source = new EventSource('/echo/events?x-echo-stream-count=5&x-echo-stream-interval-ms=20');
                source.onmessage = e => {
                    got.push(e.data);
                    if (got.length === 5) { source.close(); resolve(got); }
                };
                source.onerror = () => { if (got.length < 5) { source.close(); reject(new Error('EventSource failed after ' + got.length + ' events')); } };
                setTimeout(() => { source.close(); reject(new Error('timed out after ' + got.length + ' events')); }, 20000);
            })
            """);

        Assert.Equal(["chunk 1", "chunk 2", "chunk 3", "chunk 4", "chunk 5"], events);
    }
}
