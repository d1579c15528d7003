import Testing
@testable import ApusProtocols

// MARK: helpers

func parseUWSGI(_ b: ArraySlice<UInt8>, limits: UWSGIParserLimits = UWSGIParserLimits()) -> (UWSGIParseResult, UWSGIRequestHead) {
    var head = UWSGIRequestHead()
    let parser = UWSGIRequestParser(limits: limits)
    let exact = Array(b)  // exact size, so an out-of-bounds read traps
    let r = exact.withUnsafeBytes { parser.parseHead($0, into: &head) }
    return (r, head)
}

func parseUWSGI(_ b: [UInt8], limits: UWSGIParserLimits = UWSGIParserLimits()) -> (UWSGIParseResult, UWSGIRequestHead) {
    parseUWSGI(b[...], limits: limits)
}

func sameUWSGIHead(_ a: UWSGIRequestHead, _ b: UWSGIRequestHead) -> Bool {
    a.vars == b.vars && a.headLength == b.headLength && a.contentLength == b.contentLength && a.method == b.method
        && a.pathInfo == b.pathInfo && a.requestURI == b.requestURI && a.queryString == b.queryString && a.https == b.https
}

/// Feeds growing prefixes; the first result that is not `.incomplete`, with the prefix length.
func firstUWSGIDecision(_ b: [UInt8], limits: UWSGIParserLimits = UWSGIParserLimits())
    -> (result: UWSGIParseResult, head: UWSGIRequestHead, prefix: Int) {
    for k in 0...b.count {
        let (r, h) = parseUWSGI(b[0..<k], limits: limits)
        if r != .incomplete { return (r, h, k) }
    }
    return (.incomplete, UWSGIRequestHead(), b.count)
}

/// Text of every var, in order.
func uwsgiVars(_ b: [UInt8], _ h: UWSGIRequestHead) -> [(String, String)] {
    h.vars.map { (text(b, $0.key), text(b, $0.value)) }
}

/// The vars nginx sends with `include uwsgi_params` (plus the request headers as HTTP_*).
func nginxVars(method: String = "GET", uri: String = "/app/items?page=2&sort=name", contentLength: String = "",
               contentType: String = "", https: Bool = false) -> [(String, String)] {
    let path = String(uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[0])
    let query = uri.contains("?") ? String(uri.split(separator: "?", maxSplits: 1, omittingEmptySubsequences: false)[1]) : ""
    var v: [(String, String)] = [
        ("QUERY_STRING", query),
        ("REQUEST_METHOD", method),
        ("CONTENT_TYPE", contentType),
        ("CONTENT_LENGTH", contentLength),
        ("REQUEST_URI", uri),
        ("PATH_INFO", path),
        ("DOCUMENT_ROOT", "/usr/share/nginx/html"),
        ("SERVER_PROTOCOL", "HTTP/1.1"),
        ("REQUEST_SCHEME", https ? "https" : "http"),
    ]
    if https { v.append(("HTTPS", "on")) }
    v += [
        ("REMOTE_ADDR", "203.0.113.7"),
        ("REMOTE_PORT", "51234"),
        ("SERVER_PORT", https ? "443" : "80"),
        ("SERVER_NAME", "example.com"),
        ("HTTP_HOST", "example.com"),
        ("HTTP_USER_AGENT", "curl/8.5.0"),
        ("HTTP_ACCEPT", "*/*"),
    ]
    return v
}

// MARK: valid packets

struct UWSGIValidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var packet: [UInt8]
    var method: String?
    var pathInfo: String?
    var requestURI: String? = nil
    var queryString: String? = nil
    var contentLength = 0
    var https = false
    var varCount: Int
    var testDescription: String { name }
}

let handWrittenGET: [UInt8] = [
    0x00, 0x15, 0x00, 0x00,                                   // modifier1 0, datasize 21, modifier2 0
    0x0E, 0x00] + Array("REQUEST_METHOD".utf8) + [0x03, 0x00] + Array("GET".utf8)

let handWrittenTwoVars: [UInt8] = [
    0x00, 0x22, 0x00, 0x00,                                   // datasize 34
    0x09, 0x00] + Array("PATH_INFO".utf8) + [0x01, 0x00, 0x2F] // 2+9+2+1 = 14
    + [0x0C, 0x00] + Array("QUERY_STRING".utf8) + [0x04, 0x00] + Array("a=%7".utf8)  // 2+12+2+4 = 20

let uwsgiValidCases: [UWSGIValidCase] = [
    UWSGIValidCase(name: "nginx GET with query", packet: encodeUWSGIPacket(vars: nginxVars()), method: "GET", pathInfo: "/app/items",
                   requestURI: "/app/items?page=2&sort=name", queryString: "page=2&sort=name", varCount: 16),
    UWSGIValidCase(name: "nginx POST with body", packet: encodeUWSGIPacket(vars: nginxVars(method: "POST", uri: "/submit", contentLength: "11", contentType: "application/x-www-form-urlencoded")),
                   method: "POST", pathInfo: "/submit", requestURI: "/submit", queryString: "", contentLength: 11, varCount: 16),
    UWSGIValidCase(name: "nginx over TLS", packet: encodeUWSGIPacket(vars: nginxVars(https: true)), method: "GET", pathInfo: "/app/items",
                   requestURI: "/app/items?page=2&sort=name", queryString: "page=2&sort=name", https: true, varCount: 17),
    UWSGIValidCase(name: "hand-written GET", packet: handWrittenGET, method: "GET", pathInfo: nil, varCount: 1),
    UWSGIValidCase(name: "hand-written two vars", packet: handWrittenTwoVars, method: nil, pathInfo: "/", queryString: "a=%7", varCount: 2),
    UWSGIValidCase(name: "empty vars block", packet: [0, 0, 0, 0], method: nil, pathInfo: nil, varCount: 0),
    UWSGIValidCase(name: "modifier2 is not checked", packet: [0, 0, 0, 9], method: nil, pathInfo: nil, varCount: 0),
    UWSGIValidCase(name: "empty values", packet: encodeUWSGIPacket(vars: [("REQUEST_METHOD", ""), ("PATH_INFO", ""), ("QUERY_STRING", ""), ("X", "")]),
                   method: "", pathInfo: "", queryString: "", varCount: 4),
    UWSGIValidCase(name: "CONTENT_LENGTH zero", packet: encodeUWSGIPacket(vars: [("CONTENT_LENGTH", "0")]), method: nil, pathInfo: nil, varCount: 1),
    UWSGIValidCase(name: "CONTENT_LENGTH leading zeros", packet: encodeUWSGIPacket(vars: [("CONTENT_LENGTH", "0042")]), method: nil, pathInfo: nil, contentLength: 42, varCount: 1),
    UWSGIValidCase(name: "CONTENT_LENGTH repeated, same value", packet: encodeUWSGIPacket(vars: [("CONTENT_LENGTH", "5"), ("CONTENT_LENGTH", "5")]), method: nil, pathInfo: nil, contentLength: 5, varCount: 2),
    UWSGIValidCase(name: "duplicate method: the last wins", packet: encodeUWSGIPacket(vars: [("REQUEST_METHOD", "GET"), ("REQUEST_METHOD", "DELETE")]), method: "DELETE", pathInfo: nil, varCount: 2),
    UWSGIValidCase(name: "HTTPS=1", packet: encodeUWSGIPacket(vars: [("HTTPS", "1")]), method: nil, pathInfo: nil, https: true, varCount: 1),
    UWSGIValidCase(name: "HTTPS=ON", packet: encodeUWSGIPacket(vars: [("HTTPS", "ON")]), method: nil, pathInfo: nil, https: true, varCount: 1),
    UWSGIValidCase(name: "HTTPS=off", packet: encodeUWSGIPacket(vars: [("HTTPS", "off")]), method: nil, pathInfo: nil, https: false, varCount: 1),
    UWSGIValidCase(name: "HTTPS empty", packet: encodeUWSGIPacket(vars: [("HTTPS", "")]), method: nil, pathInfo: nil, https: false, varCount: 1),
    UWSGIValidCase(name: "UWSGI_SCHEME https", packet: encodeUWSGIPacket(vars: [("UWSGI_SCHEME", "https")]), method: nil, pathInfo: nil, https: true, varCount: 1),
    UWSGIValidCase(name: "REQUEST_SCHEME HTTPS", packet: encodeUWSGIPacket(vars: [("REQUEST_SCHEME", "HTTPS")]), method: nil, pathInfo: nil, https: true, varCount: 1),
    UWSGIValidCase(name: "REQUEST_SCHEME http", packet: encodeUWSGIPacket(vars: [("REQUEST_SCHEME", "http")]), method: nil, pathInfo: nil, https: false, varCount: 1),
    UWSGIValidCase(name: "keys are case-sensitive", packet: encodeUWSGIPacket(vars: [("request_method", "GET"), ("https", "on")]), method: nil, pathInfo: nil, https: false, varCount: 2),
    UWSGIValidCase(name: "latin-1 bytes", packet: encodeUWSGIPacket(rawVars: [(Array("PATH_INFO".utf8), [0x2F, 0xE9, 0xFF]), (Array("HTTP_X_NAME".utf8), [0x00, 0x80, 0xA0])]),
                   method: nil, pathInfo: "/\u{FFFD}\u{FFFD}", varCount: 2),
]

@Test(arguments: uwsgiValidCases)
func uwsgiValidPacket(_ c: UWSGIValidCase) {
    let (r, h) = parseUWSGI(c.packet)
    #expect(r == .complete)
    guard r == .complete else { return }
    #expect(h.headLength == c.packet.count)
    #expect(h.vars.count == c.varCount)
    #expect(h.method.map { text(c.packet, $0) } == c.method)
    #expect(h.pathInfo.map { text(c.packet, $0) } == c.pathInfo)
    if c.requestURI != nil { #expect(h.requestURI.map { text(c.packet, $0) } == c.requestURI) }
    if c.queryString != nil { #expect(h.queryString.map { text(c.packet, $0) } == c.queryString) }
    #expect(h.contentLength == c.contentLength)
    #expect(h.https == c.https)
    // the vars tile the block: each key follows its length field, each value its own
    var p = 4
    for v in h.vars {
        #expect(v.key.lowerBound == p + 2)
        #expect(!v.key.isEmpty)
        #expect(v.value.lowerBound == v.key.upperBound + 2)
        p = v.value.upperBound
    }
    #expect(p == h.headLength)
    // every shorter prefix is incomplete; byte by byte gives the same head
    let d = firstUWSGIDecision(c.packet)
    #expect(d.result == .complete)
    #expect(d.prefix == c.packet.count)
    #expect(sameUWSGIHead(d.head, h))
    // a body and more bytes after the head do not change it
    let (r2, h2) = parseUWSGI(c.packet + Array(repeating: 0x41, count: 50))
    #expect(r2 == .complete && sameUWSGIHead(h2, h))
}

@Test func uwsgiNginxVarsRoundTrip() {
    let vars = nginxVars(method: "PUT", uri: "/a%20b/c?x=%E9", contentLength: "3", contentType: "text/plain", https: true)
    let body = Array("abc".utf8)
    let packet = encodeUWSGIPacket(vars: vars) + body
    let (r, h) = parseUWSGI(packet)
    #expect(r == .complete)
    let got = uwsgiVars(packet, h)
    #expect(got.map(\.0) == vars.map(\.0))
    #expect(got.map(\.1) == vars.map(\.1))
    #expect(h.contentLength == 3)
    #expect(Array(packet[h.headLength...]) == body)
    #expect(text(packet, h.queryString!) == "x=%E9")
    #expect(h.https)
}

@Test func uwsgiLatin1BytesAreKeptExactly() {
    let value: [UInt8] = [0x63, 0x61, 0x66, 0xE9, 0x20, 0xFF, 0x00, 0x01]
    let packet = encodeUWSGIPacket(rawVars: [(Array("HTTP_X_LATIN".utf8), value), ([0xC0, 0xC1], [])])
    let (r, h) = parseUWSGI(packet)
    #expect(r == .complete)
    #expect(h.vars.count == 2)
    #expect(Array(packet[h.vars[0].value]) == value)
    #expect(Array(packet[h.vars[1].key]) == [0xC0, 0xC1])
    #expect(h.vars[1].value.isEmpty)
}

@Test func uwsgiDuplicateKeysKeptInOrder() {
    let packet = encodeUWSGIPacket(vars: [("HTTP_COOKIE", "a=1"), ("X", "y"), ("HTTP_COOKIE", "b=2"), ("PATH_INFO", "/one"), ("PATH_INFO", "/two")])
    let (r, h) = parseUWSGI(packet)
    #expect(r == .complete)
    let got = uwsgiVars(packet, h)
    #expect(got.map(\.0) == ["HTTP_COOKIE", "X", "HTTP_COOKIE", "PATH_INFO", "PATH_INFO"])
    #expect(got.map(\.1) == ["a=1", "y", "b=2", "/one", "/two"])
    #expect(text(packet, h.pathInfo!) == "/two")
}

@Test func uwsgiHTTPSTakesTheLastValue() {
    let (r1, h1) = parseUWSGI(encodeUWSGIPacket(vars: [("HTTPS", "on"), ("HTTPS", "off")]))
    #expect(r1 == .complete && !h1.https)
    let (r2, h2) = parseUWSGI(encodeUWSGIPacket(vars: [("HTTPS", "off"), ("UWSGI_SCHEME", "https")]))
    #expect(r2 == .complete && h2.https)
}

// MARK: invalid packets

struct UWSGIInvalidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var packet: [UInt8]
    var error: UWSGIParseError
    var limits = UWSGIParserLimits()
    var testDescription: String { name }
}

func limits(maxVarsBytes: Int = 65535, maxVars: Int = 200, maxBodyBytes: Int = 1 << 30) -> UWSGIParserLimits {
    var l = UWSGIParserLimits()
    l.maxVarsBytes = maxVarsBytes
    l.maxVars = maxVars
    l.maxBodyBytes = maxBodyBytes
    return l
}

/// A packet whose vars block is `block` verbatim.
func rawBlock(_ block: [UInt8], modifier1: UInt8 = 0) -> [UInt8] {
    [modifier1, UInt8(block.count & 0xFF), UInt8(block.count >> 8), 0] + block
}

let uwsgiInvalidCases: [UWSGIInvalidCase] = [
    UWSGIInvalidCase(name: "modifier1 5 (PSGI)", packet: encodeUWSGIPacket(vars: [("A", "b")], modifier1: 5), error: .badModifier(5)),
    UWSGIInvalidCase(name: "modifier1 72 (an HTTP request: 'H')", packet: Array("HEAD / HTTP/1.1\r\n\r\n".utf8), error: .badModifier(72)),
    UWSGIInvalidCase(name: "modifier1 71 ('G' of GET)", packet: Array("GET / HTTP/1.1\r\nHost: a\r\n\r\n".utf8), error: .badModifier(71)),
    UWSGIInvalidCase(name: "modifier1 255", packet: [255, 0, 0, 0], error: .badModifier(255)),
    UWSGIInvalidCase(name: "vars over the limit", packet: encodeUWSGIPacket(vars: [("KEY", String(repeating: "v", count: 100))]), error: .varsTooLarge(107), limits: limits(maxVarsBytes: 100)),
    UWSGIInvalidCase(name: "vars over the limit, header only", packet: [0, 0xFF, 0xFF, 0], error: .varsTooLarge(65535), limits: limits(maxVarsBytes: 4096)),
    UWSGIInvalidCase(name: "one dangling byte", packet: rawBlock([0x01]), error: .truncatedVar),
    UWSGIInvalidCase(name: "key runs past the block", packet: rawBlock([0x05, 0x00, 0x41, 0x42]), error: .truncatedVar),
    UWSGIInvalidCase(name: "key fills the block, no value length", packet: rawBlock([0x02, 0x00, 0x41, 0x42]), error: .truncatedVar),
    UWSGIInvalidCase(name: "half a value length", packet: rawBlock([0x01, 0x00, 0x41, 0x00]), error: .truncatedVar),
    UWSGIInvalidCase(name: "value runs past the block", packet: rawBlock([0x01, 0x00, 0x41, 0x03, 0x00, 0x61, 0x62]), error: .truncatedVar),
    UWSGIInvalidCase(name: "value runs past the block into the body", packet: rawBlock([0x01, 0x00, 0x41, 0x03, 0x00, 0x61, 0x62]) + [0x63, 0x64], error: .truncatedVar),
    UWSGIInvalidCase(name: "second var truncated", packet: rawBlock([0x01, 0x00, 0x41, 0x01, 0x00, 0x61, 0x01, 0x00]), error: .truncatedVar),
    UWSGIInvalidCase(name: "huge value length", packet: rawBlock([0x01, 0x00, 0x41, 0xFF, 0xFF, 0x61]), error: .truncatedVar),
    UWSGIInvalidCase(name: "empty key", packet: rawBlock([0x00, 0x00, 0x01, 0x00, 0x61]), error: .emptyKey),
    UWSGIInvalidCase(name: "empty key after a good var", packet: encodeUWSGIPacket(rawVars: [([0x41], [0x62]), ([], [0x63])]), error: .emptyKey),
    UWSGIInvalidCase(name: "too many vars", packet: encodeUWSGIPacket(vars: [("A", "1"), ("B", "2"), ("C", "3"), ("D", "4")]), error: .tooManyVars, limits: limits(maxVars: 3)),
    UWSGIInvalidCase(name: "201 vars by default", packet: encodeUWSGIPacket(vars: (0...200).map { ("K\($0)", "") }), error: .tooManyVars),
    UWSGIInvalidCase(name: "CONTENT_LENGTH with a letter", packet: encodeUWSGIPacket(vars: [("CONTENT_LENGTH", "12a")]), error: .badContentLength),
    UWSGIInvalidCase(name: "CONTENT_LENGTH negative", packet: encodeUWSGIPacket(vars: [("CONTENT_LENGTH", "-1")]), error: .badContentLength),
    UWSGIInvalidCase(name: "CONTENT_LENGTH plus sign", packet: encodeUWSGIPacket(vars: [("CONTENT_LENGTH", "+5")]), error: .badContentLength),
    UWSGIInvalidCase(name: "CONTENT_LENGTH leading space", packet: encodeUWSGIPacket(vars: [("CONTENT_LENGTH", " 5")]), error: .badContentLength),
    UWSGIInvalidCase(name: "CONTENT_LENGTH hex", packet: encodeUWSGIPacket(vars: [("CONTENT_LENGTH", "0x10")]), error: .badContentLength),
    UWSGIInvalidCase(name: "CONTENT_LENGTH overflow", packet: encodeUWSGIPacket(vars: [("CONTENT_LENGTH", "99999999999999999999999")]), error: .badContentLength),
    UWSGIInvalidCase(name: "CONTENT_LENGTH conflicting", packet: encodeUWSGIPacket(vars: [("CONTENT_LENGTH", "5"), ("CONTENT_LENGTH", "6")]), error: .badContentLength),
    UWSGIInvalidCase(name: "CONTENT_LENGTH empty then non-zero", packet: encodeUWSGIPacket(vars: [("CONTENT_LENGTH", ""), ("CONTENT_LENGTH", "6")]), error: .badContentLength),
    UWSGIInvalidCase(name: "body over the limit", packet: encodeUWSGIPacket(vars: [("CONTENT_LENGTH", "101")]), error: .bodyTooLarge, limits: limits(maxBodyBytes: 100)),
    UWSGIInvalidCase(name: "body over the default limit", packet: encodeUWSGIPacket(vars: [("CONTENT_LENGTH", "1073741825")]), error: .bodyTooLarge),
]

@Test(arguments: uwsgiInvalidCases)
func uwsgiInvalidPacket(_ c: UWSGIInvalidCase) {
    let (r, _) = parseUWSGI(c.packet, limits: c.limits)
    #expect(r == .failure(c.error))
    let d = firstUWSGIDecision(c.packet, limits: c.limits)
    #expect(d.result == .failure(c.error))
}

@Test func uwsgiFailsAsEarlyAsPossible() {
    // a bad modifier1 at the first byte
    #expect(parseUWSGI([7]).0 == .failure(.badModifier(7)))
    #expect(parseUWSGI(Array("G".utf8)).0 == .failure(.badModifier(0x47)))
    // an oversized datasize as soon as it is known
    #expect(parseUWSGI([0, 0x01, 0x10], limits: limits(maxVarsBytes: 4096)).0 == .failure(.varsTooLarge(4097)))
    #expect(parseUWSGI([0, 0x00, 0x10], limits: limits(maxVarsBytes: 4096)).0 == .incomplete)
    // nothing at all, and a partial header
    #expect(parseUWSGI([]).0 == .incomplete)
    #expect(parseUWSGI([0]).0 == .incomplete)
    #expect(parseUWSGI([0, 5]).0 == .incomplete)
    // the vars are only looked at once the whole block is there
    #expect(parseUWSGI(rawBlock([0x00, 0x00, 0x01, 0x00, 0x61]).dropLast()).0 == .incomplete)
}

@Test func uwsgiLimitsAtTheBoundary() {
    let exactly3 = encodeUWSGIPacket(vars: [("A", "1"), ("B", "2"), ("C", "3")])
    #expect(parseUWSGI(exactly3, limits: limits(maxVars: 3)).0 == .complete)
    let body100 = encodeUWSGIPacket(vars: [("CONTENT_LENGTH", "100")])
    #expect(parseUWSGI(body100, limits: limits(maxBodyBytes: 100)).0 == .complete)
    // 0 = unlimited body
    let huge = encodeUWSGIPacket(vars: [("CONTENT_LENGTH", "1099511627776")])
    let (r, h) = parseUWSGI(huge, limits: limits(maxBodyBytes: 0))
    #expect(r == .complete && h.contentLength == 1 << 40)
    // a vars block of exactly the limit
    let packet = encodeUWSGIPacket(vars: [("KEY", String(repeating: "v", count: 93))])  // 2 + 3 + 2 + 93 = 100
    #expect(packet.count == 4 + 100)
    #expect(parseUWSGI(packet, limits: limits(maxVarsBytes: 100)).0 == .complete)
    #expect(parseUWSGI(packet, limits: limits(maxVarsBytes: 99)).0 == .failure(.varsTooLarge(100)))
    // the largest block the header can describe, with the default limits
    let big = encodeUWSGIPacket(vars: [("HTTP_COOKIE", String(repeating: "c", count: 65535 - 4 - 11))])
    #expect(big.count == 4 + 65535)
    #expect(parseUWSGI(big).0 == .complete)
    // limits of zero or less do not trap
    #expect(parseUWSGI(exactly3, limits: limits(maxVarsBytes: 0, maxVars: 0, maxBodyBytes: 0)).0 == .complete)
    #expect(parseUWSGI(exactly3, limits: limits(maxVarsBytes: -1, maxVars: -1, maxBodyBytes: -1)).0 == .complete)
}

@Test func uwsgiHeadReuseKeepsCapacity() {
    var head = UWSGIRequestHead()
    let parser = UWSGIRequestParser()
    let a = encodeUWSGIPacket(vars: nginxVars(https: true))
    let b = encodeUWSGIPacket(vars: [("REQUEST_METHOD", "GET")])
    #expect(a.withUnsafeBytes { parser.parseHead($0, into: &head) } == .complete)
    #expect(head.https)
    let capacity = head.vars.capacity
    #expect(b.withUnsafeBytes { parser.parseHead($0, into: &head) } == .complete)
    #expect(head.vars.count == 1)
    #expect(head.vars.capacity == capacity)
    #expect(!head.https && head.pathInfo == nil && head.queryString == nil && head.requestURI == nil)
}

@Test func uwsgiEncoderBytes() {
    #expect(encodeUWSGIPacket(vars: []) == [0, 0, 0, 0])
    #expect(encodeUWSGIPacket(vars: [("REQUEST_METHOD", "GET")]) == handWrittenGET)
    #expect(encodeUWSGIPacket(vars: [("PATH_INFO", "/"), ("QUERY_STRING", "a=%7")]) == handWrittenTwoVars)
    #expect(encodeUWSGIPacket(vars: [("A", "b")], modifier1: 5) == [5, 6, 0, 0, 1, 0, 0x41, 1, 0, 0x62])
    #expect(encodeUWSGIPacket(rawVars: [([0x41], [UInt8](repeating: 0x7A, count: 300))]).prefix(9) == [0, 0x31, 0x01, 0, 1, 0, 0x41, 0x2C, 0x01])
    // strings are written as UTF-8
    #expect(encodeUWSGIPacket(vars: [("K", "é")]) == [0, 7, 0, 0, 1, 0, 0x4B, 2, 0, 0xC3, 0xA9])
}

@Test func uwsgiLogDescriptionsAreOneLine() {
    let all: [UWSGIParseError] = [.badModifier(1), .varsTooLarge(70000), .truncatedVar, .tooManyVars, .badContentLength, .bodyTooLarge, .emptyKey]
    for e in all {
        #expect(!e.logDescription.isEmpty)
        #expect(!e.logDescription.contains("\n"))
        #expect(e.logDescription.hasPrefix("uwsgi: "))
    }
    #expect(UWSGIParseError.badModifier(5).logDescription.contains("5"))
}

// MARK: fuzzing

/// Random but well-formed packets: random keys and values (any bytes).
func randomUWSGIPacket(_ rng: inout SplitMix64) -> [UInt8] {
    let names = ["REQUEST_METHOD", "PATH_INFO", "QUERY_STRING", "REQUEST_URI", "CONTENT_LENGTH", "HTTPS", "UWSGI_SCHEME",
                 "REQUEST_SCHEME", "HTTP_HOST", "X", "CONTENT_TYPE"]
    var vars: [([UInt8], [UInt8])] = []
    for _ in 0..<Int.random(in: 0...12, using: &rng) {
        let key: [UInt8] = Bool.random(using: &rng) ? Array(names.randomElement(using: &rng)!.utf8)
            : (0..<Int.random(in: 1...6, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var value: [UInt8]
        switch Int.random(in: 0..<4, using: &rng) {
        case 0: value = Array(String(Int.random(in: 0...5000, using: &rng)).utf8)
        case 1: value = Array(["on", "1", "https", "GET", "/", ""].randomElement(using: &rng)!.utf8)
        default: value = (0..<Int.random(in: 0...20, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        }
        vars.append((key, value))
    }
    return encodeUWSGIPacket(rawVars: vars) + (0..<Int.random(in: 0...8, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
}

@Test func fuzzUWSGIParser() {
    var rng = SplitMix64(state: 0x0_A9B5_57A1)
    var lim = UWSGIParserLimits()
    lim.maxBodyBytes = 4096
    lim.maxVars = 10
    var outcomes: [String: Int] = [:]
    for iteration in 0..<12_000 {
        var b = randomUWSGIPacket(&rng)
        if iteration % 3 != 0 { b = mutate(b, &rng) }
        // now and then a wholly random buffer that starts like a packet
        if iteration % 17 == 0 { b = [0] + (0..<Int.random(in: 0...40, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) } }
        let (whole, head) = parseUWSGI(b, limits: lim)
        switch whole {
        case .incomplete: outcomes["incomplete", default: 0] += 1
        case .complete: outcomes["complete", default: 0] += 1
        case .failure(let e): outcomes["\(e)", default: 0] += 1
        }
        if whole == .complete {
            #expect(head.headLength >= 4 && head.headLength <= b.count, "iteration \(iteration)")
            var p = 4
            for v in head.vars {
                #expect(v.key.lowerBound == p + 2 && !v.key.isEmpty && v.value.lowerBound == v.key.upperBound + 2, "iteration \(iteration)")
                p = v.value.upperBound
            }
            #expect(p == head.headLength, "iteration \(iteration)")
            #expect(head.vars.count <= lim.maxVars)
            #expect(head.contentLength >= 0 && head.contentLength <= lim.maxBodyBytes)
            for r in [head.method, head.pathInfo, head.requestURI, head.queryString] {
                if let r { #expect(head.vars.contains { $0.value == r }, "iteration \(iteration)") }
            }
            let (before, _) = parseUWSGI(b[..<(head.headLength - 1)], limits: lim)
            #expect(before == .incomplete, "iteration \(iteration)")
        }
        // random prefixes: incomplete or the same verdict
        for _ in 0..<3 where b.count > 1 {
            let k = Int.random(in: 0..<b.count, using: &rng)
            let (r, h) = parseUWSGI(b[..<k], limits: lim)
            if r != .incomplete {
                #expect(r == whole, "iteration \(iteration) prefix \(k)")
                if r == .complete { #expect(sameUWSGIHead(h, head), "iteration \(iteration) prefix \(k)") }
            }
        }
        if iteration % 40 == 0 && b.count < 400 {
            let d = firstUWSGIDecision(b, limits: lim)
            #expect(d.result == whole, "iteration \(iteration)")
        }
    }
    #expect((outcomes["complete"] ?? 0) > 2000)
    #expect((outcomes["truncatedVar"] ?? 0) > 200)
    #expect((outcomes["incomplete"] ?? 0) > 200)
}
