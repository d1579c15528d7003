#if canImport(Glibc)
import Glibc
#endif
import ApusProtocols
import CApusSys
import ApusConfig
import ApusPython

/// One client connection in a worker: its bytes, where it is in the request cycle, and
/// what the app needs to know about its peer.
final class Connection {
    enum State {
        /// `--proxy-protocol`: waiting for the PROXY header that comes before any request.
        case proxyHeader
        /// Waiting for (more of) a request head (HTTP, or a uwsgi packet's vars block).
        case head
        /// Head parsed; reading a Content-Length body.
        case body(remaining: Int)
        /// Head parsed; reading a chunked body.
        case chunked
        /// Handed to the app (on an app thread, or running now on the loop).
        case inApp
        /// The last response is in `pendingOut`; the connection closes once it is written.
        case closing
        /// An error answer went out; what the client still sends is read and dropped
        /// until it closes or the deadline passes, so the answer is not lost to a reset.
        case discarding(until: Double)
    }

    let fd: Int32
    let listener: Listener
    var state = State.head
    /// Received bytes live in `buffer[start..<end]`.
    var buffer: UnsafeMutableRawPointer
    var capacity: Int
    var start = 0
    var end = 0
    var head = HTTPRequestHead()
    /// The vars of a uwsgi packet; `head` then holds the framing derived from them.
    var uwsgiHead = UWSGIRequestHead()
    var body = BodyAccumulator()
    var chunkedDecoder = ChunkedDecoder(maxBodyBytes: 0)
    var keepAlive = true
    var closeAfterResponse = false
    /// When the current head started arriving or the connection went idle (seconds).
    var since: Double
    /// When the body of the current request must be in (`--body-timeout`).
    var bodyDeadline = 0.0
    var requestsServed = 0
    /// Counted in the worker's `fresh` connections.
    var isFresh = false
    /// The client: the socket's peer, or what a PROXY header said.
    /// As text ("127.0.0.1"), in bytes: no String per connection (see "Memory of a worker"
    /// in docs/architecture.md). Empty for a unix-socket peer.
    var peerAddress: [UInt8]
    /// Its port, 0 for none (a unix socket peer).
    var peerPort: Int
    /// Whether the client may set X-Forwarded-* / Forwarded (--forwarded-allow-ips).
    var trustedPeer = false
    /// Finished responses the loop has not written yet (it writes them after each batch of
    /// events), and how much of them is out.
    var pendingOut: [UInt8] = []
    var pendingSent = 0
    /// In the worker's list of connections with pending bytes.
    var isHeld = false
    /// The socket was full: the loop waits for it to drain before reading more requests.
    var writeBlocked = false
    /// The socket became readable while the request was in the app...
    var eventWhileInApp = false
    /// ... and that event reported the peer's hang-up.
    var hangupWhileInApp = false
    /// In the loop's epoll set.
    var armed = false

    init(fd: Int32, listener: Listener, peerAddress: [UInt8], peerPort: Int, now: Double) {
        self.fd = fd
        self.listener = listener
        self.peerAddress = peerAddress
        self.peerPort = peerPort
        if listener.proxyProtocol && listener.proto == .http { state = .proxyHeader }
        capacity = 8192
        buffer = .allocate(byteCount: capacity, alignment: 16)
        since = now
    }

    deinit { buffer.deallocate() }

    var buffered: Int { end - start }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: buffer + start, count: end - start) }

    /// Makes room for at least `n` more bytes after `end`, compacting first. This may move
    /// `buffer`: never while the request is in the app, which reads its head and body in
    /// place (a check that stays in release builds).
    func reserve(_ n: Int) {
        if case .inApp = state { preconditionFailure("connection buffer moved while its request is in the app") }
        if start > 0 && (start == end || capacity - end < n) {
            if start < end { memmove(buffer, buffer + start, end - start) }
            end -= start
            start = 0
        }
        if capacity - end < n {
            var newCap = capacity * 2
            while newCap - end < n { newCap *= 2 }
            let nb = UnsafeMutableRawPointer.allocate(byteCount: newCap, alignment: 16)
            nb.copyMemory(from: buffer, byteCount: end)
            buffer.deallocate()
            buffer = nb
            capacity = newCap
        }
    }

    /// Reads what the socket has. Returns false at end of stream or on error. A short read
    /// means the socket is empty (a later arrival raises a new edge); `toEnd`, for an event
    /// that also reported the peer's hang-up, reads on to the end of the stream, since no
    /// further event will come for it.
    func fill(toEnd: Bool = false) -> Bool {
        while true {
            reserve(4096)
            let n = recv(fd, buffer + end, capacity - end, 0)
            if n > 0 {
                end += n
                if end < capacity && !toEnd { return true }  // drained what was there
                continue
            }
            if n == 0 { return false }
            if errno == EINTR { continue }
            return errno == EAGAIN || errno == EWOULDBLOCK
        }
    }

    /// Writes the answers still pending, waiting for the socket as needed: before bytes that
    /// must follow them on the wire (100 Continue, an error, a large body). False when the
    /// peer is gone or stops reading for `timeout` seconds.
    func writePendingBlocking(timeout: Double, waiting: SocketIO.Waiting = SocketIO.justWait) -> Bool {
        guard !pendingOut.isEmpty else { return true }
        let ok = pendingOut.withUnsafeBytes {
            SocketIO.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[pendingSent...]), timeout: timeout, waiting: waiting)
        }
        pendingOut.removeAll(keepingCapacity: true)
        pendingSent = 0
        return ok
    }

    private static let continueLine: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)

    /// Queues `100 Continue` after the answers still pending; the loop writes it without
    /// blocking, like any pending answer. Only before the body is read, so never inside a
    /// final response.
    func queueContinue() {
        pendingOut.append(contentsOf: Self.continueLine)
    }

    /// Shrinks a buffer that grew for one large request back to the default size.
    func shrinkIfIdle() {
        if start == end {
            start = 0
            end = 0
            if capacity > 65536 {
                buffer.deallocate()
                capacity = 8192
                buffer = .allocate(byteCount: capacity, alignment: 16)
            }
        }
    }
}

/// A request body as it arrives: in memory up to a limit, then in an unlinked temporary
/// file (as nginx and uWSGI's post-buffering do), so a large upload never sits in RAM.
struct BodyAccumulator {
    var memory: [UInt8] = []
    var fileFD: Int32 = -1
    var length = 0

    mutating func reset() {
        memory.removeAll(keepingCapacity: memory.capacity <= 1 << 20)
        if fileFD >= 0 { close(fileFD) }
        fileFD = -1
        length = 0
    }

    mutating func append(_ data: UnsafeRawBufferPointer, memoryLimit: Int) -> Bool {
        length += data.count
        if fileFD < 0 && memory.count + data.count <= memoryLimit {
            memory.append(contentsOf: data)
            return true
        }
        if fileFD < 0 {
            fileFD = apus_tmpfile("/tmp")
            if fileFD < 0 { return false }
            if !memory.withUnsafeBytes({ writeFile(fileFD, $0) }) { return false }
            memory.removeAll()
        }
        return writeFile(fileFD, data)
    }

    /// Hands the body to the app; the file descriptor now belongs to the app's stream.
    mutating func take() -> (WSGIBody, keep: [UInt8]) {
        if fileFD >= 0 {
            lseek(fileFD, 0, SEEK_SET)
            let fd = fileFD
            fileFD = -1
            return (.file(fd: fd, length: length), [])
        }
        return (.empty, memory)
    }

    private func writeFile(_ fd: Int32, _ data: UnsafeRawBufferPointer) -> Bool {
        var off = 0
        while off < data.count {
            let n = write(fd, data.baseAddress! + off, data.count - off)
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return false }
            off += n
        }
        return true
    }
}

/// A listening socket inherited from the master.
final class Listener {
    let fd: Int32
    let proto: Bind.Kind
    /// Connections start with a PROXY protocol header.
    let proxyProtocol: Bool
    /// SERVER_NAME / SERVER_PORT as the app sees them.
    let wsgi: WSGIListener
    let isUnix: Bool
    let serverName: String
    /// 0 for a unix socket (SERVER_PORT is then empty).
    let serverPort: Int
    init(fd: Int32, proto: Bind.Kind, proxyProtocol: Bool, isUnix: Bool, serverName: String, serverPort: Int) {
        self.fd = fd
        self.proto = proto
        self.proxyProtocol = proxyProtocol
        self.isUnix = isUnix
        self.serverName = serverName
        self.serverPort = serverPort
        wsgi = WSGIListener(serverName: serverName, serverPort: serverPort)
    }
}

extension Connection {
    /// The peer for a log line.
    var peerDescription: String {
        peerAddress.isEmpty ? "a unix socket peer" : String(decoding: peerAddress, as: UTF8.self)
    }
}
