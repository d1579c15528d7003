import Testing
@testable import ApusMaster

/// The observer endpoints read only a request line from hostile bytes: bounded, strict.
@Test func observeRequestHead() {
    func parse(_ s: String, limit: Int = 8192) -> ObserveRequestHead { ObserveRequestHead.parse(Array(s.utf8), limit: limit) }
    #expect(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n") == .complete(method: "GET", path: "/metrics"))
    #expect(parse("GET /readyz?verbose=1 HTTP/1.0\r\n\r\n") == .complete(method: "GET", path: "/readyz"))
    #expect(parse("HEAD / HTTP/1.1\n\n") == .complete(method: "HEAD", path: "/"))
    #expect(parse("GET /metrics HTTP/1.1\r\nHost: x\r\n") == .incomplete)
    #expect(parse("") == .incomplete)
    #expect(parse(String(repeating: "a", count: 9000)) == .refused(status: 431, reason: "Request Header Fields Too Large"))
    #expect(parse("GET /x HTTP/1.1\r\n" + String(repeating: "X: y\r\n", count: 100), limit: 100)
            == .refused(status: 431, reason: "Request Header Fields Too Large"))
    for bad in ["GARBAGE\r\n\r\n", "get / HTTP/1.1\r\n\r\n", "GET  / HTTP/1.1\r\n\r\n", "GET x HTTP/1.1\r\n\r\n",
                "GET / HTTP/2\r\n\r\n", "GET /\u{1} HTTP/1.1\r\n\r\n", "\r\n\r\n"] {
        #expect(parse(bad) == .refused(status: 400, reason: "Bad Request"), "\(bad.debugDescription)")
    }
    // Random bytes never crash it, and give an answer or ask for more.
    var g = SystemRandomNumberGenerator()
    for _ in 0..<2000 {
        let bytes = (0..<Int.random(in: 0..<64, using: &g)).map { _ in [10, 13, 32, 47, 71, 0xff, 65].randomElement(using: &g)! } as [UInt8]
        _ = ObserveRequestHead.parse(bytes, limit: 32)
    }
}

@Test func observeResponseIsClosedAndSized() {
    let out = String(decoding: ObserveRequestHead.response(.text(503, "not ready\n"), includeBody: true), as: UTF8.self)
    #expect(out.hasPrefix("HTTP/1.1 503 Service Unavailable\r\n"))
    #expect(out.contains("Content-Length: 10\r\n"))
    #expect(out.contains("Connection: close\r\n"))
    #expect(out.hasSuffix("\r\n\r\nnot ready\n"))
    let head = String(decoding: ObserveRequestHead.response(.text(200, "ok\n"), includeBody: false), as: UTF8.self)
    #expect(head.hasSuffix("Content-Length: 3\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n"))
}

@Test func masterCountersCountByKindOutcomeAndSlot() {
    var c = MasterCounters()
    c.reloadEnded(.chain, .done)
    c.reloadEnded(.chain, .done)
    c.reloadEnded(.graceful, .failed)
    c.harakiri(slot: 2)
    c.respawn(slot: 2)
    c.respawn(slot: 0)
    #expect(c.reloads["chain"]?[.done] == 2)
    #expect(c.reloads["graceful"]?[.failed] == 1)
    #expect(c.reloads(.done) == 2 && c.reloads(.failed) == 1)
    #expect(c.harakiri == 1 && c.harakiriBySlot[2] == 1)
    #expect(c.respawns == 2 && c.respawnsBySlot[0] == 1 && c.respawnsBySlot[2] == 1)
}
