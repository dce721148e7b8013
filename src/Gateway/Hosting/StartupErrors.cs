using System.Net.Sockets;

namespace Gateway.Hosting;

/// <summary>Start-up failures that are the user's to fix: reported as one clear line, not a stack trace.</summary>
internal static class StartupErrors
{
    /// <summary>
    /// True when the gateway is the process's program; false when a host such as WebApplicationFactory runs it,
    /// which must see the exceptions itself.
    /// </summary>
    public static bool IsMainProgram => System.Reflection.Assembly.GetEntryAssembly() == typeof(StartupErrors).Assembly;

    public static bool IsUserFacing(Exception ex) => Unwrap(ex) is InvalidOperationException or IOException or SocketException or UnauthorizedAccessException;

    public static string Message(Exception ex) => Unwrap(ex).Message;

    private static Exception Unwrap(Exception ex)
    {
        while (ex is AggregateException { InnerException: { } inner })
        {
            ex = inner;
        }

        return ex;
    }
}
