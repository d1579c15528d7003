#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusSys
import ApusProtocols
import ApusPython

/// Turns what the app produces into HTTP/1.1 bytes on one connection: picks the framing,
/// puts the head and the first body bytes in one write, caps the body at Content-Length,
/// and knows whether the connection can be kept. One per app thread, reused.
///
/// A response that fits in the buffer is not written here: `end()` leaves it in the
/// connection's `pendingOut`, and the loop writes it after the batch of events it is
/// handling, so a client is woken once per batch and the app runs back to back. Bytes
/// pending from an earlier pipelined response go out before anything written here.
final class ResponseWriter: WSGIResponseSink {
    var out: [UInt8] = []
    private var dateCache = HTTPDateCache()
    let sendTimeout: Double

    // Per response.
    private(set) var conn: Connection!
    private var framing = ResponseFraming.noBody
    private(set) var keepAlive = false
    private var remaining = 0          // body bytes still allowed (Content-Length framing)
    private(set) var bytesWritten = 0  // to the socket, head included
    private(set) var bodyBytes = 0
    private(set) var status = 0
    /// The app raised, or answered with an invalid status or headers (the stats' exceptions).
    private(set) var appFailed = false
    private var broken = false
    private var began = false
    /// The response headers the access log's format names (none: nothing is taken).
    var capture = ResponseHeaderCapture(names: [])
    /// Runs a wait for a slow client without the GIL (set by the app runner).
    var waiting: SocketIO.Waiting = SocketIO.justWait

    /// The app thread's core (`InFlight`), whose answer `claimAnswer` takes.
    let core: Int
    /// This response's answer was claimed from the --harakiri watchdog.
    private var claimed = false

    init(sendTimeout: Double, core: Int) {
        self.sendTimeout = sendTimeout
        self.core = core
        out.reserveCapacity(16384)
    }

    func reset(for conn: Connection) {
        self.conn = conn
        out.removeAll(keepingCapacity: true)
        framing = .noBody
        keepAlive = false
        remaining = 0
        bytesWritten = 0
        bodyBytes = 0
        status = 0
        appFailed = false
        broken = false
        began = false
        claimed = false
        if !capture.isEmpty { capture.reset() }
    }

    /// Takes the answer before anything is written to the socket, and when the app returns
    /// (`HarakiriClaim.claim`). False when the --harakiri watchdog gave up on the request
    /// first: what the app produced is dropped, nothing more goes to this connection, and
    /// it is not kept (the loop closes it). Without --harakiri, true at once.
    func claimAnswer() -> Bool {
        if claimed { return true }
        if HarakiriClaim.claim(core) {
            claimed = true
            return true
        }
        broken = true
        out.removeAll(keepingCapacity: true)
        conn.pendingOut.removeAll()
        conn.pendingSent = 0
        status = 504
        bodyBytes = 0
        return false
    }

    /// Whether the connection may serve another request after this response.
    var canKeepAlive: Bool { began && keepAlive && !broken }

    func begin(_ head: WSGIResponseHead) {
        began = true
        status = head.statusCode
        let request = conn.head
        let decision = decideResponseFraming(
            requestVersionMinor: request.versionMinor, requestKeepAlive: conn.keepAlive && !conn.closeAfterResponse,
            isHEAD: request.isHEAD, status: head.statusCode,
            appContentLength: head.contentLength, appWantsClose: head.closeRequested)
        framing = decision.framing
        keepAlive = decision.keepAlive
        if case let .contentLength(n) = framing { remaining = n }
        out.append(contentsOf: "HTTP/1.1 ".utf8)
        out.append(contentsOf: head.statusLine)
        if head.statusLine.count == 3 { out.append(UInt8(ascii: " ")) }  // empty reason phrase
        out.append(13); out.append(10)
        out.append(contentsOf: head.headerLines)
        if !capture.isEmpty { capture.take(head.headerLines) }
        if !head.hasServer { out.append(contentsOf: "Server: apus\r\n".utf8) }
        if !head.hasDate {
            dateCache.update(unixTime: Int64(time(nil)))
            out.append(contentsOf: "Date: ".utf8)
            out.append(contentsOf: dateCache.bytes)
            out.append(13); out.append(10)
        }
        switch framing {
        case .contentLength(let n):
            out.append(contentsOf: "Content-Length: ".utf8)
            appendDecimal(n, to: &out)
            out.append(13); out.append(10)
        case .chunked:
            out.append(contentsOf: "Transfer-Encoding: chunked\r\n".utf8)
        case .noBody:
            if let n = head.contentLength, request.isHEAD || head.statusCode == 304 {
                out.append(contentsOf: "Content-Length: ".utf8)
                appendDecimal(n, to: &out)
                out.append(13); out.append(10)
            }
        case .closeDelimited:
            break
        }
        if !keepAlive {
            out.append(contentsOf: "Connection: close\r\n".utf8)
        } else if request.versionMinor == 0 {
            out.append(contentsOf: "Connection: keep-alive\r\n".utf8)
        }
        out.append(13); out.append(10)
    }

    func body(_ bytes: UnsafeRawBufferPointer, flush: Bool) -> Bool {
        if broken { return false }
        var data = bytes
        switch framing {
        case .noBody:
            data = UnsafeRawBufferPointer(start: nil, count: 0)
        case .contentLength:
            // Never send more than the app declared: the surplus would be read as the
            // next response.
            if data.count > remaining { data = UnsafeRawBufferPointer(rebasing: data[0..<remaining]) }
            remaining -= data.count
        case .chunked:
            if data.count > 0 {
                appendChunkHeader(size: data.count, to: &out)
            }
        case .closeDelimited:
            break
        }
        bodyBytes += data.count
        if data.count >= 65536 {
            // Large piece: write what is pending, then the piece itself, without copying.
            if !flushOut() { return false }
            if !SocketIO.writeAll(conn.fd, data, timeout: sendTimeout, waiting: waiting) { broken = true; return false }
            bytesWritten += data.count
        } else {
            out.append(contentsOf: data)
        }
        if case .chunked = framing, data.count > 0 { out.append(13); out.append(10) }
        // Once the declared Content-Length is all here nothing more can follow: the
        // response is complete and is held for the loop like a listed one.
        var complete = false
        if case .contentLength = framing, remaining == 0 { complete = true }
        if (flush && !complete) || out.count >= 65536 { return flushOut() }
        return true
    }

    func file(fd: Int32, offset: Int, count: Int) -> Bool {
        if broken { return false }
        if case .noBody = framing { return true }
        var n = count
        if case .contentLength = framing { n = min(n, remaining); remaining -= n }
        if case .chunked = framing {
            appendChunkHeader(size: n, to: &out)
        }
        if !flushOut() { return false }
        var off = Int64(offset)
        var left = n
        while left > 0 {
            switch Sys.call({ apus_sendfile(conn.fd, fd, &off, left) }) {
            case let .done(sent) where sent > 0:
                left -= sent
                bytesWritten += sent
                bodyBytes += sent
                continue
            case .wouldBlock:
                if waiting({ SocketIO.wait(conn.fd, events: Int16(POLLOUT), timeout: sendTimeout) }) { continue }
            case .done, .failed:
                break  // the file ended early, or the peer is gone
            }
            broken = true
            return false
        }
        if case .chunked = framing { out.append(13); out.append(10) }
        return true
    }

    func end() -> Bool {
        if broken { return false }
        if case .chunked = framing { out.append(contentsOf: lastChunk) }
        if case .contentLength = framing, remaining > 0 {
            // The app sent less than it declared: the client would wait forever.
            flushOut()  // what there is goes out; the connection then closes
            broken = true
            return false
        }
        // Held for the loop, which writes it after its current batch of events.
        conn.pendingOut.append(contentsOf: out)
        out.removeAll(keepingCapacity: true)
        return true
    }

    func fail() {
        appFailed = true
        if bytesWritten == 0 && !broken {
            out.removeAll(keepingCapacity: true)
            status = 500
            began = true
            keepAlive = false
            let text = "Internal Server Error\n"
            let includeBody = !conn.head.isHEAD
            out.append(contentsOf: plainResponse(status: 500, reason: "Internal Server Error", text: text, includeBody: includeBody))
            if includeBody { bodyBytes = text.utf8.count }
            flushOut()  // a failed write leaves `broken` set, as below
        }
        broken = true
    }

    func abort() { broken = true }

    /// Writes `out` after what is pending. False, and `broken` set, when the peer is gone.
    @discardableResult
    private func flushOut() -> Bool {
        if !claimAnswer() { return false }
        // Answers pending from earlier pipelined requests go first.
        if !conn.writePendingBlocking(timeout: sendTimeout, waiting: waiting) {
            broken = true
            return false
        }
        if out.isEmpty { return true }
        let ok = out.withUnsafeBytes { SocketIO.writeAll(conn.fd, $0, timeout: sendTimeout, waiting: waiting) }
        if ok { bytesWritten += out.count } else { broken = true }
        out.removeAll(keepingCapacity: true)
        return ok
    }
}
