using System.Text;

namespace Gateway.Bench.LoadGen.Tests;

public class ResponseParserTests
{
    private static readonly byte[] Expected = "hello world"u8.ToArray();

    /// <summary>Feeds <paramref name="response"/> in pieces of <paramref name="piece"/> bytes, as reads would.</summary>
    private static (ParseResult Result, ResponseParser Parser) Feed(string response, int piece, byte[] expected, bool verify = true)
    {
        var bytes = Encoding.ASCII.GetBytes(response);
        var parser = new ResponseParser();
        parser.Reset();
        var buffered = new List<byte>();
        var inBody = false;
        var result = ParseResult.NeedMore;
        for (var i = 0; i < bytes.Length; i += piece)
        {
            buffered.AddRange(bytes.AsSpan(i, Math.Min(piece, bytes.Length - i)).ToArray());
            ReadOnlySpan<byte> data = buffered.ToArray();
            if (!inBody)
            {
                var headerLength = parser.ParseHeaders(data);
                if (headerLength < 0)
                {
                    return (ParseResult.Malformed, parser);
                }

                if (headerLength == 0)
                {
                    continue;
                }

                inBody = true;
                data = data[headerLength..];
            }

            result = parser.ParseBody(data, expected, verify);
            buffered.Clear();
            if (result != ParseResult.NeedMore)
            {
                break;
            }
        }

        return (result, parser);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(4096)]
    public void ContentLength_AnySplit_CompletesAndMatches(int piece)
    {
        var (result, parser) = Feed("HTTP/1.1 200 OK\r\nContent-Length: 11\r\nContent-Type: x\r\n\r\nhello world", piece, Expected);

        Assert.Equal(ParseResult.Done, result);
        Assert.Equal(200, parser.Status);
        Assert.True(parser.BodyMatches);
        Assert.False(parser.ConnectionClose);
    }

    [Theory]
    [InlineData(1)]
    [InlineData(5)]
    [InlineData(4096)]
    public void Chunked_WithExtensionAndTrailer_CompletesAndMatches(int piece)
    {
        var response = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n";

        var (result, parser) = Feed(response, piece, Expected);

        Assert.Equal(ParseResult.Done, result);
        Assert.True(parser.BodyMatches);
    }

    [Fact]
    public void DifferentBody_IsReportedAsMismatch()
    {
        var (result, parser) = Feed("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello WORLD", 3, Expected);

        Assert.Equal(ParseResult.Done, result);
        Assert.False(parser.BodyMatches);
    }

    [Fact]
    public void ShorterBody_IsReportedAsMismatch()
    {
        var (result, parser) = Feed("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 64, Expected);

        Assert.Equal(ParseResult.Done, result);
        Assert.False(parser.BodyMatches);
    }

    [Fact]
    public void ConnectionClose_IsDetected()
    {
        var (result, parser) = Feed("HTTP/1.1 503 Service Unavailable\r\nconnection: Close\r\ncontent-length: 0\r\n\r\n", 64, Expected, verify: false);

        Assert.Equal(ParseResult.Done, result);
        Assert.Equal(503, parser.Status);
        Assert.True(parser.ConnectionClose);
    }

    [Theory]
    [InlineData("HTTP/1.1 200 OK\r\nContent-Type: x\r\n\r\nbody")] // no length: read-until-close is refused
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nabEXTRA")] // bytes after the response
    [InlineData("HTTX/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")] // bad status line
    [InlineData("HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n")] // bad status code
    [InlineData("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n")] // bad length
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")] // bad chunk size
    [InlineData("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabXY")] // chunk data not followed by CRLF
    public void MalformedResponse_IsRejected(string response)
    {
        var (result, _) = Feed(response, 4096, "ab"u8.ToArray(), verify: false);

        Assert.Equal(ParseResult.Malformed, result);
    }
}
