using System.Text;
using Microsoft.AspNetCore.Routing.Patterns;

namespace Gateway.OpenApi;

/// <summary>The <c>curl --unix-socket</c> equivalent of an operation, shown in its description.</summary>
internal static class CurlCommand
{
    public const string Marker = "curl --unix-socket ";

    /// <summary>
    /// E.g. <c>curl --unix-socket /tmp/gateway/gateway.sock -X PUT --data-binary @body 'http://localhost/kv/&lt;key&gt;'</c>;
    /// path parameters appear as <c>&lt;name&gt;</c> placeholders.
    /// </summary>
    public static string For(string socketPath, string method, string openApiPath, bool withBody)
    {
        var command = new StringBuilder(Marker).Append(Quote(socketPath));
        if (method != "GET" && !(method == "POST" && withBody))
        {
            command.Append(" -X ").Append(method);
        }

        if (withBody)
        {
            command.Append(" -H 'Content-Type: application/octet-stream' --data-binary @request.bin");
        }

        var path = openApiPath.Replace('{', '<').Replace('}', '>');
        return command.Append(' ').Append(Quote("http://localhost" + path)).ToString();
    }

    /// <summary>Single-quotes a shell word when it needs it.</summary>
    public static string Quote(string word) =>
        word.Length > 0 && word.All(c => char.IsAsciiLetterOrDigit(c) || c is '/' or '.' or '-' or '_' or ':' or '=' or '@' or ',')
            ? word
            : "'" + word.Replace("'", "'\\''", StringComparison.Ordinal) + "'";

    /// <summary>The OpenAPI path of a route pattern: parameters as <c>{name}</c>, constraints and defaults dropped.</summary>
    public static string OpenApiPath(RoutePattern pattern)
    {
        var path = new StringBuilder();
        foreach (var segment in pattern.PathSegments)
        {
            path.Append('/');
            foreach (var part in segment.Parts)
            {
                switch (part)
                {
                    case RoutePatternLiteralPart literal:
                        path.Append(literal.Content);
                        break;
                    case RoutePatternSeparatorPart separator:
                        path.Append(separator.Content);
                        break;
                    case RoutePatternParameterPart parameter:
                        path.Append('{').Append(parameter.Name).Append('}');
                        break;
                }
            }
        }

        return path.Length == 0 ? "/" : path.ToString();
    }
}
