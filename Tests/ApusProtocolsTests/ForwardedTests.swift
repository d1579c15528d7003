import Testing
@testable import ApusProtocols

func trusted(_ spec: String) -> TrustedProxies {
    do { return try TrustedProxies(parsing: spec) } catch {
        Issue.record("spec \(spec) refused: \(error)")
        return .none
    }
}

// MARK: trusted proxies

struct TrustCase: Sendable, CustomTestStringConvertible {
    var spec: String
    var yes: [String]
    var no: [String]
    var testDescription: String { spec }
}

let trustCases: [TrustCase] = [
    TrustCase(spec: "127.0.0.1,::1", yes: ["127.0.0.1", "::1", "::ffff:127.0.0.1", "0:0:0:0:0:0:0:1"],
              no: ["127.0.0.2", "", "localhost", "::2", "10.0.0.1", "::ffff:127.0.0.2", "127.0.0.1 ", "junk"]),
    TrustCase(spec: "10.0.0.0/8", yes: ["10.0.0.0", "10.255.255.255", "10.1.2.3", "::ffff:10.1.2.3"],
              no: ["11.0.0.0", "9.255.255.255", "::a01:203", "", "::1", "10.1.2.3%eth0"]),
    TrustCase(spec: "192.168.1.0/24, 172.16.0.0/12", yes: ["192.168.1.77", "172.16.0.1", "172.31.255.255"],
              no: ["192.168.2.1", "172.32.0.0", "172.15.255.255"]),
    TrustCase(spec: "203.0.113.7/32", yes: ["203.0.113.7"], no: ["203.0.113.8", "203.0.113.6"]),
    TrustCase(spec: "0.0.0.0/0", yes: ["1.2.3.4", "255.255.255.255", "0.0.0.0", "::ffff:8.8.8.8"], no: ["::1", "2001:db8::1", ""]),
    TrustCase(spec: "::/0", yes: ["::1", "2001:db8::1", "fe80::1"], no: ["1.2.3.4", "::ffff:1.2.3.4", ""]),
    TrustCase(spec: "fd00::/8", yes: ["fd00::1", "fdff:ffff::1", "FD12:3456::1"], no: ["fc00::1", "fe00::1", "::1"]),
    TrustCase(spec: "2001:db8::/32", yes: ["2001:db8::", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"], no: ["2001:db9::", "2001:db7:ffff::1"]),
    TrustCase(spec: "2001:db8::1/128", yes: ["2001:db8::1", "2001:DB8:0:0::1"], no: ["2001:db8::2"]),
    TrustCase(spec: "fe80::/10", yes: ["fe80::1", "fe80::1%eth0", "febf::1"], no: ["fec0::1", "fec0::1%eth0"]),
    TrustCase(spec: "::ffff:10.0.0.0/104", yes: ["10.9.8.7", "::ffff:10.9.8.7"], no: ["11.0.0.1"]),
    TrustCase(spec: "::ffff:192.0.2.1", yes: ["192.0.2.1"], no: ["192.0.2.2"]),
    TrustCase(spec: "*", yes: ["1.2.3.4", "::1", "", "anything at all"], no: []),
    TrustCase(spec: "unix", yes: [""], no: ["127.0.0.1", "::1"]),
    TrustCase(spec: " UNIX , 127.0.0.1\t", yes: ["", "127.0.0.1"], no: ["127.0.0.2"]),
    TrustCase(spec: "", yes: [], no: ["127.0.0.1", "", "::1"]),
    TrustCase(spec: "  ", yes: [], no: ["127.0.0.1", ""]),
]

@Test(arguments: trustCases)
func trustedProxyMatching(_ c: TrustCase) {
    let t = trusted(c.spec)
    for a in c.yes { #expect(t.trusts(a), "\(c.spec) should trust \(a.debugDescription)") }
    for a in c.no { #expect(!t.trusts(a), "\(c.spec) should not trust \(a.debugDescription)") }
}

@Test func defaultTrustedProxies() {
    #expect(TrustedProxies.default == trusted("127.0.0.1,::1"))
    #expect(TrustedProxies.default.trusts("127.0.0.1"))
    #expect(TrustedProxies.default.trusts("::1"))
    #expect(TrustedProxies.default.trusts("::ffff:127.0.0.1"))
    #expect(!TrustedProxies.default.trusts(""))
    #expect(!TrustedProxies.default.trusts("192.0.2.1"))
    #expect(!TrustedProxies.none.trusts("127.0.0.1"))
}

@Test(arguments: [
    ("10.0.0.1/8", "10.0.0.1/8", "host bits set (use 10.0.0.0/8)"),
    ("10.0.0.0/33", "10.0.0.0/33", "prefix length over 32"),
    ("::/129", "::/129", "prefix length over 128"),
    ("fd00::1/8", "fd00::1/8", "host bits set (use fd00::/8)"),
    ("10.0.0.0/", "10.0.0.0/", "invalid prefix length"),
    ("10.0.0.0/x", "10.0.0.0/x", "invalid prefix length"),
    ("10.0.0.0/-1", "10.0.0.0/-1", "invalid prefix length"),
    ("10.0.0.0/8/8", "10.0.0.0/8/8", "invalid prefix length"),
    ("127.0.0.1, localhost", "localhost", "not a valid IP address, network, \"*\" or \"unix\""),
    ("1.2.3", "1.2.3", "not a valid IP address, network, \"*\" or \"unix\""),
    ("01.2.3.4", "01.2.3.4", "not a valid IP address, network, \"*\" or \"unix\""),
    ("1.2.3.4,,5.6.7.8", "", "empty item"),
    ("1.2.3.4,", "", "empty item"),
    ("[::1]", "[::1]", "not a valid IPv6 address or network"),
    ("fe80::1%eth0", "fe80::1%eth0", "not a valid IPv6 address or network"),
    ("1::2::3", "1::2::3", "not a valid IPv6 address or network"),
    ("**", "**", "not a valid IP address, network, \"*\" or \"unix\""),
    ("unix:/run/x", "unix:/run/x", "not a valid IPv6 address or network"),
])
func invalidTrustSpecs(_ c: (String, String, String)) {
    do {
        _ = try TrustedProxies(parsing: c.0)
        Issue.record("\(c.0) accepted")
    } catch {
        #expect(error.item == c.1)
        #expect(error.reason == c.2)
        #expect(error.description.contains("\"\(c.1)\""))
        #expect(!error.description.contains("\n"))
    }
}

// MARK: forwarded headers

struct ForwardedCase: Sendable, CustomTestStringConvertible {
    var name: String
    var input: ForwardedInput
    var trust: String = "127.0.0.1,::1"
    var expected: ForwardedResult
    var testDescription: String { name }
}

let lb = "127.0.0.1"  // the trusted proxy in most cases

let forwardedCases: [ForwardedCase] = [
    // untrusted peers can set nothing
    ForwardedCase(name: "untrusted peer with X-Forwarded-*",
                  input: ForwardedInput(peer: "198.51.100.9", xForwardedFor: ["1.1.1.1"], xForwardedProto: "https", xForwardedHost: "evil.example", xForwardedPort: "443"),
                  expected: ForwardedResult(remoteAddr: "198.51.100.9")),
    ForwardedCase(name: "untrusted peer with Forwarded",
                  input: ForwardedInput(peer: "198.51.100.9", forwarded: ["for=1.1.1.1;proto=https;host=evil.example"]),
                  expected: ForwardedResult(remoteAddr: "198.51.100.9")),
    ForwardedCase(name: "untrusted unix peer", input: ForwardedInput(peer: "", xForwardedFor: ["1.1.1.1"]), expected: ForwardedResult(remoteAddr: "")),
    ForwardedCase(name: "trusted unix peer", input: ForwardedInput(peer: "", xForwardedFor: ["203.0.113.7"], xForwardedProto: "https"), trust: "unix",
                  expected: ForwardedResult(remoteAddr: "203.0.113.7", scheme: "https")),
    ForwardedCase(name: "trusted peer, no headers", input: ForwardedInput(peer: lb), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "mapped loopback peer is trusted", input: ForwardedInput(peer: "::ffff:127.0.0.1", xForwardedFor: ["203.0.113.7"]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7")),

    // X-Forwarded-For
    ForwardedCase(name: "XFF one hop", input: ForwardedInput(peer: lb, xForwardedFor: ["203.0.113.7"]), expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "XFF client-supplied hop before the real one",
                  input: ForwardedInput(peer: lb, xForwardedFor: ["6.6.6.6, 203.0.113.7"]), expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "XFF client spoofs a trusted address",
                  input: ForwardedInput(peer: lb, xForwardedFor: ["127.0.0.1, 203.0.113.7"]), expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "XFF chain of trusted proxies",
                  input: ForwardedInput(peer: lb, xForwardedFor: ["6.6.6.6, 198.51.100.1, 10.0.0.5, 10.1.1.1"]), trust: "127.0.0.1,10.0.0.0/8",
                  expected: ForwardedResult(remoteAddr: "198.51.100.1")),
    ForwardedCase(name: "XFF every hop trusted: the left-most",
                  input: ForwardedInput(peer: lb, xForwardedFor: ["10.0.0.1, 10.0.0.2"]), trust: "127.0.0.1,10.0.0.0/8",
                  expected: ForwardedResult(remoteAddr: "10.0.0.1")),
    ForwardedCase(name: "XFF several fields joined",
                  input: ForwardedInput(peer: lb, xForwardedFor: ["6.6.6.6", "198.51.100.1", "10.0.0.5"]), trust: "127.0.0.1,10.0.0.0/8",
                  expected: ForwardedResult(remoteAddr: "198.51.100.1")),
    ForwardedCase(name: "XFF junk right-most: the peer", input: ForwardedInput(peer: lb, xForwardedFor: ["203.0.113.7, junk"]), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "XFF junk left of the client is never reached", input: ForwardedInput(peer: lb, xForwardedFor: ["junk, <script>, 203.0.113.7"]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "XFF junk behind a trusted hop: the last verified hop",
                  input: ForwardedInput(peer: lb, xForwardedFor: ["unknown, 10.0.0.5"]), trust: "127.0.0.1,10.0.0.0/8",
                  expected: ForwardedResult(remoteAddr: "10.0.0.5")),
    ForwardedCase(name: "XFF empty item: the peer", input: ForwardedInput(peer: lb, xForwardedFor: ["203.0.113.7,"]), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "XFF blank field ignored", input: ForwardedInput(peer: lb, xForwardedFor: ["203.0.113.7", "  "]), expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "XFF IPv6 normalised", input: ForwardedInput(peer: lb, xForwardedFor: ["2001:DB8:0:0::1"]), expected: ForwardedResult(remoteAddr: "2001:db8::1")),
    ForwardedCase(name: "XFF IPv4 with port", input: ForwardedInput(peer: lb, xForwardedFor: ["203.0.113.7:4711"]), expected: ForwardedResult(remoteAddr: "203.0.113.7", remotePort: "4711")),
    ForwardedCase(name: "XFF bracketed IPv6 with port", input: ForwardedInput(peer: lb, xForwardedFor: ["[2001:db8::7]:443"]), expected: ForwardedResult(remoteAddr: "2001:db8::7", remotePort: "443")),
    ForwardedCase(name: "XFF bracketed IPv6", input: ForwardedInput(peer: lb, xForwardedFor: ["[2001:db8::7]"]), expected: ForwardedResult(remoteAddr: "2001:db8::7")),
    ForwardedCase(name: "XFF bad port: the peer", input: ForwardedInput(peer: lb, xForwardedFor: ["203.0.113.7:99999"]), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "XFF address with leading zeros: the peer", input: ForwardedInput(peer: lb, xForwardedFor: ["203.000.113.7"]), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "XFF injected CRLF: the peer", input: ForwardedInput(peer: lb, xForwardedFor: ["203.0.113.7\r\nX-Evil: 1"]), expected: ForwardedResult(remoteAddr: lb)),

    // X-Forwarded-Proto / Host / Port
    ForwardedCase(name: "XFP https", input: ForwardedInput(peer: lb, xForwardedProto: "https"), expected: ForwardedResult(remoteAddr: lb, scheme: "https")),
    ForwardedCase(name: "XFP upper case", input: ForwardedInput(peer: lb, xForwardedProto: " HTTPS "), expected: ForwardedResult(remoteAddr: lb, scheme: "https")),
    ForwardedCase(name: "XFP http", input: ForwardedInput(peer: lb, xForwardedProto: "http"), expected: ForwardedResult(remoteAddr: lb, scheme: "http")),
    ForwardedCase(name: "XFP list: right-most", input: ForwardedInput(peer: lb, xForwardedProto: "http, https"), expected: ForwardedResult(remoteAddr: lb, scheme: "https")),
    ForwardedCase(name: "XFP list: right-most http", input: ForwardedInput(peer: lb, xForwardedProto: "https,http"), expected: ForwardedResult(remoteAddr: lb, scheme: "http")),
    ForwardedCase(name: "XFP other scheme ignored", input: ForwardedInput(peer: lb, xForwardedProto: "wss"), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "XFP junk ignored", input: ForwardedInput(peer: lb, xForwardedProto: "https; DROP TABLE"), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "XFH", input: ForwardedInput(peer: lb, xForwardedHost: "www.example.com"), expected: ForwardedResult(remoteAddr: lb, host: "www.example.com")),
    ForwardedCase(name: "XFH with port", input: ForwardedInput(peer: lb, xForwardedHost: "www.example.com:8443"), expected: ForwardedResult(remoteAddr: lb, host: "www.example.com:8443")),
    ForwardedCase(name: "XFH IPv6 literal", input: ForwardedInput(peer: lb, xForwardedHost: "[2001:db8::1]:8080"), expected: ForwardedResult(remoteAddr: lb, host: "[2001:db8::1]:8080")),
    ForwardedCase(name: "XFH list: right-most", input: ForwardedInput(peer: lb, xForwardedHost: "evil.example, www.example.com"), expected: ForwardedResult(remoteAddr: lb, host: "www.example.com")),
    ForwardedCase(name: "XFH with a path ignored", input: ForwardedInput(peer: lb, xForwardedHost: "evil.example/x"), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "XFH with a space ignored", input: ForwardedInput(peer: lb, xForwardedHost: "a b"), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "XFH with userinfo ignored", input: ForwardedInput(peer: lb, xForwardedHost: "user@evil.example"), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "XFH with a quote ignored", input: ForwardedInput(peer: lb, xForwardedHost: "a\"b"), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "XFPort", input: ForwardedInput(peer: lb, xForwardedPort: "443"), expected: ForwardedResult(remoteAddr: lb, port: "443")),
    ForwardedCase(name: "XFPort list: right-most", input: ForwardedInput(peer: lb, xForwardedPort: "80, 8443"), expected: ForwardedResult(remoteAddr: lb, port: "8443")),
    ForwardedCase(name: "XFPort leading zeros", input: ForwardedInput(peer: lb, xForwardedPort: "0443"), expected: ForwardedResult(remoteAddr: lb, port: "443")),
    ForwardedCase(name: "XFPort not digits", input: ForwardedInput(peer: lb, xForwardedPort: "443a"), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "XFPort too large", input: ForwardedInput(peer: lb, xForwardedPort: "65536"), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "XFPort negative", input: ForwardedInput(peer: lb, xForwardedPort: "-1"), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "all X-Forwarded-* together",
                  input: ForwardedInput(peer: lb, xForwardedFor: ["203.0.113.7"], xForwardedProto: "https", xForwardedHost: "www.example.com", xForwardedPort: "443"),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7", scheme: "https", host: "www.example.com", port: "443")),

    // Forwarded (RFC 7239)
    ForwardedCase(name: "RFC 7239 example", input: ForwardedInput(peer: lb, forwarded: ["for=192.0.2.60;proto=http;by=203.0.113.43"]),
                  expected: ForwardedResult(remoteAddr: "192.0.2.60", scheme: "http")),
    ForwardedCase(name: "Forwarded wins over X-Forwarded-*",
                  input: ForwardedInput(peer: lb, xForwardedFor: ["6.6.6.6"], xForwardedProto: "http", xForwardedHost: "x.example", xForwardedPort: "81",
                                        forwarded: ["for=203.0.113.7;proto=https;host=www.example.com"]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7", scheme: "https", host: "www.example.com")),
    ForwardedCase(name: "blank Forwarded does not win", input: ForwardedInput(peer: lb, xForwardedFor: ["203.0.113.7"], forwarded: [" "]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "quoted IPv6 with port", input: ForwardedInput(peer: lb, forwarded: ["For=\"[2001:db8:cafe::17]:4711\""]),
                  expected: ForwardedResult(remoteAddr: "2001:db8:cafe::17", remotePort: "4711")),
    ForwardedCase(name: "quoted IPv4 with port", input: ForwardedInput(peer: lb, forwarded: ["for=\"203.0.113.7:8080\""]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7", remotePort: "8080")),
    ForwardedCase(name: "obfuscated port", input: ForwardedInput(peer: lb, forwarded: ["for=\"[2001:db8::1]:_p1\""]),
                  expected: ForwardedResult(remoteAddr: "2001:db8::1")),
    ForwardedCase(name: "obfuscated node", input: ForwardedInput(peer: lb, forwarded: ["for=_hidden, for=_SEVKISEK"]),
                  expected: ForwardedResult(remoteAddr: "_SEVKISEK")),
    ForwardedCase(name: "unknown node", input: ForwardedInput(peer: lb, forwarded: ["for=unknown;proto=https"]),
                  expected: ForwardedResult(remoteAddr: "unknown", scheme: "https")),
    ForwardedCase(name: "obfuscated node behind a trusted proxy", input: ForwardedInput(peer: lb, forwarded: ["for=_hidden, for=10.0.0.1"]), trust: "127.0.0.1,10.0.0.0/8",
                  expected: ForwardedResult(remoteAddr: "_hidden")),
    ForwardedCase(name: "obfuscated node is never trusted, even under *", input: ForwardedInput(peer: lb, forwarded: ["for=1.2.3.4, for=_proxy1"]), trust: "*",
                  expected: ForwardedResult(remoteAddr: "_proxy1")),
    ForwardedCase(name: "unknown left of the client is not reached", input: ForwardedInput(peer: lb, forwarded: ["for=unknown, for=203.0.113.7"]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "client-sent Forwarded before the proxy's",
                  input: ForwardedInput(peer: lb, forwarded: ["for=1.1.1.1;proto=http;host=evil.example", "for=203.0.113.7;proto=https;host=www.example.com"]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7", scheme: "https", host: "www.example.com")),
    ForwardedCase(name: "client spoofs a trusted hop",
                  input: ForwardedInput(peer: lb, forwarded: ["for=127.0.0.1;proto=http, for=203.0.113.7"]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "proto and host fall back to the right",
                  input: ForwardedInput(peer: lb, forwarded: ["for=203.0.113.7;host=a.example, for=10.0.0.1;proto=https;host=b.example"]), trust: "127.0.0.1,10.0.0.0/8",
                  expected: ForwardedResult(remoteAddr: "203.0.113.7", scheme: "https", host: "a.example")),
    ForwardedCase(name: "proto and host never from the left of the client",
                  input: ForwardedInput(peer: lb, forwarded: ["for=6.6.6.6;proto=https;host=evil.example, for=203.0.113.7"]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "element without for: the peer, but its proto and host",
                  input: ForwardedInput(peer: lb, forwarded: ["for=6.6.6.6", "proto=https;host=www.example.com"]),
                  expected: ForwardedResult(remoteAddr: lb, scheme: "https", host: "www.example.com")),
    ForwardedCase(name: "by only", input: ForwardedInput(peer: lb, forwarded: ["by=10.0.0.1"]), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "injected quote in for", input: ForwardedInput(peer: lb, forwarded: ["for=\"1.2.3.4\\\";proto=https\""]),
                  expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "injected semicolon in a quoted host", input: ForwardedInput(peer: lb, forwarded: ["for=203.0.113.7;host=\"evil;proto=https\""]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "injected comma in a quoted host", input: ForwardedInput(peer: lb, forwarded: ["for=203.0.113.7;host=\"a, for=127.0.0.1\""]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "quoted comma does not split elements", input: ForwardedInput(peer: lb, forwarded: ["for=6.6.6.6;x=\"a,for=127.0.0.1\", for=203.0.113.7"]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "parameter given twice: malformed", input: ForwardedInput(peer: lb, forwarded: ["for=203.0.113.7;for=127.0.0.1"]),
                  expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "proto given twice: malformed", input: ForwardedInput(peer: lb, forwarded: ["for=203.0.113.7;proto=http;PROTO=https"]),
                  expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "unterminated quote does not swallow the next field",
                  input: ForwardedInput(peer: lb, forwarded: ["for=\"1.1.1.1", "for=203.0.113.7"]), expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "unterminated quote right-most: the peer", input: ForwardedInput(peer: lb, forwarded: ["for=203.0.113.7", "for=\"1.1.1.1"]),
                  expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "malformed behind a trusted hop: the last verified hop",
                  input: ForwardedInput(peer: lb, forwarded: ["for=garbage!;proto=https, for=10.0.0.9;proto=http"]), trust: "127.0.0.1,10.0.0.0/8",
                  expected: ForwardedResult(remoteAddr: "10.0.0.9", scheme: "http")),
    ForwardedCase(name: "junk", input: ForwardedInput(peer: lb, forwarded: ["garbage"]), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "only separators", input: ForwardedInput(peer: lb, forwarded: [",,, ;;"]), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "empty value", input: ForwardedInput(peer: lb, forwarded: ["for="]), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "no name", input: ForwardedInput(peer: lb, forwarded: ["=1.2.3.4"]), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "control character in a quoted value", input: ForwardedInput(peer: lb, forwarded: ["for=\"1.2.3.4\u{0}\""]), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "host name as for: malformed", input: ForwardedInput(peer: lb, forwarded: ["for=evil.example"]), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "bad IPv4 in for", input: ForwardedInput(peer: lb, forwarded: ["for=1.2.3.999"]), expected: ForwardedResult(remoteAddr: lb)),
    ForwardedCase(name: "empty list elements skipped", input: ForwardedInput(peer: lb, forwarded: [", for=203.0.113.7 ,,"]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "whitespace around pairs tolerated", input: ForwardedInput(peer: lb, forwarded: ["for=203.0.113.7 ; proto=https"]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7", scheme: "https")),
    ForwardedCase(name: "unquoted IPv4 with port tolerated", input: ForwardedInput(peer: lb, forwarded: ["for=203.0.113.7:8080"]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7", remotePort: "8080")),
    ForwardedCase(name: "unquoted bracketed IPv6 tolerated", input: ForwardedInput(peer: lb, forwarded: ["for=[2001:db8::1]"]),
                  expected: ForwardedResult(remoteAddr: "2001:db8::1")),
    ForwardedCase(name: "quoted escapes decoded", input: ForwardedInput(peer: lb, forwarded: ["for=\"\\2\\0\\3.0.113.7\";proto=\"ht\\tps\""]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7", scheme: "https")),
    ForwardedCase(name: "other proto ignored", input: ForwardedInput(peer: lb, forwarded: ["for=203.0.113.7;proto=wss"]), expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "invalid host ignored, fallback to the right",
                  input: ForwardedInput(peer: lb, forwarded: ["for=203.0.113.7;host=\"a/b\", for=10.0.0.1;host=good.example"]), trust: "127.0.0.1,10.0.0.0/8",
                  expected: ForwardedResult(remoteAddr: "203.0.113.7", host: "good.example")),
    ForwardedCase(name: "extension parameters ignored", input: ForwardedInput(peer: lb, forwarded: ["for=203.0.113.7;secret=\"x y\";ext=1"]),
                  expected: ForwardedResult(remoteAddr: "203.0.113.7")),
    ForwardedCase(name: "all hops trusted: the left-most", input: ForwardedInput(peer: lb, forwarded: ["for=10.0.0.1, for=10.0.0.2;proto=https"]), trust: "127.0.0.1,10.0.0.0/8",
                  expected: ForwardedResult(remoteAddr: "10.0.0.1", scheme: "https")),
]

@Test(arguments: forwardedCases)
func forwardedResolution(_ c: ForwardedCase) {
    #expect(resolveForwarded(c.input, trusted: trusted(c.trust)) == c.expected)
}

@Test func untrustedPeerNeverGetsAnything() {
    let inputs = forwardedCases.map(\.input)
    for var input in inputs {
        input.peer = "198.51.100.200"
        #expect(resolveForwarded(input, trusted: .default) == ForwardedResult(remoteAddr: "198.51.100.200"))
    }
}

// MARK: fuzzing

@Test func fuzzForwarded() {
    var rng = SplitMix64(state: 0xF0_8A_4D)
    let alphabet = Array("for=proto=host=by=_unknown[]:\";,\\ \t1.2.3.4::1ffhttps\u{0}\u{7F}\u{FF}é".utf8)
    let seeds = forwardedCases.flatMap { $0.input.forwarded + $0.input.xForwardedFor }.map { Array($0.utf8) }
    let t = trusted("127.0.0.1,10.0.0.0/8,2001:db8::/32")
    for iteration in 0..<8_000 {
        func randomValue() -> String {
            var b: [UInt8]
            if Bool.random(using: &rng) {
                b = mutate(seeds.randomElement(using: &rng)!, &rng)
            } else {
                b = (0..<Int.random(in: 0...40, using: &rng)).map { _ in alphabet.randomElement(using: &rng)! }
            }
            return String(decoding: b, as: UTF8.self)
        }
        let input = ForwardedInput(peer: Bool.random(using: &rng) ? "127.0.0.1" : "203.0.113.99",
                                   xForwardedFor: (0..<Int.random(in: 0...2, using: &rng)).map { _ in randomValue() },
                                   xForwardedProto: Bool.random(using: &rng) ? randomValue() : nil,
                                   xForwardedHost: Bool.random(using: &rng) ? randomValue() : nil,
                                   xForwardedPort: Bool.random(using: &rng) ? randomValue() : nil,
                                   forwarded: (0..<Int.random(in: 0...2, using: &rng)).map { _ in randomValue() })
        let r = resolveForwarded(input, trusted: t)
        if input.peer == "203.0.113.99" {
            #expect(r == ForwardedResult(remoteAddr: input.peer), "iteration \(iteration)")
            continue
        }
        #expect(r.scheme == nil || r.scheme == "http" || r.scheme == "https", "iteration \(iteration)")
        if let h = r.host { #expect(isValidHost(Array(h.utf8)), "iteration \(iteration)") }
        if let p = r.port { #expect(Int(p).map { $0 >= 0 && $0 <= 65535 } == true, "iteration \(iteration)") }
        if let p = r.remotePort { #expect(Int(p).map { $0 >= 0 && $0 <= 65535 } == true, "iteration \(iteration)") }
        // the remote address is the peer, a canonical address, or an RFC 7239 identifier
        let a = r.remoteAddr
        if let parsed = parseIPAddress(a) {
            #expect(formatIPAddress(parsed) == a, "iteration \(iteration)")
        } else {
            #expect(a == "unknown" || (a.hasPrefix("_") && a.utf8.allSatisfy { $0 < 0x80 && $0 > 0x20 }), "iteration \(iteration): \(a.debugDescription)")
        }
    }
}
