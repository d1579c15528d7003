import Testing
@testable import ApusProtocols

struct ValidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var raw: String
    var method: String
    var path: String
    var query: String?
    var minor: Int = 1
    var keepAlive: Bool = true
    var framing: BodyFraming = .none
    var expectContinue = false
    var isHEAD = false
    var headerCount: Int? = nil
    var authority: String? = nil
    var testDescription: String { name }
}

let validCases: [ValidCase] = [
    ValidCase(name: "simple GET", raw: "GET / HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", path: "/", query: nil, headerCount: 1),
    ValidCase(name: "GET with query", raw: "GET /p/a?x=1&y=2 HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", path: "/p/a", query: "x=1&y=2"),
    ValidCase(name: "empty query", raw: "GET /p? HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", path: "/p", query: ""),
    ValidCase(name: "query with second ?", raw: "GET /p?a?b HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", path: "/p", query: "a?b"),
    ValidCase(name: "percent and params", raw: "GET /a%20b/;p=1?x=%zz HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", path: "/a%20b/;p=1", query: "x=%zz"),
    ValidCase(name: "POST content-length", raw: "POST /submit HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", method: "POST", path: "/submit", query: nil, framing: .contentLength(5)),
    ValidCase(name: "content-length zero", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", method: "POST", path: "/", query: nil, framing: .contentLength(0)),
    ValidCase(name: "content-length with OWS", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \t7 \r\n\r\n", method: "POST", path: "/", query: nil, framing: .contentLength(7)),
    ValidCase(name: "content-length leading zeros", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 007\r\n\r\n", method: "POST", path: "/", query: nil, framing: .contentLength(7)),
    ValidCase(name: "chunked", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n", method: "POST", path: "/", query: nil, framing: .chunked),
    ValidCase(name: "chunked upper case", raw: "POST / HTTP/1.1\r\nHost: a\r\ntransfer-encoding: CHUNKED \r\n\r\n", method: "POST", path: "/", query: nil, framing: .chunked),
    ValidCase(name: "absolute-form", raw: "GET http://example.com/p?q=1 HTTP/1.1\r\nHost: example.com\r\n\r\n", method: "GET", path: "/p", query: "q=1", authority: "example.com"),
    ValidCase(name: "absolute-form with port and userinfo", raw: "GET https://u@example.com:8080/x/y HTTP/1.1\r\nHost: example.com\r\n\r\n", method: "GET", path: "/x/y", query: nil, authority: "example.com:8080"),
    ValidCase(name: "absolute-form userinfo with colon and @", raw: "GET http://u:p@w@h.example/x HTTP/1.1\r\nHost: other\r\n\r\n", method: "GET", path: "/x", query: nil, authority: "h.example"),
    ValidCase(name: "absolute-form IPv6", raw: "GET http://[::1]:8080/x HTTP/1.1\r\nHost: other\r\n\r\n", method: "GET", path: "/x", query: nil, authority: "[::1]:8080"),
    ValidCase(name: "absolute-form without path", raw: "GET http://example.com HTTP/1.1\r\nHost: example.com\r\n\r\n", method: "GET", path: "", query: nil, authority: "example.com"),
    ValidCase(name: "absolute-form query without path", raw: "GET http://example.com?x HTTP/1.1\r\nHost: example.com\r\n\r\n", method: "GET", path: "", query: "x", authority: "example.com"),
    ValidCase(name: "absolute-form fragment", raw: "GET http://a.example:81/p?q#f HTTP/1.1\r\nHost: other\r\n\r\n", method: "GET", path: "/p", query: "q", authority: "a.example:81"),
    ValidCase(name: "absolute-form fragment after authority", raw: "GET http://a.example#f/x?y HTTP/1.1\r\nHost: other\r\n\r\n", method: "GET", path: "", query: nil, authority: "a.example"),
    ValidCase(name: "absolute-form on HTTP/1.0 without Host", raw: "GET http://a.example/ HTTP/1.0\r\n\r\n", method: "GET", path: "/", query: nil, minor: 0, keepAlive: false, authority: "a.example"),
    ValidCase(name: "fragment after query", raw: "GET /p/a?x=1#frag?y HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", path: "/p/a", query: "x=1"),
    ValidCase(name: "fragment without query", raw: "GET /p#frag HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", path: "/p", query: nil),
    ValidCase(name: "question mark inside fragment", raw: "GET /p#f?x=1 HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", path: "/p", query: nil),
    ValidCase(name: "empty query and empty fragment", raw: "GET /p?# HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", path: "/p", query: ""),
    ValidCase(name: "fragment right after slash", raw: "GET /#/x HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", path: "/", query: nil),
    ValidCase(name: "informational single-value fields may repeat", raw: "GET / HTTP/1.1\r\nHost: a\r\nUser-Agent: x\r\nUser-Agent: y\r\nReferer: r\r\nReferer: s\r\nDate: d\r\nDate: e\r\nFrom: f\r\nFrom: g\r\n\r\n", method: "GET", path: "/", query: nil, headerCount: 9),
    ValidCase(name: "list fields and Cookie may repeat", raw: "GET / HTTP/1.1\r\nHost: a\r\nAccept: a\r\nAccept: b\r\nCookie: c=1\r\nCookie: d=2\r\nCache-Control: x\r\nCache-Control: y\r\n\r\n", method: "GET", path: "/", query: nil, headerCount: 7),
    ValidCase(name: "one of each single-value field", raw: "GET / HTTP/1.1\r\nHost: a\r\nContent-Type: t\r\nAuthorization: a\r\nProxy-Authorization: p\r\nRange: bytes=0-1\r\nIf-Range: x\r\nIf-Modified-Since: d\r\nIf-Unmodified-Since: d\r\nContent-Range: c\r\nContent-Length: 0\r\n\r\n", method: "GET", path: "/", query: nil, framing: .contentLength(0), headerCount: 10),
    ValidCase(name: "OPTIONS *", raw: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", method: "OPTIONS", path: "*", query: nil),
    ValidCase(name: "CONNECT authority-form", raw: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n", method: "CONNECT", path: "", query: nil),
    ValidCase(name: "CONNECT IPv6", raw: "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n", method: "CONNECT", path: "", query: nil),
    ValidCase(name: "HTTP/1.0 no Host", raw: "GET / HTTP/1.0\r\n\r\n", method: "GET", path: "/", query: nil, minor: 0, keepAlive: false, headerCount: 0),
    ValidCase(name: "HTTP/1.0 keep-alive", raw: "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", method: "GET", path: "/", query: nil, minor: 0, keepAlive: true),
    ValidCase(name: "HTTP/1.0 Keep-Alive in list", raw: "GET / HTTP/1.0\r\nConnection: foo , Keep-Alive\r\n\r\n", method: "GET", path: "/", query: nil, minor: 0, keepAlive: true),
    ValidCase(name: "HTTP/1.0 keep-alive and close", raw: "GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", method: "GET", path: "/", query: nil, minor: 0, keepAlive: false),
    ValidCase(name: "HTTP/1.0 content-length", raw: "POST / HTTP/1.0\r\nContent-Length: 3\r\n\r\n", method: "POST", path: "/", query: nil, minor: 0, keepAlive: false, framing: .contentLength(3)),
    ValidCase(name: "HTTP/1.1 close", raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", method: "GET", path: "/", query: nil, keepAlive: false),
    ValidCase(name: "HTTP/1.1 CLOSE in list", raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade,CLOSE\r\n\r\n", method: "GET", path: "/", query: nil, keepAlive: false),
    ValidCase(name: "HTTP/1.1 closed is not close", raw: "GET / HTTP/1.1\r\nHost: a\r\nConnection: closed\r\n\r\n", method: "GET", path: "/", query: nil, keepAlive: true),
    ValidCase(name: "expect 100-continue", raw: "PUT /u HTTP/1.1\r\nHost: a\r\nExpect: 100-Continue\r\nContent-Length: 10\r\n\r\n", method: "PUT", path: "/u", query: nil, framing: .contentLength(10), expectContinue: true),
    ValidCase(name: "expect on 1.0 ignored", raw: "PUT /u HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 1\r\n\r\n", method: "PUT", path: "/u", query: nil, minor: 0, keepAlive: false, framing: .contentLength(1)),
    ValidCase(name: "HEAD", raw: "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", method: "HEAD", path: "/x", query: nil, isHEAD: true),
    ValidCase(name: "lower-case method token", raw: "head /x HTTP/1.1\r\nHost: a\r\n\r\n", method: "head", path: "/x", query: nil),
    ValidCase(name: "extension methods", raw: "M-SEARCH * HTTP/1.1\r\nHost: a\r\n\r\n".replacingOccurrences(of: "*", with: "/"), method: "M-SEARCH", path: "/", query: nil),
    ValidCase(name: "leading CRLFs", raw: "\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", method: "GET", path: "/", query: nil),
    ValidCase(name: "empty header values", raw: "GET / HTTP/1.1\r\nHost:\r\nX-Empty:\r\nX-Blank: \t \r\n\r\n", method: "GET", path: "/", query: nil, headerCount: 3),
    ValidCase(name: "many headers", raw: "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nUser-Agent: curl/8.0 (x86_64)\r\nAccept: */*\r\n\r\n", method: "GET", path: "/", query: nil, headerCount: 6),
]

extension String {
    func replacingOccurrences(of a: String, with b: String) -> String {
        split(separator: Character(a), omittingEmptySubsequences: false).joined(separator: b)
    }
}

@Test(arguments: validCases)
func validRequest(_ c: ValidCase) {
    let b = bytes(c.raw)
    let (r, h) = parse(b)
    #expect(r == .complete)
    guard r == .complete else { return }
    #expect(text(b, h.method) == c.method)
    #expect(text(b, h.path) == c.path)
    #expect(h.query.map { text(b, $0) } == c.query)
    #expect(h.versionMinor == c.minor)
    #expect(h.keepAlive == c.keepAlive)
    #expect(h.framing == c.framing)
    #expect(h.expectContinue == c.expectContinue)
    #expect(h.isHEAD == c.isHEAD)
    #expect(h.authority.map { text(b, $0) } == c.authority)
    #expect(h.headLength == b.count)
    if let n = c.headerCount { #expect(h.headers.count == n) }
    // the target runs from after the method to before the version
    #expect(h.target.lowerBound == h.method.upperBound + 1)
    #expect(b[h.target.upperBound] == 0x20)
    // the same with a body or a following request appended
    let (r2, h2) = parse(b + bytes("XYZ"))
    #expect(r2 == .complete && sameHead(h, h2))
}

@Test(arguments: validCases)
func validRequestByteByByte(_ c: ValidCase) {
    let b = bytes(c.raw)
    let (whole, wholeHead) = parse(b)
    let d = firstDecision(b)
    #expect(d.result == whole)
    #expect(d.prefix == b.count)
    #expect(sameHead(d.head, wholeHead))
}

@Test func headerRangesAndTrimming() {
    let b = bytes("GET / HTTP/1.1\r\nHost: example.org\r\nX-A: \t v a l \t \r\nX-Empty:\r\nX-T:\tx\r\n\r\n")
    let (r, h) = parse(b)
    #expect(r == .complete)
    #expect(h.headers.count == 4)
    let pairs = h.headers.map { (text(b, $0.name), text(b, $0.value)) }
    #expect(pairs.map(\.0) == ["Host", "X-A", "X-Empty", "X-T"])
    #expect(pairs.map(\.1) == ["example.org", "v a l", "", "x"])
    b.withUnsafeBytes { buf in
        #expect(equalsIgnoringCase(buf, h.headers[1].name, "x-a"))
        #expect(!equalsIgnoringCase(buf, h.headers[1].name, "x-b"))
    }
}

@Test func latin1HeaderValuesKeptRaw() {
    var b = bytes("GET /caf\u{00}")
    b.removeLast()
    b += [0xE9]  // raw latin-1 byte in the path
    b += bytes(" HTTP/1.1\r\nHost: a\r\nX-Name: ")
    let value: [UInt8] = [0x4A, 0xFC, 0x72, 0x67, 0x65, 0x6E, 0x20, 0x80, 0xFF]
    b += value + bytes("\r\n\r\n")
    let (r, h) = parse(b)
    #expect(r == .complete)
    #expect(Array(b[h.headers[1].value]) == value)
    #expect(Array(b[h.path]) == bytes("/caf") + [0xE9])
    #expect(firstDecision(b).prefix == b.count)
}

@Test func resetKeepsHeaderCapacity() {
    var head = HTTPRequestHead()
    let parser = HTTPRequestParser(limits: HTTPParserLimits())
    let b = bytes("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\n\r\n")
    let r = b.withUnsafeBytes { parser.parseHead($0, into: &head) }
    #expect(r == .complete)
    let capacity = head.headers.capacity
    head.reset()
    #expect(head.headers.isEmpty)
    #expect(head.headers.capacity == capacity)
    #expect(head.headLength == 0 && head.framing == .none)
}

struct InvalidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var raw: String
    var status: Int
    var testDescription: String { "\(status) \(name)" }
}

let invalidCases: [InvalidCase] = [
    // request line
    InvalidCase(name: "space in target", raw: "GET /a b HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "lower-case version", raw: "GET / http/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "HTTP/1.10", raw: "GET / HTTP/1.10\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "HTTP/1", raw: "GET / HTTP/1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "HTTP/1.x", raw: "GET / HTTP/1.x\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "HTTP/2.0", raw: "GET / HTTP/2.0\r\nHost: a\r\n\r\n", status: 505),
    InvalidCase(name: "HTTP/0.9", raw: "GET / HTTP/0.9\r\nHost: a\r\n\r\n", status: 505),
    InvalidCase(name: "HTTP/1.2", raw: "GET / HTTP/1.2\r\nHost: a\r\n\r\n", status: 505),
    InvalidCase(name: "HTTP/3.1", raw: "GET / HTTP/3.1\r\n\r\n", status: 505),
    InvalidCase(name: "no version", raw: "GET /\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "trailing space after version", raw: "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "double space", raw: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "leading space", raw: " GET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "tab separator", raw: "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "method not a token", raw: "G(T / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "empty line only", raw: "\r\n\r\n\r\n\r\n\r\n\r\n", status: 400),
    InvalidCase(name: "control char in target", raw: "GET /a\u{01}b HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "DEL in target", raw: "GET /a\u{7F} HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "asterisk with GET", raw: "GET * HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "asterisk with suffix", raw: "OPTIONS *x HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "CONNECT origin-form", raw: "CONNECT / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "CONNECT without port", raw: "CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "CONNECT absolute-form", raw: "CONNECT http://a:80/ HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "authority-form with GET", raw: "GET example.com:80 HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "relative target", raw: "GET index.html HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "absolute-form empty authority", raw: "GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "absolute-form bad scheme", raw: "GET 1http://a/ HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "absolute-form one slash", raw: "GET http:/a/ HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "absolute-form userinfo only", raw: "GET http://u@/p HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "absolute-form port only", raw: "GET http://:80/p HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "absolute-form userinfo and port only", raw: "GET http://u@:80 HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "absolute-form fragment only", raw: "GET http://#f HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    // line endings
    InvalidCase(name: "bare LF after request line", raw: "GET / HTTP/1.1\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "bare LF after header", raw: "GET / HTTP/1.1\r\nHost: a\n\r\n", status: 400),
    InvalidCase(name: "bare LF end of head", raw: "GET / HTTP/1.1\r\nHost: a\r\n\n", status: 400),
    InvalidCase(name: "all bare LF", raw: "GET / HTTP/1.1\nHost: a\n\n", status: 400),
    InvalidCase(name: "bare CR in request line", raw: "GET / HTTP/1.1\rHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "bare CR in value", raw: "GET / HTTP/1.1\r\nHost: a\rb\r\n\r\n", status: 400),
    InvalidCase(name: "bare CR end of head", raw: "GET / HTTP/1.1\r\nHost: a\r\n\rX", status: 400),
    InvalidCase(name: "bare LF leading line", raw: "\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    InvalidCase(name: "too many leading CRLFs", raw: "\r\n\r\n\r\n\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n", status: 400),
    // header fields
    InvalidCase(name: "space before colon", raw: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", status: 400),
    InvalidCase(name: "tab before colon", raw: "GET / HTTP/1.1\r\nHost\t: a\r\n\r\n", status: 400),
    InvalidCase(name: "obs-fold", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n two\r\n\r\n", status: 400),
    InvalidCase(name: "obs-fold with tab", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-A: one\r\n\ttwo\r\n\r\n", status: 400),
    InvalidCase(name: "first header starts with space", raw: "GET / HTTP/1.1\r\n Host: a\r\n\r\n", status: 400),
    InvalidCase(name: "NUL in value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u{00}b\r\n\r\n", status: 400),
    InvalidCase(name: "control char in value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u{0B}b\r\n\r\n", status: 400),
    InvalidCase(name: "DEL in value", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\u{7F}\r\n\r\n", status: 400),
    InvalidCase(name: "no colon", raw: "GET / HTTP/1.1\r\nHost: a\r\nX-A\r\n\r\n", status: 400),
    InvalidCase(name: "empty name", raw: "GET / HTTP/1.1\r\nHost: a\r\n: v\r\n\r\n", status: 400),
    InvalidCase(name: "bad char in name", raw: "GET / HTTP/1.1\r\nHost: a\r\nX\"A: v\r\n\r\n", status: 400),
    InvalidCase(name: "slash in name", raw: "GET / HTTP/1.1\r\nHost: a\r\nX/A: v\r\n\r\n", status: 400),
    InvalidCase(name: "NUL in name", raw: "GET / HTTP/1.1\r\nHost: a\r\nX\u{00}A: v\r\n\r\n", status: 400),
    // Host
    InvalidCase(name: "HTTP/1.1 without Host", raw: "GET / HTTP/1.1\r\nX-A: b\r\n\r\n", status: 400),
    InvalidCase(name: "two Host", raw: "GET / HTTP/1.1\r\nHost: a\r\nhost: b\r\n\r\n", status: 400),
    InvalidCase(name: "two identical Host", raw: "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", status: 400),
    // single-value fields
    InvalidCase(name: "two Content-Type", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\nContent-Type: application/json\r\n\r\n", status: 400),
    InvalidCase(name: "two identical Content-Type", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Type: text/plain\r\ncontent-TYPE: text/plain\r\n\r\n", status: 400),
    InvalidCase(name: "two empty Content-Type", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Type:\r\nContent-Type:\r\n\r\n", status: 400),
    InvalidCase(name: "two Authorization", raw: "GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Basic YTpi\r\nAuthorization: Basic Yzpk\r\n\r\n", status: 400),
    InvalidCase(name: "two Proxy-Authorization", raw: "GET / HTTP/1.1\r\nHost: a\r\nProxy-Authorization: a\r\nPROXY-AUTHORIZATION: b\r\n\r\n", status: 400),
    InvalidCase(name: "two Range", raw: "GET / HTTP/1.1\r\nHost: a\r\nRange: bytes=0-1\r\nRange: bytes=5-6\r\n\r\n", status: 400),
    InvalidCase(name: "two If-Range", raw: "GET / HTTP/1.1\r\nHost: a\r\nIf-Range: \"a\"\r\nIf-Range: \"b\"\r\n\r\n", status: 400),
    InvalidCase(name: "two If-Modified-Since", raw: "GET / HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: x\r\nIf-Modified-Since: y\r\n\r\n", status: 400),
    InvalidCase(name: "two If-Unmodified-Since", raw: "GET / HTTP/1.1\r\nHost: a\r\nIf-Unmodified-Since: x\r\nIf-Unmodified-Since: y\r\n\r\n", status: 400),
    InvalidCase(name: "two Content-Range", raw: "PUT / HTTP/1.1\r\nHost: a\r\nContent-Range: bytes 0-1/2\r\nContent-Range: bytes 0-1/2\r\n\r\n", status: 400),
    InvalidCase(name: "repeat after other fields", raw: "POST / HTTP/1.1\r\nContent-Type: a\r\nHost: a\r\nX: y\r\nContent-Length: 0\r\nContent-Type: b\r\n\r\n", status: 400),
    // Content-Length
    InvalidCase(name: "CL plus sign", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", status: 400),
    InvalidCase(name: "CL minus sign", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -5\r\n\r\n", status: 400),
    InvalidCase(name: "CL differing list", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", status: 400),
    InvalidCase(name: "CL differing fields", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", status: 400),
    InvalidCase(name: "CL identical list", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\n", status: 400),
    InvalidCase(name: "CL identical list without spaces", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7,7,7\r\n\r\n", status: 400),
    InvalidCase(name: "CL identical fields", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 7\r\ncontent-length: 7\r\n\r\n", status: 400),
    InvalidCase(name: "CL leading comma", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: ,5\r\n\r\n", status: 400),
    InvalidCase(name: "CL empty", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", status: 400),
    InvalidCase(name: "CL empty list element", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", status: 400),
    InvalidCase(name: "CL space inside", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1 0\r\n\r\n", status: 400),
    InvalidCase(name: "CL hex", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x5\r\n\r\n", status: 400),
    InvalidCase(name: "CL letters", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: five\r\n\r\n", status: 400),
    InvalidCase(name: "CL decimal point", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5.0\r\n\r\n", status: 400),
    InvalidCase(name: "CL overflow", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999999\r\n\r\n", status: 400),
    InvalidCase(name: "CL too large", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1073741825\r\n\r\n", status: 413),
    // Transfer-Encoding and smuggling
    InvalidCase(name: "CL then TE", raw: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400),
    InvalidCase(name: "TE then CL", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", status: 400),
    InvalidCase(name: "TE on HTTP/1.0", raw: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400),
    InvalidCase(name: "TE name with leading space", raw: "POST / HTTP/1.1\r\nHost: a\r\n Transfer-Encoding: chunked\r\n\r\n", status: 400),
    InvalidCase(name: "TE space before colon", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n", status: 400),
    InvalidCase(name: "TE chunked, identity", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n", status: 400),
    InvalidCase(name: "TE identity", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", status: 501),
    InvalidCase(name: "TE gzip", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", status: 501),
    InvalidCase(name: "TE gzip, chunked", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", status: 501),
    InvalidCase(name: "TE chunked, chunked", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", status: 400),
    InvalidCase(name: "TE twice", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", status: 400),
    InvalidCase(name: "TE chunked then gzip field", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n", status: 400),
    InvalidCase(name: "TE xchunked", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n", status: 501),
    InvalidCase(name: "TE chunkedx", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunkedx\r\n\r\n", status: 501),
    InvalidCase(name: "TE empty", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n\r\n", status: 400),
    InvalidCase(name: "TE trailing comma", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked,\r\n\r\n", status: 400),
    InvalidCase(name: "TE quoted", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", status: 400),
    InvalidCase(name: "TE deflate", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: deflate\r\n\r\n", status: 501),
    InvalidCase(name: "TE compress", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: compress\r\n\r\n", status: 501),
    InvalidCase(name: "TE unknown token", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: foo\r\n\r\n", status: 501),
    InvalidCase(name: "TE GZIP upper case", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: GZIP\r\n\r\n", status: 501),
    InvalidCase(name: "TE identity, chunked", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n", status: 501),
    InvalidCase(name: "TE gzip then chunked field", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", status: 501),
    InvalidCase(name: "TE gzip then malformed field", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", status: 400),
    InvalidCase(name: "TE gzip then Content-Length", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\nContent-Length: 3\r\n\r\n", status: 400),
    InvalidCase(name: "TE gzip on HTTP/1.0", raw: "POST / HTTP/1.0\r\nTransfer-Encoding: gzip\r\n\r\n", status: 400),
    InvalidCase(name: "TE gzip without Host", raw: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", status: 400),
    InvalidCase(name: "TE chunked, unknown", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, foo\r\n\r\n", status: 400),
    InvalidCase(name: "TE leading empty element", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , chunked\r\n\r\n", status: 400),
    InvalidCase(name: "TE empty element in middle", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, , chunked\r\n\r\n", status: 400),
    InvalidCase(name: "TE chunked with parameter", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;a=b\r\n\r\n", status: 400),
    InvalidCase(name: "TE gzip with parameter", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip;q=1, chunked\r\n\r\n", status: 400),
    InvalidCase(name: "TE space inside token", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chun ked\r\n\r\n", status: 400),
    InvalidCase(name: "TE with vertical tab", raw: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \u{0B}chunked\r\n\r\n", status: 400),
]

@Test(arguments: invalidCases)
func invalidRequest(_ c: InvalidCase) {
    let b = bytes(c.raw)
    let (r, _) = parse(b)
    #expect(statusOf(r) == c.status)
    if case .failure(let e) = r { #expect(!e.reasonPhrase.isEmpty) }
    // byte-by-byte feeding reaches the same verdict, never later than the whole buffer
    let d = firstDecision(b)
    #expect(d.result == r)
}

@Test func errorStatusesAndReasons() {
    #expect(HTTPRequestError.badRequest("x").status == 400)
    #expect(HTTPRequestError.badRequest("x").reasonPhrase == "Bad Request")
    #expect(HTTPRequestError.uriTooLong.status == 414)
    #expect(HTTPRequestError.uriTooLong.reasonPhrase == "URI Too Long")
    #expect(HTTPRequestError.headerFieldsTooLarge.status == 431)
    #expect(HTTPRequestError.headerFieldsTooLarge.reasonPhrase == "Request Header Fields Too Large")
    #expect(HTTPRequestError.payloadTooLarge.status == 413)
    #expect(HTTPRequestError.payloadTooLarge.reasonPhrase == "Content Too Large")
    #expect(HTTPRequestError.versionNotSupported.status == 505)
    #expect(HTTPRequestError.versionNotSupported.reasonPhrase == "HTTP Version Not Supported")
    #expect(HTTPRequestError.notImplemented.status == 501)
    #expect(HTTPRequestError.notImplemented.reasonPhrase == "Not Implemented")
}

// MARK: limits

@Test func requestLineLimit() {
    var limits = HTTPParserLimits()
    limits.maxRequestLine = 30
    // "GET /" + path + " HTTP/1.1" is exactly 30 bytes: accepted
    let okLine = "GET /" + String(repeating: "a", count: 16) + " HTTP/1.1"
    #expect(okLine.utf8.count == 30)
    #expect(parse(okLine + "\r\nHost: a\r\n\r\n", limits: limits).0 == .complete)
    let longLine = "GET /" + String(repeating: "a", count: 17) + " HTTP/1.1"
    #expect(parse(longLine + "\r\nHost: a\r\n\r\n", limits: limits).0 == .failure(.uriTooLong))
    // incomplete: 31 bytes without CRLF is already too long, 30 is not yet
    #expect(parse(Array(longLine.utf8.prefix(31)), limits: limits).0 == .failure(.uriTooLong))
    #expect(parse(Array(okLine.utf8.prefix(30)), limits: limits).0 == .incomplete)
    #expect(parse(okLine + "\r", limits: limits).0 == .incomplete)
    // default limit, incomplete
    #expect(parse("GET /" + String(repeating: "x", count: 9000)).0 == .failure(.uriTooLong))
    #expect(parse("GET /" + String(repeating: "x", count: 8000)).0 == .incomplete)
}

@Test func headerBytesLimit() {
    var limits = HTTPParserLimits()
    limits.maxHeaderBytes = 64
    let base = "GET / HTTP/1.1\r\nHost: a\r\nX: "  // 28 bytes
    let fits = base + String(repeating: "v", count: 32) + "\r\n\r\n"  // exactly 64
    #expect(fits.utf8.count == 64)
    #expect(parse(fits, limits: limits).0 == .complete)
    let over = base + String(repeating: "v", count: 33) + "\r\n\r\n"
    #expect(parse(over, limits: limits).0 == .failure(.headerFieldsTooLarge))
    // incomplete head already at the limit
    #expect(parse(Array(over.utf8.prefix(64)), limits: limits).0 == .failure(.headerFieldsTooLarge))
    #expect(parse(Array(over.utf8.prefix(63)), limits: limits).0 == .incomplete)
    // default limit, incomplete
    let big = "GET / HTTP/1.1\r\nHost: a\r\nX: " + String(repeating: "v", count: 70000)
    #expect(parse(big).0 == .failure(.headerFieldsTooLarge))
}

@Test func fieldSizeLimit() {
    var limits = HTTPParserLimits()
    limits.maxFieldBytes = 20  // a line of 18 bytes and its CRLF
    let head = "GET / HTTP/1.1\r\nHost: a\r\n"
    func line(_ n: Int) -> String { "X: " + String(repeating: "v", count: n - 3) }
    #expect(parse(head + line(18) + "\r\n\r\n", limits: limits).0 == .complete)
    #expect(parse(head + line(19) + "\r\n\r\n", limits: limits).0 == .failure(.headerFieldsTooLarge))
    // incomplete: 18 bytes without their CR may still end in time, 19 cannot
    #expect(parse(head + line(18), limits: limits).0 == .incomplete)
    #expect(parse(head + line(18) + "\r", limits: limits).0 == .incomplete)
    #expect(parse(head + line(19), limits: limits).0 == .failure(.headerFieldsTooLarge))
    // the name alone, and the whitespace around the value, count too
    #expect(parse(head + String(repeating: "n", count: 19), limits: limits).0 == .failure(.headerFieldsTooLarge))
    #expect(parse(head + "X:" + String(repeating: " ", count: 17), limits: limits).0 == .failure(.headerFieldsTooLarge))
    #expect(parse(head + "X: v" + String(repeating: "\t", count: 15) + "\r\n\r\n", limits: limits).0 == .failure(.headerFieldsTooLarge))
    // at the bound only the CR may come: other errors there keep their status
    #expect(parse(head + String(repeating: "n", count: 18) + "\r\n\r\n", limits: limits).0 == .failure(.badRequest("header line without colon")))
    #expect(parse(head + line(18) + "\rx", limits: limits).0 == .failure(.badRequest("bare CR")))
    // every line is measured on its own; the request line is not a header line
    let many = "GET /" + String(repeating: "p", count: 40) + " HTTP/1.1\r\nHost: a\r\n" + line(18) + "\r\n" + line(18) + "\r\n\r\n"
    #expect(parse(many, limits: limits).0 == .complete)
    // each decision is taken at the byte that causes it
    for raw in [head + line(19) + "\r\n\r\n", head + line(18) + "\r\n\r\n", head + "X:" + String(repeating: " ", count: 30)] {
        let b = bytes(raw)
        #expect(firstDecision(b, limits: limits).result == parse(b, limits: limits).0)
    }
    // 1 and 2 leave no room for any header line; a request without one still passes
    limits.maxFieldBytes = 2
    #expect(parse(head + "\r\n", limits: limits).0 == .failure(.headerFieldsTooLarge))
    #expect(parse("GET / HTTP/1.0\r\n\r\n", limits: limits).0 == .complete)
    // 0: only the head size limits a line
    limits.maxFieldBytes = 0
    limits.maxHeaderBytes = 100_000
    #expect(parse(head + line(70_000) + "\r\n\r\n", limits: limits).0 == .complete)
    // default 8190, CRLF included: the boundary where Gunicorn has it
    #expect(parse(head + line(8188) + "\r\n\r\n").0 == .complete)
    #expect(parse(head + line(8189) + "\r\n\r\n").0 == .failure(.headerFieldsTooLarge))
    #expect(parse(head + line(8189)).0 == .failure(.headerFieldsTooLarge))
}

@Test func transferCodingPrecedence() {
    // 501 is decided at the end of the head, after every Transfer-Encoding line was
    // seen well-formed; each prefix is incomplete until then.
    let b = bytes("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nX: y\r\n\r\n")
    let d = firstDecision(b)
    #expect(d.result == .failure(.notImplemented))
    #expect(d.prefix == b.count)
    // a malformed list is refused at the line that makes it so
    let bad = bytes("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked, gzip\r\nX: y\r\n\r\n")
    let dBad = firstDecision(bad)
    #expect(dBad.result == .failure(.badRequest("malformed Transfer-Encoding")))
    #expect(dBad.prefix == bad.count - 8)  // the LF ending the second Transfer-Encoding line
}

/// `nameEquals` (8 bytes at a time) agrees with the byte-wise comparison for every
/// name the parser compares, in any case, and for every one-byte change to a tchar.
@Test func nameEqualsMatchesBytewise() {
    let names: [StaticString] = ["host", "range", "expect", "if-range", "connection", "content-type", "authorization",
                                 "content-range", "content-length", "transfer-encoding", "if-modified-since",
                                 "proxy-authorization", "if-unmodified-since", "te", "a"]
    let tchars = (0..<128).map(UInt8.init).filter(isTchar)
    for name in names {
        let lower = Array(UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        var variants = [lower, lower.map { $0 >= 0x61 && $0 <= 0x7A ? $0 - 0x20 : $0 }]
        variants.append(lower.enumerated().map { $0.offset % 2 == 0 && $0.element >= 0x61 ? $0.element - 0x20 : $0.element })
        for i in lower.indices {
            for t in tchars {
                var v = lower
                v[i] = t
                variants.append(v)
            }
        }
        variants.append(lower + [0x61])
        variants.append(Array(lower.dropLast()))
        for v in variants {
            let padded = [0x58] + v + [0x3A]  // not at offset 0, and a byte after it
            padded.withUnsafeBytes { buf in
                let r = 1..<(1 + v.count)
                #expect(nameEquals(buf, r, name) == equalsIgnoringCase(buf, r, name), "\(name) \(v)")
            }
        }
    }
}

@Test func fragmentStaysInTarget() {
    let b = bytes("GET /a%20b?x=1#sec?y=2 HTTP/1.1\r\nHost: a\r\n\r\n")
    let (r, h) = parse(b)
    #expect(r == .complete)
    #expect(text(b, h.target) == "/a%20b?x=1#sec?y=2")
    #expect(text(b, h.path) == "/a%20b")
    #expect(h.query.map { text(b, $0) } == "x=1")
    #expect(h.authority == nil)
}

@Test func headerCountLimit() {
    func request(_ n: Int) -> String {
        var s = "GET / HTTP/1.1\r\nHost: a\r\n"
        for i in 1..<n { s += "X-\(i): v\r\n" }
        return s + "\r\n"
    }
    #expect(parse(request(100)).0 == .complete)
    #expect(parse(request(100)).1.headers.count == 100)
    #expect(parse(request(101)).0 == .failure(.headerFieldsTooLarge))
    var limits = HTTPParserLimits()
    limits.maxHeaderCount = 3
    #expect(parse(request(3), limits: limits).0 == .complete)
    #expect(parse(request(4), limits: limits).0 == .failure(.headerFieldsTooLarge))
}

@Test func bodyLimit() {
    var limits = HTTPParserLimits()
    limits.maxBodyBytes = 10
    #expect(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10\r\n\r\n", limits: limits).1.framing == .contentLength(10))
    #expect(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n", limits: limits).0 == .failure(.payloadTooLarge))
    limits.maxBodyBytes = 0  // unlimited
    #expect(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n", limits: limits).1.framing
        == .contentLength(Int.max))
}

@Test func incompleteInputs() {
    for s in ["", "G", "GET", "GET ", "GET /", "GET / HTTP/1.", "GET / HTTP/1.1", "GET / HTTP/1.1\r",
              "GET / HTTP/1.1\r\n", "GET / HTTP/1.1\r\nHost", "GET / HTTP/1.1\r\nHost: a", "GET / HTTP/1.1\r\nHost: a\r",
              "GET / HTTP/1.1\r\nHost: a\r\n", "GET / HTTP/1.1\r\nHost: a\r\n\r", "\r", "\r\n", "\r\n\r\n"] {
        #expect(parse(s).0 == .incomplete, "\(s.debugDescription)")
    }
}

// MARK: pipelining

@Test func pipelinedRequests() {
    let first = "POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhello"
    let second = "POST /b?x HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;e=1\r\nabc\r\n0\r\nT: v\r\n\r\n"
    let third = "GET /c HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n"
    let b = bytes(first + second + third)
    let parser = HTTPRequestParser(limits: HTTPParserLimits())
    var head = HTTPRequestHead()
    var offset = 0
    var paths: [String] = []
    var bodies: [[UInt8]] = []
    var keepAlive: [Bool] = []
    b.withUnsafeBytes { all in
        while offset < all.count {
            let buf = UnsafeRawBufferPointer(rebasing: all[offset...])
            guard parser.parseHead(buf, into: &head) == .complete else { Issue.record("not complete"); return }
            paths.append(String(decoding: buf[head.path], as: UTF8.self))
            keepAlive.append(head.keepAlive)
            var used = head.headLength
            switch head.framing {
            case .none:
                bodies.append([])
            case .contentLength(let n):
                bodies.append(Array(buf[used..<(used + n)]))
                used += n
            case .chunked:
                var d = ChunkedDecoder(maxBodyBytes: 0)
                var body: [UInt8] = []
                let r = d.decode(UnsafeRawBufferPointer(rebasing: buf[used...])) { body.append(contentsOf: $0) }
                guard case .done(let c) = r else { Issue.record("chunked not done"); return }
                bodies.append(body)
                used += c
            }
            offset += used
        }
    }
    #expect(paths == ["/a", "/b", "/c"])
    #expect(bodies == [bytes("hello"), bytes("abc"), []])
    #expect(keepAlive == [true, true, false])
    #expect(offset == b.count)
    #expect(processStream(b) == .requests(3))
}
