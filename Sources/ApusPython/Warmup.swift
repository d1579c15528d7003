import ApusProtocols

extension WSGIApplication {
    /// Calls the app in-process with `GET path` (before the worker reports ready, for
    /// `--warmup`). Returns the status code, or nil when the app failed. GIL held.
    public func warmUp(path: String) -> Int? {
        let request = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\nUser-Agent: apus-warmup\r\n\r\n".utf8)
        var head = HTTPRequestHead()
        return request.withUnsafeBytes { buf -> Int? in
            guard HTTPRequestParser().parseHead(buf, into: &head) == .complete else { return nil }
            let local = api.string("127.0.0.1"), port = api.string("0"), name = api.string("localhost")
            defer { api.decref(local); api.decref(port); api.decref(name) }
            let info = WSGIConnectionInfo(remoteAddr: local, remotePort: port, serverName: name, serverPort: port, https: false)
            let sink = WarmupSink()
            makeCaller().call(buf, head, info, body: .empty, contentLength: nil, sink: sink)
            return sink.failed ? nil : sink.status
        }
    }
}

/// Keeps the status of a warm-up response and drops its body.
final class WarmupSink: WSGIResponseSink {
    var status: Int?
    var failed = false
    func begin(_ head: WSGIResponseHead) { status = head.statusCode }
    func body(_ bytes: UnsafeRawBufferPointer, flush: Bool) -> Bool { true }
    func file(fd: Int32, offset: Int, count: Int) -> Bool { true }
    func end() -> Bool { true }
    func fail() { failed = true }
    func abort() { failed = true }
    func readDeferredBody() -> WSGIBody? { .empty }
}
