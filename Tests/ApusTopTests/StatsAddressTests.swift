import Testing
@testable import ApusTop

@Test func addresses() {
    #expect(StatsAddress("127.0.0.1:9191") == .tcp(host: "127.0.0.1", port: 9191))
    #expect(StatsAddress(":9191") == .tcp(host: "127.0.0.1", port: 9191))
    #expect(StatsAddress("localhost:1") == .tcp(host: "localhost", port: 1))
    #expect(StatsAddress("[::1]:9191") == .tcp(host: "::1", port: 9191))
    #expect(StatsAddress("unix:/run/stats.sock") == .unix(path: "/run/stats.sock"))
    #expect(StatsAddress("unix:@abstract") == .unix(path: "@abstract"))
    #expect(StatsAddress("/run/stats.sock") == .unix(path: "/run/stats.sock"))
    #expect(StatsAddress("./stats.sock") == .unix(path: "./stats.sock"))
    #expect(StatsAddress("http://127.0.0.1:9191/") == .http(host: "127.0.0.1", port: 9191, path: "/"))
    #expect(StatsAddress("http://127.0.0.1:9191") == .http(host: "127.0.0.1", port: 9191, path: "/"))
    #expect(StatsAddress("http://[::1]:9191/stats?x") == .http(host: "::1", port: 9191, path: "/stats?x"))
    #expect(StatsAddress("http://stats.local/") == .http(host: "stats.local", port: 80, path: "/"))
    #expect(StatsAddress("http://:9191/") == .http(host: "127.0.0.1", port: 9191, path: "/"))
}

@Test func notAddresses() {
    for text in ["", "9191", "host", "host:", "host:0", "host:65536", "host:-1", "host:1x", "::1:80", "[::1]",
                 "[::1]x80", "[::1:80", "unix:", "a b:1", "http://", "http://a:b/", "http://u@h:1/", "host: 80"] {
        #expect(StatsAddress(text) == nil, "\(text.debugDescription)")
    }
}

@Test func addressText() {
    #expect(StatsAddress(":9191")!.description == "127.0.0.1:9191")
    #expect(StatsAddress("[::1]:1")!.description == "[::1]:1")
    #expect(StatsAddress("/s")!.description == "unix:/s")
    #expect(StatsAddress("http://[::1]:2/x")!.description == "http://[::1]:2/x")
}

private func body(_ text: String) -> String? {
    switch StatsClient.httpBody(Array(text.utf8)) {
    case let .success(b): return String(decoding: b, as: UTF8.self)
    case .failure: return nil
    }
}

@Test func httpBodies() {
    #expect(body("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}xx") == "{}")
    #expect(body("HTTP/1.0 200 OK\r\n\r\n{\"a\":1}") == "{\"a\":1}")
    #expect(body("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n3;x=y\r\n[1]\r\n0\r\n\r\n") == "{}[1]")
    #expect(body("HTTP/1.1 200 OK\r\ncontent-length:  3 \r\n\r\n[1]") == "[1]")
}

@Test func httpFailures() {
    func reason(_ text: String) -> String? {
        if case let .failure(f) = StatsClient.httpBody(Array(text.utf8)) { return f.description }
        return nil
    }
    #expect(reason("HTTP/1.1 404 Not Found\r\n\r\n") == "HTTP status 404 Not Found")
    #expect(reason("HTTP/1.1 200 OK\r\n") == "incomplete HTTP response")
    #expect(reason("{\"workers\": []}\r\n\r\n") == "not an HTTP response")
    #expect(reason("HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\n{}") == "HTTP body shorter than its Content-Length")
    #expect(reason("HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n") == "bad Content-Length")
    #expect(reason("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n") == "bad chunk size")
    #expect(reason("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n{}") == "chunked body cut short")
    #expect(reason("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFF\r\n") == "bad chunk size")
}

/// Found by the `stats` fuzz target: a combining mark after "unix:" made "unix:" no prefix
/// (Characters, not bytes), so an address did not parse back to itself.
@Test func combiningMarksDoNotMoveTheSplit() {
    let path = "\u{59F}/x"
    #expect(StatsAddress(path) == .unix(path: path))
    #expect(StatsAddress(StatsAddress(path)!.description) == .unix(path: path))
    #expect(StatsAddress("unix:\u{301}") == .unix(path: "\u{301}"))
    #expect(StatsAddress("h\u{301}:80") == nil)
    #expect(StatsAddress("[::1]\u{301}:80") == nil)
    #expect(StatsAddress("/a\u{0}b") == nil)
}
