using Gateway.Testing;
using Microsoft.Playwright;

namespace Gateway.BrowserTests;

/// <summary>Swagger UI in headless Chromium against a live gateway: "Try it out" really reaches the backend.</summary>
public class SwaggerUITests
{
    [ChromiumFact]
    public async Task TryItOut_OnTheEchoRoute_ShowsTheBackendsReply()
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
        var page = await browser.NewPageAsync(new() { ViewportSize = new() { Width = 1280, Height = 1600 } });

        await page.GotoAsync(gateway.BaseUrl + "/swagger/index.html");
        var operation = page.Locator("#operations-Routes-echo_get");
        await operation.Locator(".opblock-summary").ClickAsync();
        await operation.Locator("button.try-out__btn").ClickAsync();
        await operation.Locator("input[placeholder='rest']").FillAsync("hello");
        await operation.Locator("button.execute").ClickAsync();
        var body = operation.Locator(".live-responses-table .response-col_description pre.microlight").First;
        await Assertions.Expect(body).ToContainTextAsync("GET /echo/hello");
        await operation.Locator(".response-col_status").First.WaitForAsync();
        var screenshot = Path.Combine(AppContext.BaseDirectory, "TestResults", "swagger-ui.png");
        Directory.CreateDirectory(Path.GetDirectoryName(screenshot)!);
        await page.ScreenshotAsync(new() { Path = screenshot, FullPage = true });

        // A catch-all value spanning segments goes out unescaped (a/b, not a%2Fb).
        await operation.Locator("input[placeholder='rest']").FillAsync("a/b/c");
        await operation.Locator("button.execute").ClickAsync();
        await Assertions.Expect(body).ToContainTextAsync("GET /echo/a/b/c");

        Assert.True(new FileInfo(screenshot).Length > 0);
        Assert.Contains("curl --unix-socket " + gateway.SocketPath, await operation.Locator(".opblock-description-wrapper").InnerTextAsync(), StringComparison.Ordinal);
    }
}
