import ApusProtocols

extension WSGIApplication {
    /// Calls the app in-process with `GET path` (before the worker reports ready, for
    /// `--warmup`), on the calling thread, which holds the GIL. Returns the status code, or
    /// nil when the app failed.
    public func warmUp(path: String) -> Int? {
        let request = Array("GET \(path) HTTP/1.1\r\nHost: localhost\r\nUser-Agent: apus-warmup\r\n\r\n".utf8)
        var head = HTTPRequestHead()
        let local: [UInt8] = Array("127.0.0.1".utf8)
        return request.withUnsafeBytes { buf -> Int? in
            guard HTTPRequestParser().parseHead(buf, into: &head) == .complete else { return nil }
            return local.withUnsafeBytes { address -> Int? in
                let info = WSGIConnectionInfo(remoteAddress: address, remotePort: 0,
                                              listener: WSGIListener(serverName: "localhost", serverPort: 0), https: false)
                let sink = WarmupSink()
                makeCaller(thread: interpreter.currentThread()).call(buf, head, info, body: .empty, contentLength: nil, sink: sink)
                return sink.failed ? nil : sink.status
            }
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
