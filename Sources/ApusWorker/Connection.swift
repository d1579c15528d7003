#if canImport(Glibc)
import Glibc
#endif
import ApusProtocols
import CApusSys
import ApusConfig
import ApusPython
import ApusSys

/// One client connection in a worker: its buffer and socket, what it owes the client
/// (`pendingOut`), and what the app needs to know about its peer. Its protocol state is the
/// value `machine`; the worker carries out what that says.
final class Connection {
    let fd: Int32
    let listener: Listener
    var machine: ConnectionMachine
    /// Received bytes live in `buffer[start..<end]`. An idle connection has no buffer of its
    /// own (`capacity` 0): it takes one from the worker's `ReadBuffers` when bytes come and
    /// gives it back when they are all consumed, so 10,000 idle keep-alive connections hold
    /// no read buffers.
    var buffer: UnsafeMutableRawPointer
    var capacity = 0
    // The worker and its spares live as long as the process: no reference count to check.
    unowned(unsafe) let buffers: ReadBuffers
    var start = 0
    var end = 0
    var body = BodyAccumulator()
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
    /// A static file's body that follows `pendingOut` on the wire (`--static-map`), sent
    /// with sendfile(2). On the heap, made only for a body too large to go inline: every
    /// other connection carries one pointer for it.
    var file: FileBody?
    /// In the worker's list of connections with pending bytes.
    var isHeld = false
    /// In the loop's epoll set.
    var armed = false

    init(fd: Int32, listener: Listener, peerAddress: [UInt8], peerPort: Int, buffers: ReadBuffers, now: Double) {
        self.fd = fd
        self.listener = listener
        self.peerAddress = peerAddress
        self.peerPort = peerPort
        self.buffers = buffers
        buffer = ReadBuffers.none
        let wire: ConnectionMachine.Wire? = switch listener.proto {
        case .http: .http
        case .uwsgi: .uwsgi
        case .auto: nil
        }
        machine = ConnectionMachine(wire: wire, proxyProtocol: listener.proxyProtocol, now: now)
    }

    /// The last reference can go on an app thread (the job it ran), so a buffer still held
    /// here is freed, not given back to the loop thread's spares.
    deinit { if capacity > 0 { buffer.deallocate() } }

    var buffered: Int { end - start }

    var bytes: UnsafeRawBufferPointer { UnsafeRawBufferPointer(start: buffer + start, count: end - start) }

    /// Makes room for at least `n` more bytes after `end`, compacting first. This may move
    /// `buffer`: never while the request is in the app, which reads its head and body in
    /// place (a check that stays in release builds).
    func reserve(_ n: Int) {
        if machine.isInApp { preconditionFailure("connection buffer moved while its request is in the app") }
        if capacity == 0 {
            buffer = buffers.take()
            capacity = ReadBuffers.size
        }
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
            dropBuffer()
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
            switch Sys.call({ recv(fd, buffer + end, capacity - end, 0) }) {
            case let .done(n) where n > 0:
                end += n
                if end < capacity && !toEnd { return true }  // drained what was there
            case .done:
                return false  // end of stream
            case .wouldBlock:
                return true
            case .failed:
                return false  // reset
            }
        }
    }

    /// The request's bytes are done with: the buffer starts after them.
    func consume(_ n: Int) {
        start = min(start + n, end)
    }

    /// Removes `count` bytes that follow the first `offset` buffered bytes (body bytes that
    /// went to the body sink), keeping the head before them and what came after them.
    func remove(count: Int, after offset: Int) {
        let from = start + offset
        let rest = end - from - count
        if rest > 0 { memmove(buffer + from, buffer + from + count, rest) }
        end -= count
    }

    /// Forgets every buffered byte.
    func clear() {
        start = 0
        end = 0
    }

    /// What is still to be written, for the machine: a file body counts as more than any
    /// limit, so no further pipelined request is taken until it is out.
    var pendingBytes: Int { file != nil ? Int.max / 2 : pendingOut.count }

    /// Nothing is left to write.
    var nothingPending: Bool { pendingOut.isEmpty && file == nil }

    func closeFile() {
        if let file { Sys.close(file.fd) }
        file = nil
    }

    /// Writes the answers still pending, waiting for the socket as needed: before bytes that
    /// must follow them on the wire (100 Continue, an error, a large body). False when the
    /// peer is gone or stops reading for `timeout` seconds.
    func writePendingBlocking(timeout: Double, waiting: SocketIO.Waiting = SocketIO.justWait) -> Bool {
        guard !nothingPending else { return true }
        var ok = pendingOut.withUnsafeBytes {
            SocketIO.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[pendingSent...]), timeout: timeout, waiting: waiting)
        }
        pendingOut.removeAll(keepingCapacity: true)
        pendingSent = 0
        // A static file's body (the machine takes no request while one is pending, so this
        // is a safety net, not a path that runs).
        while ok, let file, file.offset < file.end {
            switch Sys.call({ apus_sendfile(fd, file.fd, &file.offset, Int(file.end - file.offset)) }) {
            case let .done(n) where n > 0:
                continue
            case .wouldBlock:
                ok = waiting { SocketIO.wait(fd, events: Int16(POLLOUT), timeout: timeout) }
            case .done, .failed:
                ok = false
            }
        }
        closeFile()
        return ok
    }

    private static let continueLine: [UInt8] = Array("HTTP/1.1 100 Continue\r\n\r\n".utf8)

    /// Queues `100 Continue` after the answers still pending; the loop writes it without
    /// blocking, like any pending answer (the machine asks for it only before any byte of the
    /// body has arrived, so it can never land inside a final response).
    func queueContinue() {
        pendingOut.append(contentsOf: Self.continueLine)
    }

    /// Gives the buffer back when every byte in it is consumed and no request reads it.
    func releaseBufferIfIdle() {
        guard start == end else { return }
        releaseBuffer()
    }

    /// Gives the buffer back (on the loop thread; the connection is closing, or idle).
    func releaseBuffer() {
        guard capacity > 0, !machine.isInApp else { return }
        start = 0
        end = 0
        dropBuffer()
        buffer = ReadBuffers.none
        capacity = 0
    }

    /// Returns the buffer to the worker's spares, or frees one that grew past their size.
    private func dropBuffer() {
        if capacity == ReadBuffers.size { buffers.give(buffer) }
        else if capacity > 0 { buffer.deallocate() }
    }
}

/// Bytes `offset..<end` of an open file, still to be sent after a static answer's head.
final class FileBody {
    let fd: Int32
    var offset: Int64
    let end: Int64
    init(fd: Int32, offset: Int64, end: Int64) {
        self.fd = fd
        self.offset = offset
        self.end = end
    }
}

/// The worker's spare read buffers, all of `size` bytes, for connections that have bytes to
/// read. Used by the loop thread only: a buffer is taken and given back there, and while a
/// request is in the app its connection keeps its buffer.
final class ReadBuffers {
    static let size = 8192
    /// What a connection without a buffer points at: never read or written (its capacity is 0).
    nonisolated(unsafe) static let none = UnsafeMutableRawPointer.allocate(byteCount: 16, alignment: 16)
    /// The buffer given back last: a keep-alive connection under load gives its buffer back
    /// after each response and takes one at its next request, so this slot serves most takes.
    /// One thread touches these fields and no access spans another: no run-time exclusivity
    /// check (it was two calls into the Swift runtime per take and per give).
    @exclusivity(unchecked) private var last: UnsafeMutableRawPointer?
    @exclusivity(unchecked) private var spare: [UnsafeMutableRawPointer] = []
    /// Spares kept at most besides `last`; the rest are freed.
    let keep: Int

    init(keep: Int) {
        self.keep = keep
        spare.reserveCapacity(keep)
    }

    @inline(__always)
    func take() -> UnsafeMutableRawPointer {
        if let buffer = last {
            last = nil
            return buffer
        }
        return spare.popLast() ?? .allocate(byteCount: Self.size, alignment: 16)
    }

    @inline(__always)
    func give(_ buffer: UnsafeMutableRawPointer) {
        if last == nil { last = buffer }
        else if spare.count < keep { spare.append(buffer) }
        else { buffer.deallocate() }
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
        Sys.close(fileFD)
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
            // The app reads it from the start. lseek on a regular file fails only for a bad
            // descriptor or offset, neither of which can happen here.
            Sys.check("lseek of a spooled body") { Int32(truncatingIfNeeded: lseek(fileFD, 0, SEEK_SET)) }
            let fd = fileFD
            fileFD = -1
            return (.file(fd: fd, length: length), [])
        }
        return (.empty, memory)
    }

    private func writeFile(_ fd: Int32, _ data: UnsafeRawBufferPointer) -> Bool {
        var off = 0
        while off < data.count {
            // A full disk (ENOSPC) or a file-size limit: the body cannot be kept.
            guard let n = Sys.call({ write(fd, data.baseAddress! + off, data.count - off) }).value, n > 0 else { return false }
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
    /// What the app side reads of the request in progress (stable while it is in the app).
    var head: HTTPRequestHead { machine.head }
    var uwsgiHead: UWSGIRequestHead { machine.uwsgiHead }
    var keepAlive: Bool { machine.keepAlive }
    var closeAfterResponse: Bool { machine.closeAfterResponse }

    /// The peer for a log line.
    var peerDescription: String {
        peerAddress.isEmpty ? "a unix socket peer" : String(decoding: peerAddress, as: UTF8.self)
    }
}
