import Testing
@testable import ApusProtocols

struct FramingCase: Sendable, CustomTestStringConvertible {
    var minor: Int, keepAlive: Bool, isHEAD: Bool, status: Int, cl: Int?, appClose: Bool
    var framing: ResponseFraming, resultKeepAlive: Bool
    var testDescription: String { "1.\(minor) ka=\(keepAlive) head=\(isHEAD) \(status) cl=\(String(describing: cl)) close=\(appClose)" }
}

let framingCases: [FramingCase] = [
    FramingCase(minor: 1, keepAlive: true, isHEAD: false, status: 200, cl: 5, appClose: false, framing: .contentLength(5), resultKeepAlive: true),
    FramingCase(minor: 1, keepAlive: true, isHEAD: false, status: 200, cl: nil, appClose: false, framing: .chunked, resultKeepAlive: true),
    FramingCase(minor: 1, keepAlive: false, isHEAD: false, status: 200, cl: nil, appClose: false, framing: .chunked, resultKeepAlive: false),
    FramingCase(minor: 1, keepAlive: true, isHEAD: false, status: 200, cl: nil, appClose: true, framing: .chunked, resultKeepAlive: false),
    FramingCase(minor: 1, keepAlive: true, isHEAD: false, status: 200, cl: 0, appClose: true, framing: .contentLength(0), resultKeepAlive: false),
    FramingCase(minor: 0, keepAlive: true, isHEAD: false, status: 200, cl: nil, appClose: false, framing: .closeDelimited, resultKeepAlive: false),
    FramingCase(minor: 0, keepAlive: false, isHEAD: false, status: 200, cl: nil, appClose: false, framing: .closeDelimited, resultKeepAlive: false),
    FramingCase(minor: 0, keepAlive: true, isHEAD: false, status: 200, cl: 3, appClose: false, framing: .contentLength(3), resultKeepAlive: true),
    FramingCase(minor: 0, keepAlive: false, isHEAD: false, status: 200, cl: 3, appClose: false, framing: .contentLength(3), resultKeepAlive: false),
    FramingCase(minor: 1, keepAlive: true, isHEAD: true, status: 200, cl: 1234, appClose: false, framing: .noBody, resultKeepAlive: true),
    FramingCase(minor: 1, keepAlive: true, isHEAD: true, status: 200, cl: nil, appClose: false, framing: .noBody, resultKeepAlive: true),
    FramingCase(minor: 0, keepAlive: true, isHEAD: true, status: 200, cl: nil, appClose: false, framing: .noBody, resultKeepAlive: true),
    FramingCase(minor: 1, keepAlive: true, isHEAD: false, status: 204, cl: nil, appClose: false, framing: .noBody, resultKeepAlive: true),
    FramingCase(minor: 1, keepAlive: true, isHEAD: false, status: 304, cl: 10, appClose: false, framing: .noBody, resultKeepAlive: true),
    FramingCase(minor: 1, keepAlive: true, isHEAD: false, status: 101, cl: nil, appClose: false, framing: .noBody, resultKeepAlive: true),
    FramingCase(minor: 1, keepAlive: true, isHEAD: false, status: 199, cl: nil, appClose: true, framing: .noBody, resultKeepAlive: false),
    FramingCase(minor: 1, keepAlive: true, isHEAD: false, status: 205, cl: nil, appClose: false, framing: .chunked, resultKeepAlive: true),
    FramingCase(minor: 1, keepAlive: true, isHEAD: false, status: 404, cl: 9, appClose: false, framing: .contentLength(9), resultKeepAlive: true),
    FramingCase(minor: 1, keepAlive: true, isHEAD: false, status: 500, cl: nil, appClose: false, framing: .chunked, resultKeepAlive: true),
]

@Test(arguments: framingCases)
func responseFraming(_ c: FramingCase) {
    let d = decideResponseFraming(requestVersionMinor: c.minor, requestKeepAlive: c.keepAlive, isHEAD: c.isHEAD,
                                  status: c.status, appContentLength: c.cl, appWantsClose: c.appClose)
    #expect(d.framing == c.framing)
    #expect(d.keepAlive == c.resultKeepAlive)
}

func kind(_ s: String) -> ResponseHeaderKind { bytes(s).withUnsafeBytes { classifyResponseHeader($0) } }

@Test func headerClassification() {
    #expect(kind("Content-Length") == .contentLength)
    #expect(kind("content-LENGTH") == .contentLength)
    for h in ["Keep-Alive", "transfer-encoding", "TE", "te", "Trailer", "Upgrade", "Proxy-Authenticate", "proxy-authorization"] {
        #expect(kind(h) == .hopByHop, "\(h)")
    }
    #expect(kind("Connection") == .connection)
    #expect(kind("CONNECTION") == .connection)
    #expect(kind("Server") == .server)
    #expect(kind("date") == .date)
    for h in ["Content-Type", "X-Date", "Dates", "Servers", "Trailers", "T", "", "Set-Cookie", "Content-Lengt"] {
        #expect(kind(h) == .other, "\(h)")
    }
}

func valid(_ f: (UnsafeRawBufferPointer) -> Bool, _ b: [UInt8]) -> Bool { b.withUnsafeBytes { f($0) } }

@Test func headerValidation() {
    #expect(valid(isValidHeaderName, bytes("Content-Type")))
    #expect(valid(isValidHeaderName, bytes("X-!#$%&'*+-.^_`|~09az")))
    for bad in ["", "X A", "X:A", "X\tA", "X\r\nA", "X\"A", "(A)", "A,B", "A/B", "é"] {
        #expect(!valid(isValidHeaderName, bytes(bad)), "\(bad)")
    }
    #expect(valid(isValidHeaderValue, bytes("text/html; charset=utf-8")))
    #expect(valid(isValidHeaderValue, bytes("")))
    #expect(valid(isValidHeaderValue, bytes("a\tb")))
    #expect(valid(isValidHeaderValue, [0x4A, 0xFC, 0x80, 0xFF]))
    for bad: [UInt8] in [[0x61, 0x0D], [0x0A], [0x61, 0x00], [0x01], [0x7F], [0x61, 0x0D, 0x0A, 0x20, 0x62]] {
        #expect(!valid(isValidHeaderValue, bad), "\(bad)")
    }
    for good in ["200 OK", "404 Not Found", "599 ", "100 Continue", "200 \u{E9}t\u{E9}"] {
        #expect(valid(isValidStatusLine, bytes(good)), "\(good)")
    }
    for bad in ["", "200", "200OK", "20 OK", "2000 OK", "abc OK", "200 OK\r\n", "200 O\nK", "200 \u{0}", "099 X", " 200 OK"] {
        #expect(!valid(isValidStatusLine, bytes(bad)), "\(bad)")
    }
    #expect(bytes("201 Created").withUnsafeBytes { statusCode(ofStatusLine: $0) } == 201)
    #expect(bytes("2x1 Created").withUnsafeBytes { statusCode(ofStatusLine: $0) } == nil)
}

@Test func appContentLength() {
    func cl(_ s: String) -> Int? { bytes(s).withUnsafeBytes { parseContentLength($0) } }
    #expect(cl("0") == 0)
    #expect(cl("12") == 12)
    #expect(cl(" 12 ") == 12)
    #expect(cl("9223372036854775807") == Int.max)
    for bad in ["", " ", "+1", "-1", "1 2", "1,1", "0x10", "9223372036854775808", "1e3"] {
        #expect(cl(bad) == nil, "\(bad)")
    }
    func close(_ s: String) -> Bool { bytes(s).withUnsafeBytes { connectionValueHasClose($0) } }
    #expect(close("close"))
    #expect(close("Keep-Alive, CLOSE"))
    #expect(!close("closed"))
    #expect(!close("keep-alive"))
}

/// Writes a head the way the worker will.
func writeHead(status: String, headers: [(String, String)], minor: Int = 1, keepAlive: Bool = true, isHEAD: Bool = false)
    -> (head: String, framing: ResponseFraming, keepAlive: Bool) {
    var out: [UInt8] = []
    var w = ResponseHeadWriter()
    bytes(status).withUnsafeBytes { w.begin(statusLine: $0, into: &out) }
    for (n, v) in headers {
        let nb = bytes(n), vb = bytes(v)
        nb.withUnsafeBytes { np in vb.withUnsafeBytes { vp in _ = w.appendAppHeader(name: np, value: vp, into: &out) } }
    }
    let d = decideResponseFraming(requestVersionMinor: minor, requestKeepAlive: keepAlive, isHEAD: isHEAD,
                                  status: w.status, appContentLength: w.appContentLength, appWantsClose: w.appWantsClose)
    let date = HTTPDate.format(unixTime: 784_111_777)
    date.withUnsafeBytes { w.finish(framing: d.framing, keepAlive: d.keepAlive, requestVersionMinor: minor, date: $0, into: &out) }
    return (String(decoding: out, as: UTF8.self), d.framing, d.keepAlive)
}

let dateLine = "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n"

@Test func headWriterContentLength() {
    let r = writeHead(status: "200 OK", headers: [("Content-Type", "text/plain"), ("Content-Length", "5")])
    #expect(r.head == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n" + dateLine + "Server: apus\r\n\r\n")
    #expect(r.framing == .contentLength(5) && r.keepAlive)
}

@Test func headWriterChunked() {
    let r = writeHead(status: "200 OK", headers: [("Content-Type", "text/html")])
    #expect(r.head == "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\n" + dateLine + "Server: apus\r\nTransfer-Encoding: chunked\r\n\r\n")
}

@Test func headWriterHopByHopDropped() {
    let r = writeHead(status: "200 OK", headers: [
        ("Connection", "close"), ("Keep-Alive", "timeout=5"), ("Transfer-Encoding", "chunked"), ("TE", "trailers"),
        ("Trailer", "X"), ("Upgrade", "h2c"), ("Proxy-Authenticate", "Basic"), ("Proxy-Authorization", "x"),
        ("X-Ok", "1"),
    ])
    #expect(r.head == "HTTP/1.1 200 OK\r\nX-Ok: 1\r\n" + dateLine + "Server: apus\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n")
    #expect(r.framing == .chunked && !r.keepAlive)
}

@Test func headWriterAppServerAndDate() {
    let r = writeHead(status: "404 Not Found", headers: [("Server", "custom"), ("date", "Mon, 01 Jan 2024 00:00:00 GMT"), ("Content-Length", "0")])
    #expect(r.head == "HTTP/1.1 404 Not Found\r\nServer: custom\r\ndate: Mon, 01 Jan 2024 00:00:00 GMT\r\nContent-Length: 0\r\n\r\n")
}

@Test func headWriterHTTP10() {
    let ka = writeHead(status: "200 OK", headers: [("Content-Length", "2")], minor: 0, keepAlive: true)
    #expect(ka.head == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + dateLine + "Server: apus\r\nConnection: keep-alive\r\n\r\n")
    let close = writeHead(status: "200 OK", headers: [], minor: 0, keepAlive: true)
    #expect(close.head == "HTTP/1.1 200 OK\r\n" + dateLine + "Server: apus\r\nConnection: close\r\n\r\n")
    #expect(close.framing == .closeDelimited && !close.keepAlive)
    let notKept = writeHead(status: "200 OK", headers: [("Content-Length", "2")], minor: 0, keepAlive: false)
    #expect(notKept.head == "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n" + dateLine + "Server: apus\r\nConnection: close\r\n\r\n")
}

@Test func headWriterNoBody() {
    let head = writeHead(status: "200 OK", headers: [("Content-Length", "42")], isHEAD: true)
    #expect(head.head == "HTTP/1.1 200 OK\r\nContent-Length: 42\r\n" + dateLine + "Server: apus\r\n\r\n")
    #expect(head.framing == .noBody)
    let noContent = writeHead(status: "204 No Content", headers: [("Content-Length", "0"), ("X", "y")])
    #expect(noContent.head == "HTTP/1.1 204 No Content\r\nX: y\r\n" + dateLine + "Server: apus\r\n\r\n")
    let notModified = writeHead(status: "304 Not Modified", headers: [("Content-Length", "10")])
    #expect(notModified.head == "HTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n" + dateLine + "Server: apus\r\n\r\n")
}

@Test func headWriterContentLengthProblems() {
    var out: [UInt8] = []
    var w = ResponseHeadWriter()
    bytes("200 OK").withUnsafeBytes { w.begin(statusLine: $0, into: &out) }
    for v in ["5", "5", "6"] {
        let n = bytes("Content-Length"), vb = bytes(v)
        n.withUnsafeBytes { np in vb.withUnsafeBytes { vp in _ = w.appendAppHeader(name: np, value: vp, into: &out) } }
    }
    #expect(w.appContentLength == 5)
    #expect(w.appContentLengthInvalid)
    #expect(String(decoding: out, as: UTF8.self) == "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n")
    var w2 = ResponseHeadWriter()
    var out2: [UInt8] = []
    bytes("200 OK").withUnsafeBytes { w2.begin(statusLine: $0, into: &out2) }
    let n = bytes("Content-Length"), vb = bytes("abc")
    n.withUnsafeBytes { np in vb.withUnsafeBytes { vp in _ = w2.appendAppHeader(name: np, value: vp, into: &out2) } }
    #expect(w2.appContentLength == nil && w2.appContentLengthInvalid)
    #expect(w2.status == 200)
}

@Test func chunkEncoding() {
    var out: [UInt8] = []
    appendChunk(bytes("hello"), to: &out)
    #expect(out == bytes("5\r\nhello\r\n"))
    out = []
    appendChunk([UInt8](), to: &out)
    #expect(out.isEmpty)
    appendChunk([UInt8](repeating: 0x61, count: 26), to: &out)
    #expect(out == bytes("1a\r\n" + String(repeating: "a", count: 26) + "\r\n"))
    for (n, hex) in [(0, "0"), (1, "1"), (15, "f"), (16, "10"), (255, "ff"), (4096, "1000"), (0x7fff_ffff_ffff_ffff, "7fffffffffffffff")] {
        var h: [UInt8] = []
        appendChunkHeader(size: n, to: &h)
        #expect(h == bytes(hex + "\r\n"), "\(n)")
    }
    #expect(lastChunk == bytes("0\r\n\r\n"))
    // round trip through the decoder
    var body: [UInt8] = []
    appendChunk(bytes("Wiki"), to: &body)
    appendChunk(bytes("pedia"), to: &body)
    body += lastChunk
    let r = decodeChunked([body])
    #expect(r.data == bytes("Wikipedia"))
    #expect(r.result == .done(consumed: body.count))
}

@Test(arguments: [0, 7, 9, 10, 99, 100, 8000, 54321, 1 << 40, Int.max])
func decimalDigitsMatchTheDescription(_ n: Int) {
    var out: [UInt8] = Array("x".utf8)
    appendDecimal(n, to: &out)
    #expect(out == Array("x\(n)".utf8))
    #expect(withDecimalDigits(n) { Array($0) } == Array("\(n)".utf8))
}

@Test func decimalDigitsArePaddedToTheMinimum() {
    for (n, width, text) in [(0, 2, "00"), (7, 2, "07"), (42, 2, "42"), (123, 2, "123"), (5, 4, "0005"), (0, 1, "0"), (9, 0, "9")] {
        var out: [UInt8] = []
        appendDecimal(n, minimumDigits: width, to: &out)
        #expect(out == Array(text.utf8), "\(n) \(width)")
        #expect(withDecimalDigits(n, minimumDigits: width) { Array($0) } == Array(text.utf8))
    }
    #expect(withDecimalDigits(1, minimumDigits: 99) { $0.count } == 24)
}

@Test func caseInsensitiveComparisonFoldsOnlyASCIILetters() {
    func eq(_ s: String, _ lower: StaticString) -> Bool { Array(s.utf8).withUnsafeBytes { equalsIgnoringCase($0, lower) } }
    #expect(eq("Content-Type", "content-type"))
    #expect(eq("COOKIE", "cookie"))
    #expect(!eq("cookies", "cookie"))
    #expect(!eq("cooki", "cookie"))
    #expect(!eq("x\ru", "x-u"))  // CR is not '-' in any case
    #expect(!eq("\u{00C9}", "\u{00E9}"))  // only ASCII letters fold
    #expect(eq("", ""))
}

@Test func literalsAreAppendedWhole() {
    var out: [UInt8] = []
    appendLiteral("HTTP_", &out)
    appendLiteral("", &out)
    #expect(out == Array("HTTP_".utf8))
}
