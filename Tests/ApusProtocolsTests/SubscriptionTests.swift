import Testing
@testable import ApusProtocols

// MARK: Subscription packets

func parseSubscription(_ b: [UInt8]) -> Result<SubscriptionPacket, SubscriptionPacketError> {
    let exact = Array(b)
    return exact.withUnsafeBytes { SubscriptionPacket.parse($0) }
}

/// A datagram built var by var, as uWSGI's uwsgi_buffer_append_keyval writes them.
func datagram(_ vars: [(String, String)], modifier1: UInt8 = 224, modifier2: UInt8 = 0, datasize: Int? = nil) -> [UInt8] {
    var body: [UInt8] = []
    for (k, v) in vars {
        body += [UInt8(k.utf8.count & 0xFF), UInt8(k.utf8.count >> 8)] + Array(k.utf8)
        body += [UInt8(v.utf8.count & 0xFF), UInt8(v.utf8.count >> 8)] + Array(v.utf8)
    }
    let n = datasize ?? body.count
    return [modifier1, UInt8(n & 0xFF), UInt8((n >> 8) & 0xFF), modifier2] + body
}

let uwsgiVarsOfASubscription: [(String, String)] = [
    ("key", "example.com"), ("address", "127.0.0.1:3031"), ("modifier1", "0"), ("modifier2", "0"),
    ("cores", "4"), ("load", "0"), ("weight", "1"),
]

@Test func encodesWhatUWSGIWrites() {
    let p = SubscriptionPacket(command: .subscribe, key: bytes("example.com"), address: bytes("127.0.0.1:3031"), cores: 4)
    #expect(p.encode() == datagram(uwsgiVarsOfASubscription))
    var u = p
    u.command = .unsubscribe
    #expect(u.encode() == datagram(uwsgiVarsOfASubscription, modifier2: 1))
    #expect(parseSubscription(p.encode()) == .success(p))
    #expect(parseSubscription(u.encode()) == .success(u))
}

@Test func readsUWSGIsPacketsAndIgnoresWhatItDoesNotUse() {
    // a uWSGI 2.0 packet with notify and sni vars, and a weight
    let vars = uwsgiVarsOfASubscription.map { $0.0 == "weight" ? ("weight", "3") : $0 }
        + [("notify", "/tmp/n.sock"), ("sni_key", "k.pem"), ("unix", "1700000000")]
    let p = try? parseSubscription(datagram(vars)).get()
    #expect(p?.key == bytes("example.com"))
    #expect(p?.address == bytes("127.0.0.1:3031"))
    #expect(p?.weight == 3 && p?.cores == 4 && p?.command == .subscribe)
    // missing numbers and a weight of 0 read as uWSGI reads them
    let minimal = try? parseSubscription(datagram([("key", "k"), ("address", "/run/a.sock"), ("weight", "0")])).get()
    #expect(minimal == SubscriptionPacket(command: .subscribe, key: bytes("k"), address: bytes("/run/a.sock")))
}

@Test func refusesMalformedPackets() {
    let good = datagram(uwsgiVarsOfASubscription)
    #expect(parseSubscription([]) == .failure(.badSize))
    #expect(parseSubscription([224, 0, 0]) == .failure(.badSize))
    #expect(parseSubscription(Array(repeating: 224, count: 5000)) == .failure(.badSize))
    #expect(parseSubscription(datagram(uwsgiVarsOfASubscription, modifier1: 0)) == .failure(.notASubscription(0)))
    #expect(parseSubscription(datagram(uwsgiVarsOfASubscription, modifier2: 2)) == .failure(.badCommand(2)))
    #expect(parseSubscription(datagram(uwsgiVarsOfASubscription, datasize: good.count)) == .failure(.badDatasize))
    #expect(parseSubscription(Array(good.dropLast())) == .failure(.badDatasize))
    // a var running past the end, an empty var name
    var truncated = datagram([("key", "k"), ("address", "a:1")])
    truncated[4] = 200
    #expect(parseSubscription(truncated) == .failure(.malformedVars))
    #expect(parseSubscription(datagram([("", "x"), ("key", "k"), ("address", "a")])) == .failure(.malformedVars))
    // key and address: present, once, visible ASCII, at most 255 bytes
    #expect(parseSubscription(datagram([("address", "127.0.0.1:1")])) == .failure(.badKey))
    #expect(parseSubscription(datagram([("key", "k")])) == .failure(.badAddress))
    #expect(parseSubscription(datagram([("key", ""), ("address", "a")])) == .failure(.badKey))
    #expect(parseSubscription(datagram([("key", "a b"), ("address", "a")])) == .failure(.badKey))
    #expect(parseSubscription(datagram([("key", "k\r\nX"), ("address", "a")])) == .failure(.badKey))
    #expect(parseSubscription(datagram([("key", String(repeating: "k", count: 256)), ("address", "a")])) == .failure(.badKey))
    #expect(parseSubscription(datagram([("key", "k"), ("key", "j"), ("address", "a")])) == .failure(.badKey))
    #expect(parseSubscription(datagram([("key", "k"), ("address", "a\u{7F}")])) == .failure(.badAddress))
    // numbers: digits, in range, once
    #expect(parseSubscription(datagram([("key", "k"), ("address", "a"), ("weight", "-1")])) == .failure(.badNumber))
    #expect(parseSubscription(datagram([("key", "k"), ("address", "a"), ("modifier1", "256")])) == .failure(.badNumber))
    #expect(parseSubscription(datagram([("key", "k"), ("address", "a"), ("cores", "99999999999")])) == .failure(.badNumber))
    #expect(parseSubscription(datagram([("key", "k"), ("address", "a"), ("load", "1"), ("load", "2")])) == .failure(.badNumber))
}

/// Every prefix and every one-byte change of a good packet parses or fails without trapping,
/// and what parses encodes back to a packet that parses to the same value.
@Test func mutationsNeverTrap() {
    let good = datagram(uwsgiVarsOfASubscription)
    var inputs: [[UInt8]] = (0...good.count).map { Array(good[0..<$0]) }
    for i in good.indices {
        for v: UInt8 in [0, 1, 0x7F, 0x80, 0xFF, good[i] &+ 1] {
            var m = good
            m[i] = v
            inputs.append(m)
        }
    }
    for input in inputs {
        if case let .success(p) = parseSubscription(input) {
            #expect(parseSubscription(p.encode()) == .success(p))
        }
    }
}

@Test func nodeAddresses() {
    #expect(NodeAddress.parse(bytes("127.0.0.1:3031")) == .tcp(bytes: [127, 0, 0, 1], port: 3031))
    #expect(NodeAddress.parse(bytes(":3031")) == .tcp(bytes: [127, 0, 0, 1], port: 3031))
    #expect(NodeAddress.parse(bytes("[::1]:80")) == .tcp(bytes: Array(repeating: 0, count: 15) + [1], port: 80))
    #expect(NodeAddress.parse(bytes("/run/app.sock")) == .unix(path: "/run/app.sock"))
    for bad in ["", "host.example:80", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:", "127.0.0.1:8a", "::1:80",
                "[::1]80", "1.2.3:80", "127.0.0.1:123456"] {
        #expect(NodeAddress.parse(bytes(bad)) == nil, "\(bad)")
    }
}

// MARK: HTTP request → uwsgi packet

private func packetVars(_ request: String, contentLength: Int = 0) -> [(String, String)] {
    let b = bytes(request)
    var head = HTTPRequestHead()
    let r = b.withUnsafeBytes { HTTPRequestParser().parseHead($0, into: &head) }
    guard r == .complete else { return [] }
    let conn = ProxiedConnection(remoteAddress: bytes("10.0.0.9"), remotePort: bytes("5555"), serverPort: bytes("8080"))
    guard let packet = b.withUnsafeBytes({ uwsgiPacket($0, head, contentLength: contentLength, connection: conn) }) else { return [] }
    let (result, u) = parseUWSGI(packet)
    guard result == .complete else { return [] }
    return uwsgiVars(packet, u)
}

@Test func uwsgiPacketHasNginxsVars() {
    let vars = packetVars("POST /a%20b/c?x=1 HTTP/1.1\r\nHost: example.com:8000\r\nContent-Type: text/plain\r\nContent-Length: 3\r\nX-A: 1\r\nx-a: 2\r\nCookie: a=1\r\nCookie: b=2\r\nX_Bad: 1\r\nExpect: 100-continue\r\n\r\n", contentLength: 3)
    #expect(vars.map(\.0) == ["REQUEST_METHOD", "REQUEST_URI", "PATH_INFO", "QUERY_STRING", "SERVER_PROTOCOL", "CONTENT_TYPE",
                              "CONTENT_LENGTH", "REMOTE_ADDR", "REMOTE_PORT", "SERVER_NAME", "SERVER_PORT",
                              "HTTP_HOST", "HTTP_X_A", "HTTP_COOKIE"])
    let d = Dictionary(vars, uniquingKeysWith: { a, _ in a })
    #expect(d["PATH_INFO"] == "/a b/c" && d["REQUEST_URI"] == "/a%20b/c?x=1" && d["QUERY_STRING"] == "x=1")
    #expect(d["SERVER_NAME"] == "example.com" && d["SERVER_PORT"] == "8000" && d["CONTENT_LENGTH"] == "3")
    #expect(d["HTTP_X_A"] == "1, 2" && d["HTTP_COOKIE"] == "a=1; b=2" && d["REMOTE_ADDR"] == "10.0.0.9")
    // a de-chunked body: its length, no Transfer-Encoding; no Host: the router's port
    let chunked = Dictionary(packetVars("POST / HTTP/1.1\r\nHost: [::1]\r\nTransfer-Encoding: chunked\r\n\r\n", contentLength: 11),
                             uniquingKeysWith: { a, _ in a })
    #expect(chunked["CONTENT_LENGTH"] == "11" && chunked["HTTP_TRANSFER_ENCODING"] == nil)
    #expect(chunked["SERVER_NAME"] == "[::1]" && chunked["SERVER_PORT"] == "8080")
    let get10 = Dictionary(packetVars("GET http://h.example/p HTTP/1.0\r\n\r\n"), uniquingKeysWith: { a, _ in a })
    #expect(get10["SERVER_NAME"] == "h.example" && get10["PATH_INFO"] == "/p" && get10["SERVER_PROTOCOL"] == "HTTP/1.0")
    #expect(get10["CONTENT_LENGTH"] == "")
}

@Test func requestHostPrefersTheAbsoluteTarget() {
    let b = bytes("GET http://a.example:81/ HTTP/1.1\r\nHost: b.example\r\n\r\n")
    var head = HTTPRequestHead()
    _ = b.withUnsafeBytes { HTTPRequestParser().parseHead($0, into: &head) }
    #expect(b.withUnsafeBytes { requestHost($0, head) }.map { text(b, $0) } == "a.example:81")
}

// MARK: A node's response

private func nodeHead(_ s: String) -> NodeResponseParse {
    let b = bytes(s)
    return b.withUnsafeBytes { parseNodeResponseHead($0) }
}

@Test func parsesNodeResponses() {
    let s = "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: 5\r\nX: a\tb\r\n\r\nhello"
    guard case let .complete(h) = nodeHead(s) else { Issue.record("\(nodeHead(s))"); return }
    let b = bytes(s)
    #expect(h.status == 200 && h.contentLength == 5 && !h.chunked && text(b, h.statusText) == "200 OK")
    #expect(h.fields.map { text(b, $0.name) } == ["Content-Type", "X"])
    #expect(h.headLength == s.utf8.count - 5)
    let (out, framing, keep) = b.withUnsafeBytes { clientResponseHead($0, h, requestIsHEAD: false, requestVersionMinor: 1, keepAlive: true) }
    #expect(String(decoding: out, as: UTF8.self) == "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX: a\tb\r\nContent-Length: 5\r\n\r\n")
    #expect(framing == .contentLength(5) && keep)
    // no length: re-chunked for 1.1, until close for 1.0
    let nl = "HTTP/1.1 404 Not Found\r\n\r\n"
    guard case let .complete(h2) = nodeHead(nl) else { Issue.record("no head"); return }
    let nb = bytes(nl)
    #expect(nb.withUnsafeBytes { clientResponseHead($0, h2, requestIsHEAD: false, requestVersionMinor: 1, keepAlive: true) }.framing == .rechunk)
    let r10 = nb.withUnsafeBytes { clientResponseHead($0, h2, requestIsHEAD: false, requestVersionMinor: 0, keepAlive: true) }
    #expect(r10.framing == .untilClose && !r10.keepAlive)
    #expect(nb.withUnsafeBytes { clientResponseHead($0, h2, requestIsHEAD: true, requestVersionMinor: 1, keepAlive: true) }.framing == .none)
    let te = "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
    guard case let .complete(h3) = nodeHead(te) else { Issue.record("no head"); return }
    let c = bytes(te).withUnsafeBytes { clientResponseHead($0, h3, requestIsHEAD: false, requestVersionMinor: 1, keepAlive: true) }
    #expect(c.framing == .chunkedAsIs && !c.keepAlive)
}

@Test func refusesBadNodeResponses() {
    for bad in ["HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 200OK\r\n\r\n", "HTTP/1.1 100 Continue\r\n\r\n",
                "HTTP/1.1 200 OK\nX: y\r\n\r\n", "HTTP/1.1 200 OK\r\nX: y\rZ\r\n\r\n", "HTTP/1.1 200 OK\r\nX : y\r\n\r\n",
                "HTTP/1.1 200 OK\r\nX: a\u{1}b\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n",
                "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
                "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", " HTTP/1.1 200 OK\r\n\r\n", "HTTP/1.1 200 OK\r\n: v\r\n\r\n"] {
        guard case .failure = nodeHead(bad) else { Issue.record("accepted: \(bad.debugDescription)"); continue }
    }
    #expect(nodeHead("HTTP/1.1 200 OK\r\nX: y\r\n") == .incomplete)
    #expect(nodeHead("HTTP/1.1 200 OK\r") == .incomplete)
    let huge = "HTTP/1.1 200 OK\r\n" + String(repeating: "X: y\r\n", count: 20000)
    guard case .failure = nodeHead(huge) else { Issue.record("a head over 64 KiB was not refused"); return }
}

/// The result for a prefix is `.incomplete` or the result for the whole (as the request parser).
@Test func nodeResponsePrefixes() {
    for s in ["HTTP/1.1 200 OK\r\nContent-Length: 2\r\nA: b\r\n\r\nok", "HTTP/1.1 200 OK\nX: y\r\n\r\n",
              "HTTP/1.1 302 Found\r\nLocation: /x\r\n\r\n", "HTTP/1.1 200 OK\r\nX: y\rZ\r\n\r\n"] {
        let b = bytes(s)
        let whole = b.withUnsafeBytes { parseNodeResponseHead($0) }
        for k in 0..<b.count {
            let r = Array(b[0..<k]).withUnsafeBytes { parseNodeResponseHead($0) }
            if r != .incomplete {
                switch (r, whole) {
                case (.failure, .failure): break
                case let (.complete(x), .complete(y)): #expect(x == y, "\(s.debugDescription) at \(k)")
                default: Issue.record("\(s.debugDescription): prefix \(k) gives \(r), whole gives \(whole)")
                }
            }
        }
    }
}
