import Testing
@testable import ApusProtocols

// MARK: helpers

func parseProxy(_ b: ArraySlice<UInt8>) -> ProxyParseResult {
    let exact = Array(b)
    return exact.withUnsafeBytes { parseProxyHeader($0) }
}

func parseProxy(_ b: [UInt8]) -> ProxyParseResult { parseProxy(b[...]) }

func parseProxy(_ s: String) -> ProxyParseResult { parseProxy(bytes(s)) }

func isProxyFailure(_ r: ProxyParseResult) -> Bool {
    if case .failure = r { return true }
    return false
}

func proxyFailureReason(_ r: ProxyParseResult) -> String? {
    if case .failure(let reason) = r { return reason }
    return nil
}

/// First result that is not `.incomplete` when the buffer grows a byte at a time.
func firstProxyDecision(_ b: [UInt8]) -> (result: ProxyParseResult, prefix: Int) {
    for k in 0...b.count {
        let r = parseProxy(b[..<k])
        if r != .incomplete { return (r, k) }
    }
    return (.incomplete, b.count)
}

let v2Sig: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

/// A v2 header: signature, version/command, family, length (computed unless given), payload.
func v2Header(command: UInt8 = 1, version: UInt8 = 2, family: UInt8, payload: [UInt8], length: Int? = nil) -> [UInt8] {
    let len = length ?? payload.count
    return v2Sig + [version << 4 | command, family, UInt8(len >> 8), UInt8(len & 0xFF)] + payload
}

func tlv(_ type: UInt8, _ value: [UInt8]) -> [UInt8] {
    [type, UInt8(value.count >> 8), UInt8(value.count & 0xFF)] + value
}

let v4Payload: [UInt8] = [203, 0, 113, 7, 192, 0, 2, 1, 0x12, 0x67, 0x01, 0xBB]  // 203.0.113.7:4711 -> 192.0.2.1:443
let v6Src: [UInt8] = [0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]
let v6Dst: [UInt8] = [0x20, 0x01, 0x0D, 0xB8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]
let v6Payload: [UInt8] = v6Src + v6Dst + [0xFF, 0xFF, 0x00, 0x50]

func unixPayload(_ src: String, _ dst: String) -> [UInt8] {
    func field(_ s: String) -> [UInt8] { let b = Array(s.utf8); return b + [UInt8](repeating: 0, count: 108 - b.count) }
    return field(src) + field(dst)
}

let httpRequest = bytes("GET / HTTP/1.1\r\nHost: example.com\r\n\r\n")

// MARK: valid headers

struct ProxyValidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var header: [UInt8]
    var expected: ProxyHeader  // length is checked against header.count
    var testDescription: String { name }
}

let proxyValidCases: [ProxyValidCase] = [
    ProxyValidCase(name: "v1 TCP4", header: bytes("PROXY TCP4 203.0.113.7 192.0.2.1 4711 443\r\n"),
                   expected: ProxyHeader(source: .ipv4([203, 0, 113, 7]), sourcePort: 4711, destination: .ipv4([192, 0, 2, 1]), destinationPort: 443)),
    ProxyValidCase(name: "v1 TCP4 ports 0 and 65535", header: bytes("PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n"),
                   expected: ProxyHeader(source: .ipv4([0, 0, 0, 0]), sourcePort: 0, destination: .ipv4([255, 255, 255, 255]), destinationPort: 65535)),
    ProxyValidCase(name: "v1 TCP6", header: bytes("PROXY TCP6 2001:db8::1 2001:db8::2 65535 80\r\n"),
                   expected: ProxyHeader(source: .ipv6(v6Src), sourcePort: 65535, destination: .ipv6(v6Dst), destinationPort: 80)),
    ProxyValidCase(name: "v1 TCP6 upper case, full form", header: bytes("PROXY TCP6 2001:0DB8:0000:0000:0000:0000:0000:0001 2001:db8:0:0:0:0:0:2 1 2\r\n"),
                   expected: ProxyHeader(source: .ipv6(v6Src), sourcePort: 1, destination: .ipv6(v6Dst), destinationPort: 2)),
    ProxyValidCase(name: "v1 TCP6 mapped IPv4", header: bytes("PROXY TCP6 ::ffff:203.0.113.7 ::1 1234 8080\r\n"),
                   expected: ProxyHeader(source: .ipv6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 203, 0, 113, 7]), sourcePort: 1234,
                                         destination: .ipv6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), destinationPort: 8080)),
    ProxyValidCase(name: "v1 UNKNOWN", header: bytes("PROXY UNKNOWN\r\n"), expected: ProxyHeader(isLocal: true)),
    ProxyValidCase(name: "v1 UNKNOWN with addresses (ignored)", header: bytes("PROXY UNKNOWN 1.2.3.4 5.6.7.8 1 2\r\n"), expected: ProxyHeader(isLocal: true)),
    ProxyValidCase(name: "v1 UNKNOWN, worst case 107 bytes",
                   header: bytes("PROXY UNKNOWN ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
                   expected: ProxyHeader(isLocal: true)),
    ProxyValidCase(name: "v2 TCP over IPv4", header: v2Header(family: 0x11, payload: v4Payload),
                   expected: ProxyHeader(source: .ipv4([203, 0, 113, 7]), sourcePort: 4711, destination: .ipv4([192, 0, 2, 1]), destinationPort: 443)),
    ProxyValidCase(name: "v2 TCP over IPv6", header: v2Header(family: 0x21, payload: v6Payload),
                   expected: ProxyHeader(source: .ipv6(v6Src), sourcePort: 65535, destination: .ipv6(v6Dst), destinationPort: 80)),
    ProxyValidCase(name: "v2 unix stream", header: v2Header(family: 0x31, payload: unixPayload("/run/lb.sock", "/run/apus.sock")),
                   expected: ProxyHeader(source: .unix(bytes("/run/lb.sock")), destination: .unix(bytes("/run/apus.sock")))),
    ProxyValidCase(name: "v2 LOCAL, no addresses", header: v2Header(command: 0, family: 0x00, payload: []), expected: ProxyHeader(isLocal: true)),
    ProxyValidCase(name: "v2 LOCAL with addresses (ignored)", header: v2Header(command: 0, family: 0x11, payload: v4Payload), expected: ProxyHeader(isLocal: true)),
    ProxyValidCase(name: "v2 LOCAL with an odd family (ignored)", header: v2Header(command: 0, family: 0x77, payload: [1, 2, 3]), expected: ProxyHeader(isLocal: true)),
    ProxyValidCase(name: "v2 PROXY UNSPEC", header: v2Header(family: 0x00, payload: []), expected: ProxyHeader(isLocal: true)),
    ProxyValidCase(name: "v2 PROXY UNSPEC with TLVs", header: v2Header(family: 0x00, payload: tlv(0x04, [0, 0])), expected: ProxyHeader(isLocal: true)),
    ProxyValidCase(name: "v2 IPv4 with TLVs (ALPN, authority, NOOP, AWS VPC endpoint)",
                   header: v2Header(family: 0x11, payload: v4Payload + tlv(0x01, bytes("h2")) + tlv(0x02, bytes("example.com")) + tlv(0x04, [0, 0, 0])
                                    + tlv(0xEA, [0x01] + bytes("vpce-08d2bf15fac5001c9"))),
                   expected: ProxyHeader(source: .ipv4([203, 0, 113, 7]), sourcePort: 4711, destination: .ipv4([192, 0, 2, 1]), destinationPort: 443)),
    ProxyValidCase(name: "v2 IPv6 with an empty TLV and an SSL TLV", header: v2Header(family: 0x21, payload: v6Payload + tlv(0x05, []) + tlv(0x20, [0x07, 0, 0, 0, 0] + tlv(0x21, bytes("TLSv1.3")))),
                   expected: ProxyHeader(source: .ipv6(v6Src), sourcePort: 65535, destination: .ipv6(v6Dst), destinationPort: 80)),
]

@Test(arguments: proxyValidCases)
func proxyValidHeader(_ c: ProxyValidCase) {
    #expect(!c.header.isEmpty)
    var expected = c.expected
    expected.length = c.header.count
    #expect(parseProxy(c.header) == .complete(expected))
    // followed by an HTTP request: `length` points at its first byte
    let stream = c.header + httpRequest
    let r = parseProxy(stream)
    #expect(r == .complete(expected))
    if case .complete(let h) = r {
        #expect(Array(stream[h.length...]) == httpRequest)
        let (hr, head) = parse(Array(stream[h.length...]))
        #expect(hr == .complete && head.headLength == httpRequest.count)
    }
    // every proper prefix is incomplete
    let d = firstProxyDecision(stream)
    #expect(d.result == .complete(expected))
    #expect(d.prefix == c.header.count)
}

@Test func proxyV1MaximumLength() {
    // 107 bytes exactly is accepted, 108 is not
    let ok = bytes("PROXY UNKNOWN " + String(repeating: "a", count: 107 - 16) + "\r\n")
    #expect(ok.count == 107)
    #expect(parseProxy(ok) == .complete(ProxyHeader(isLocal: true, length: 107)))
    let long = bytes("PROXY UNKNOWN " + String(repeating: "a", count: 107 - 15) + "\r\n")
    #expect(long.count == 108)
    #expect(isProxyFailure(parseProxy(long)))
    // without a CRLF, the 107th byte decides
    let noEnd = bytes("PROXY UNKNOWN " + String(repeating: "a", count: 200))
    #expect(parseProxy(noEnd[..<106]) == .incomplete)
    #expect(isProxyFailure(parseProxy(noEnd[..<107])))
    #expect(firstProxyDecision(noEnd).prefix == 107)
    // the longest TCP6 line with mixed notation goes over the limit
    let v6 = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255"
    let mixed = bytes("PROXY TCP6 \(v6) \(v6) 65535 65535\r\n")
    #expect(mixed.count > 107)
    #expect(isProxyFailure(parseProxy(mixed)))
    // the longest plain TCP6 line fits
    let full = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
    let fullLine = bytes("PROXY TCP6 \(full) \(full) 65535 65535\r\n")
    #expect(fullLine.count == 104)
    if case .complete(let h) = parseProxy(fullLine) { #expect(h.length == 104) } else { Issue.record("full TCP6 line refused") }
}

// MARK: invalid headers

struct ProxyInvalidCase: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    var reasonContains: String
    var testDescription: String { name }
}

let proxyInvalidCases: [ProxyInvalidCase] = [
    ProxyInvalidCase(name: "plain HTTP GET", bytes: bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), reasonContains: "not a PROXY"),
    ProxyInvalidCase(name: "plain HTTP POST (starts with P)", bytes: bytes("POST / HTTP/1.1\r\nHost: a\r\n\r\n"), reasonContains: "not a PROXY"),
    ProxyInvalidCase(name: "plain HTTP PUT", bytes: bytes("PUT / HTTP/1.1\r\n"), reasonContains: "not a PROXY"),
    ProxyInvalidCase(name: "plain HTTP PATCH", bytes: bytes("PATCH / HTTP/1.1\r\n"), reasonContains: "not a PROXY"),
    ProxyInvalidCase(name: "HTTP/2 preface", bytes: bytes("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), reasonContains: "not a PROXY"),
    ProxyInvalidCase(name: "TLS ClientHello", bytes: [0x16, 0x03, 0x01, 0x02, 0x00, 0x01], reasonContains: "not a PROXY"),
    ProxyInvalidCase(name: "lowercase proxy", bytes: bytes("proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), reasonContains: "not a PROXY"),
    ProxyInvalidCase(name: "PROXY without space", bytes: bytes("PROXYTCP4 1.2.3.4 5.6.7.8 1 2\r\n"), reasonContains: "space"),
    ProxyInvalidCase(name: "v1 lowercase protocol", bytes: bytes("PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n"), reasonContains: "protocol"),
    ProxyInvalidCase(name: "v1 TCP5", bytes: bytes("PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n"), reasonContains: "protocol"),
    ProxyInvalidCase(name: "v1 UDP4", bytes: bytes("PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n"), reasonContains: "protocol"),
    ProxyInvalidCase(name: "v1 TCP (too short)", bytes: bytes("PROXY TCP 1.2.3.4 5.6.7.8 1 2\r\n"), reasonContains: "protocol"),
    ProxyInvalidCase(name: "v1 UNKNOWNX", bytes: bytes("PROXY UNKNOWNX\r\n"), reasonContains: "protocol"),
    ProxyInvalidCase(name: "v1 double space", bytes: bytes("PROXY TCP4  1.2.3.4 5.6.7.8 1 2\r\n"), reasonContains: "source address"),
    ProxyInvalidCase(name: "v1 double space before port", bytes: bytes("PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n"), reasonContains: "source port"),
    ProxyInvalidCase(name: "v1 tab separator", bytes: bytes("PROXY TCP4\t1.2.3.4 5.6.7.8 1 2\r\n"), reasonContains: "protocol"),
    ProxyInvalidCase(name: "v1 octet over 255", bytes: bytes("PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n"), reasonContains: "IPv4 source"),
    ProxyInvalidCase(name: "v1 three octets", bytes: bytes("PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n"), reasonContains: "IPv4 source"),
    ProxyInvalidCase(name: "v1 five octets", bytes: bytes("PROXY TCP4 1.2.3.4 5.6.7.8.9 1 2\r\n"), reasonContains: "IPv4 destination"),
    ProxyInvalidCase(name: "v1 leading zero octet", bytes: bytes("PROXY TCP4 01.2.3.4 5.6.7.8 1 2\r\n"), reasonContains: "IPv4 source"),
    ProxyInvalidCase(name: "v1 empty octet", bytes: bytes("PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n"), reasonContains: "IPv4 source"),
    ProxyInvalidCase(name: "v1 IPv6 under TCP4", bytes: bytes("PROXY TCP4 ::1 5.6.7.8 1 2\r\n"), reasonContains: "invalid character in source address"),
    ProxyInvalidCase(name: "v1 IPv4 under TCP6", bytes: bytes("PROXY TCP6 1.2.3.4 ::1 1 2\r\n"), reasonContains: "IPv6 source"),
    ProxyInvalidCase(name: "v1 host name", bytes: bytes("PROXY TCP4 localhost 5.6.7.8 1 2\r\n"), reasonContains: "invalid character"),
    ProxyInvalidCase(name: "v1 bad IPv6 (two ::)", bytes: bytes("PROXY TCP6 1::2::3 ::1 1 2\r\n"), reasonContains: "IPv6 source"),
    ProxyInvalidCase(name: "v1 bad IPv6 (9 groups)", bytes: bytes("PROXY TCP6 1:2:3:4:5:6:7:8:9 ::1 1 2\r\n"), reasonContains: "IPv6 source"),
    ProxyInvalidCase(name: "v1 IPv6 with zone", bytes: bytes("PROXY TCP6 fe80::1%eth0 ::1 1 2\r\n"), reasonContains: "invalid character"),
    ProxyInvalidCase(name: "v1 bracketed IPv6", bytes: bytes("PROXY TCP6 [::1] ::1 1 2\r\n"), reasonContains: "invalid character"),
    ProxyInvalidCase(name: "v1 port 65536", bytes: bytes("PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n"), reasonContains: "source port"),
    ProxyInvalidCase(name: "v1 port with leading zero", bytes: bytes("PROXY TCP4 1.2.3.4 5.6.7.8 080 2\r\n"), reasonContains: "source port"),
    ProxyInvalidCase(name: "v1 port 00", bytes: bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n"), reasonContains: "destination port"),
    ProxyInvalidCase(name: "v1 negative port", bytes: bytes("PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n"), reasonContains: "source port"),
    ProxyInvalidCase(name: "v1 six-digit port", bytes: bytes("PROXY TCP4 1.2.3.4 5.6.7.8 100000 2\r\n"), reasonContains: "too long"),
    ProxyInvalidCase(name: "v1 missing destination port", bytes: bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n"), reasonContains: "source port"),
    ProxyInvalidCase(name: "v1 extra field", bytes: bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 3\r\n"), reasonContains: "destination port"),
    ProxyInvalidCase(name: "v1 trailing space", bytes: bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n"), reasonContains: "destination port"),
    ProxyInvalidCase(name: "v1 missing addresses", bytes: bytes("PROXY TCP4\r\n"), reasonContains: "missing addresses"),
    ProxyInvalidCase(name: "v1 bare LF", bytes: bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), reasonContains: "destination port"),
    ProxyInvalidCase(name: "v1 CR without LF", bytes: bytes("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rGET"), reasonContains: "bare CR"),
    ProxyInvalidCase(name: "v1 UNKNOWN bare LF", bytes: bytes("PROXY UNKNOWN\nGET"), reasonContains: "bare LF"),
    ProxyInvalidCase(name: "v1 UNKNOWN over 107 bytes", bytes: bytes("PROXY UNKNOWN " + String(repeating: "x", count: 120) + "\r\n"), reasonContains: "107"),
    ProxyInvalidCase(name: "v1 NUL in address", bytes: bytes("PROXY TCP4 1.2.3.4\u{0} 5.6.7.8 1 2\r\n"), reasonContains: "invalid character"),
    ProxyInvalidCase(name: "v2 bad signature byte 8", bytes: [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x56, 0x49, 0x54, 0x0A, 0x21, 0x11, 0, 12] + v4Payload, reasonContains: "signature"),
    ProxyInvalidCase(name: "v2 signature then HTTP", bytes: bytes("\r\n\r\nGET / HTTP/1.1\r\n"), reasonContains: "signature"),
    ProxyInvalidCase(name: "CRLF then GET", bytes: bytes("\r\nGET / HTTP/1.1\r\n"), reasonContains: "not a PROXY"),
    ProxyInvalidCase(name: "v2 version 1", bytes: v2Header(version: 1, family: 0x11, payload: v4Payload), reasonContains: "version 1"),
    ProxyInvalidCase(name: "v2 version 3", bytes: v2Header(version: 3, family: 0x11, payload: v4Payload), reasonContains: "version 3"),
    ProxyInvalidCase(name: "v2 version 0", bytes: v2Header(version: 0, family: 0x11, payload: v4Payload), reasonContains: "version 0"),
    ProxyInvalidCase(name: "v2 command 2", bytes: v2Header(command: 2, family: 0x11, payload: v4Payload), reasonContains: "command 2"),
    ProxyInvalidCase(name: "v2 command 15", bytes: v2Header(command: 15, family: 0x11, payload: v4Payload), reasonContains: "command 15"),
    ProxyInvalidCase(name: "v2 UDP over IPv4", bytes: v2Header(family: 0x12, payload: v4Payload), reasonContains: "0x12"),
    ProxyInvalidCase(name: "v2 unix datagram", bytes: v2Header(family: 0x32, payload: unixPayload("/a", "/b")), reasonContains: "0x32"),
    ProxyInvalidCase(name: "v2 IPv4 with transport UNSPEC", bytes: v2Header(family: 0x10, payload: v4Payload), reasonContains: "0x10"),
    ProxyInvalidCase(name: "v2 family 4", bytes: v2Header(family: 0x41, payload: v4Payload), reasonContains: "0x41"),
    ProxyInvalidCase(name: "v2 length too short for IPv4", bytes: v2Header(family: 0x11, payload: Array(v4Payload[..<8])), reasonContains: "too short"),
    ProxyInvalidCase(name: "v2 length too short for IPv6", bytes: v2Header(family: 0x21, payload: v4Payload), reasonContains: "too short"),
    ProxyInvalidCase(name: "v2 length too short for unix", bytes: v2Header(family: 0x31, payload: v6Payload), reasonContains: "too short"),
    ProxyInvalidCase(name: "v2 truncated TLV header", bytes: v2Header(family: 0x11, payload: v4Payload + [0x01, 0x00]), reasonContains: "truncated TLV"),
    ProxyInvalidCase(name: "v2 TLV runs past the header", bytes: v2Header(family: 0x11, payload: v4Payload + [0x02, 0x00, 0x09] + bytes("abc")) + httpRequest, reasonContains: "TLV runs past"),
    ProxyInvalidCase(name: "v2 one stray byte after the addresses", bytes: v2Header(family: 0x11, payload: v4Payload + [0x00]), reasonContains: "truncated TLV"),
]

@Test(arguments: proxyInvalidCases)
func proxyInvalidHeader(_ c: ProxyInvalidCase) {
    let r = parseProxy(c.bytes)
    let reason = proxyFailureReason(r)
    #expect(reason != nil, "\(r)")
    #expect(reason?.contains(c.reasonContains) == true, "\(reason ?? "nil")")
    #expect(reason?.contains("\n") == false)
    // byte by byte gives the same verdict, and never later than the whole buffer
    let d = firstProxyDecision(c.bytes)
    #expect(d.result == r)
}

@Test func plainHTTPIsRefusedAtItsFirstBytes() {
    for request in ["GET / HTTP/1.1\r\n", "HEAD / HTTP/1.1\r\n", "OPTIONS * HTTP/1.1\r\n", "DELETE /x HTTP/1.1\r\n", "\u{16}\u{3}\u{1}"] {
        let d = firstProxyDecision(bytes(request))
        #expect(isProxyFailure(d.result))
        #expect(d.prefix == 1, "\(request)")
    }
    // methods starting with P are refused at the second byte (or when they stop matching "PROXY ")
    #expect(firstProxyDecision(bytes("POST / HTTP/1.1\r\n")).prefix == 2)
    #expect(firstProxyDecision(bytes("PUT / HTTP/1.1\r\n")).prefix == 2)
    #expect(firstProxyDecision(bytes("PATCH / HTTP/1.1\r\n")).prefix == 2)
    #expect(firstProxyDecision(bytes("PRI * HTTP/2.0\r\n")).prefix == 3)
    #expect(firstProxyDecision(bytes("PROPFIND / HTTP/1.1\r\n")).prefix == 4)
    #expect(parseProxy([]) == .incomplete)
}

@Test func proxyPrefixesAreIncomplete() {
    let prefixes = ["P", "PROXY", "PROXY ", "PROXY T", "PROXY TCP", "PROXY TCP4", "PROXY TCP4 ", "PROXY TCP4 1", "PROXY TCP4 1.2.3.4",
                    "PROXY TCP4 1.2.3.4 5.6.7.8 1 2", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r", "PROXY U", "PROXY UNKNOWN", "PROXY UNKNOWN ",
                    "PROXY UNKNOWN junk", "PROXY UNKNOWN\r", "PROXY TCP6 2001:db8::", "PROXY TCP6 ::ffff:1.2.", "PROXY TCP6 ::1 ::2 6553",
                    "\r", "\r\n\r\n", "\r\n\r\n\0\r\nQUIT"]
    for p in prefixes { #expect(parseProxy(p) == .incomplete, "\(p.debugDescription)") }
    // v2: header without its addresses or TLVs
    let full = v2Header(family: 0x11, payload: v4Payload + tlv(0x02, bytes("example.com")))
    for k in 0..<full.count { #expect(parseProxy(full[..<k]) == .incomplete, "v2 prefix \(k)") }
    // a v2 header announcing 65535 bytes stays incomplete until they are there
    let big = v2Header(family: 0x11, payload: v4Payload + tlv(0xE0, [UInt8](repeating: 7, count: 65535 - 12 - 3)))
    #expect(big.count == 16 + 65535)
    #expect(parseProxy(big[..<(big.count - 1)]) == .incomplete)
    if case .complete(let h) = parseProxy(big) { #expect(h.length == big.count) } else { Issue.record("large v2 header refused") }
}

@Test func proxyV2DecidesAtTheHeaderBytes() {
    // the version, command and family are judged as soon as their byte arrives
    #expect(isProxyFailure(parseProxy(v2Sig + [0x31])))
    #expect(isProxyFailure(parseProxy(v2Sig + [0x22])))
    #expect(isProxyFailure(parseProxy(v2Sig + [0x21, 0x12])))
    #expect(parseProxy(v2Sig + [0x21, 0x11]) == .incomplete)
    #expect(parseProxy(v2Sig + [0x21, 0x11, 0x00]) == .incomplete)
    // a length too short for the family fails before the payload arrives
    #expect(isProxyFailure(parseProxy(v2Sig + [0x21, 0x11, 0x00, 0x04])))
    #expect(parseProxy(v2Sig + [0x21, 0x11, 0x00, 0x0C]) == .incomplete)
}

@Test func proxyV2UnixPathsStopAtNUL() {
    var payload = unixPayload("/a", "")
    payload[5] = 0x41  // a byte after the NUL is ignored
    let h = v2Header(family: 0x31, payload: payload)
    #expect(parseProxy(h) == .complete(ProxyHeader(source: .unix(bytes("/a")), destination: .unix([]), length: h.count)))
    // a 108-byte path without NUL
    let long = String(repeating: "p", count: 108)
    let h2 = v2Header(family: 0x31, payload: Array(long.utf8) + Array(long.utf8))
    #expect(parseProxy(h2) == .complete(ProxyHeader(source: .unix(bytes(long)), destination: .unix(bytes(long)), length: h2.count)))
}

// MARK: address formatting

@Test(arguments: [
    ("203.0.113.7", "203.0.113.7"), ("0.0.0.0", "0.0.0.0"), ("255.255.255.255", "255.255.255.255"),
    ("2001:db8::1", "2001:db8::1"), ("2001:0DB8:0000:0000:0000:0000:0000:0001", "2001:db8::1"), ("::", "::"), ("::1", "::1"),
    ("1::", "1::"), ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"), ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
    ("1:0:0:2:0:0:3:4", "1::2:0:0:3:4"), ("0:0:1:0:0:0:1:0", "0:0:1::1:0"), ("2001:db8::", "2001:db8::"),
    ("::ffff:192.0.2.1", "::ffff:192.0.2.1"), ("::ffff:c000:0201", "::ffff:192.0.2.1"), ("::192.0.2.1", "::c000:201"),
    ("fe80::abcd:ef01", "fe80::abcd:ef01"), ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"), ("1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:0"),
    ("::2:3:4:5:6:7:8", "0:2:3:4:5:6:7:8"), ("1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"), ("ABCD:EF::", "abcd:ef::"),
])
func formatsAddresses(_ pair: (String, String)) {
    guard let a = parseIPAddress(pair.0) else { Issue.record("could not parse \(pair.0)"); return }
    #expect(formatIPAddress(a) == pair.1)
    // the output parses back to the same bytes
    #expect(parseIPAddress(formatIPAddress(a)) == a)
}

@Test(arguments: ["", ":", ":::", "1:2:3:4:5:6:7:8:9", "1::2::3", "12345::", "g::", "1:2:3:4:5:6:7", ":1::", "1::2:", "::1.2.3",
                  "1.2.3.4::", "::1.2.3.4:5", "1:2:3:4:5:6:7:1.2.3.4", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.04", "1.2.3.4 ",
                  " ::1", "[::1]", "::1%eth0", "1.2.3.-4", "0x1.2.3.4", "1:2:3:4:5:6:7:8::", "::ffff:1.2.3.256", "1..2.3"])
func refusesBadAddresses(_ s: String) {
    #expect(parseIPAddress(s) == nil)
}

@Test func formatsOtherAddresses() {
    #expect(formatIPAddress(.unix(bytes("/run/x.sock"))) == "")
    #expect(formatIPAddress(.ipv4([1, 2, 3])) == "")
    #expect(formatIPAddress(.ipv6([1, 2, 3])) == "")
}

// MARK: fuzzing

@Test func fuzzProxyParser() {
    var rng = SplitMix64(state: 0x9_0C5E_1D2A)
    let seeds: [[UInt8]] = proxyValidCases.map { $0.header + httpRequest } + proxyInvalidCases.map(\.bytes)
    var completes = 0
    var failures = 0
    for iteration in 0..<15_000 {
        let b = mutate(seeds.randomElement(using: &rng)!, &rng)
        let whole = parseProxy(b)
        switch whole {
        case .complete(let h):
            completes += 1
            #expect(h.length >= 15 && h.length <= b.count, "iteration \(iteration)")
            #expect(h.isLocal == (h.source == nil), "iteration \(iteration)")
            if case .ipv4(let a)? = h.source { #expect(a.count == 4) }
            if case .ipv6(let a)? = h.source { #expect(a.count == 16) }
            if let p = h.sourcePort { #expect(p >= 0 && p <= 65535) }
            #expect(parseProxy(b[..<h.length]) == whole, "iteration \(iteration)")
            #expect(parseProxy(b[..<(h.length - 1)]) == .incomplete, "iteration \(iteration)")
            if b[0] == 0x50 { #expect(h.length <= 107) }
        case .failure(let reason):
            failures += 1
            #expect(!reason.isEmpty && !reason.contains("\n"))
        case .incomplete:
            break
        }
        for _ in 0..<3 where b.count > 1 {
            let k = Int.random(in: 0..<b.count, using: &rng)
            let r = parseProxy(b[..<k])
            if r != .incomplete { #expect(r == whole, "iteration \(iteration) prefix \(k)") }
        }
        if iteration % 60 == 0 && b.count < 600 {
            #expect(firstProxyDecision(b).result == whole, "iteration \(iteration)")
        }
    }
    #expect(completes > 1000)
    #expect(failures > 1000)
}
