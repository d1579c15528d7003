#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusObserve
import ApusProtocols
import ApusSys

/// `--static-map`: the worker's open mount directories. A request for a file under one is
/// answered by the loop thread with no GIL and no Python call (see docs/static.md); the
/// rules are pure values in ApusProtocols/StaticFiles.swift, this file opens and sends.
final class StaticFiles {
    struct Mount {
        let segments: [[UInt8]]
        /// The directory, O_PATH: every file is opened beneath it with openat2(2).
        let directory: Int32
    }

    let mounts: [Mount]
    var date = HTTPDateCache()
    /// Bodies up to this size go out in the same write as the head (read with pread);
    /// larger ones with sendfile(2) from the loop, resumed when the socket drains.
    static let inlineBodyLimit = 32768
    /// What one connection may send in one turn of the loop before the others get theirs.
    static let turnBytes = 1 << 20

    /// nil when there is no mapping, or when this kernel has no openat2 (Linux < 5.6): the
    /// app then answers every path, and the worker says so once.
    init?(_ maps: [StaticMap]) {
        guard !maps.isEmpty else { return nil }
        var mounts: [Mount] = []
        for map in maps {
            let fd = apus_open_directory(map.directory)
            guard fd >= 0 else {
                Log.warning("--static-map \(map.mount)=\(map.directory): cannot open the directory (\(Sys.describe(errno))); the app answers that prefix")
                continue
            }
            mounts.append(Mount(segments: StaticPath.mountSegments(map.mount), directory: fd))
        }
        guard let first = mounts.first else { return nil }
        let probe = apus_open_beneath(first.directory, ".")
        if probe < 0 && errno == ENOSYS {
            Log.warning("--static-map: this kernel has no openat2(2) (Linux 5.6 or later), so files cannot be opened safely; the app answers every path")
            for m in mounts { Sys.close(m.directory) }
            return nil
        }
        Sys.close(probe)
        self.mounts = mounts
    }

    /// A regular file opened beneath `mount`, with its facts; nil for anything else (no
    /// such file, a directory, a FIFO or device, a path that leads outside).
    func open(_ relative: [UInt8], suffix: StaticString, in mount: Mount) -> (fd: Int32, size: Int, sec: Int64, nsec: Int64)? {
        var path = relative
        path.append(contentsOf: UnsafeRawBufferPointer(start: suffix.utf8Start, count: suffix.utf8CodeUnitCount))
        path.append(0)
        let fd = path.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { apus_open_beneath(mount.directory, $0) }
        }
        guard fd >= 0 else { return nil }
        var size: Int64 = 0, sec: Int64 = 0, nsec: Int64 = 0
        guard apus_file_facts(fd, &size, &sec, &nsec) == 1 else {
            Sys.close(fd)
            return nil
        }
        return (fd, Int(size), sec, nsec)
    }
}

extension Worker {
    /// Answers a complete request from a --static-map directory when it is a GET or HEAD for
    /// a regular file there; the answer is queued on the connection (head and small body in
    /// `pendingOut`, a larger body as the connection's file). Returns whether the connection
    /// can carry another request, or nil when the app answers (not a static path, no such
    /// file, another method: uWSGI's rules).
    func serveStatic(_ conn: Connection, _ request: ConnectionMachine.Request, now t: Double) -> Bool? {
        guard let files = staticFiles else { return nil }
        if case .sink = request.body { return nil }
        let buf = conn.bytes
        let head = conn.machine.head
        let isHEAD = head.isHEAD
        guard isHEAD || buf[head.method].elementsEqual("GET".utf8) else { return nil }
        let uwsgi = conn.machine.wire == .uwsgi
        let path = UnsafeRawBufferPointer(rebasing: buf[head.path])
        var found: (fd: Int32, size: Int, sec: Int64, nsec: Int64)? = nil
        var name: [UInt8] = []
        var mountUsed: StaticFiles.Mount? = nil
        for mount in files.mounts {
            guard case let .file(relative) = StaticPath.resolve(path, mount: mount.segments, decoded: uwsgi) else { continue }
            if let f = files.open(relative, suffix: "", in: mount) {
                found = f
                name = relative
                mountUsed = mount
                break
            }
        }
        guard var file = found, let mount = mountUsed else { return nil }
        var encoding = StaticEncoding.identity
        if let accept = requestHeader(conn, "accept-encoding", uwsgiKey: "HTTP_ACCEPT_ENCODING") {
            for candidate in accept.withUnsafeBytes({ acceptedEncodings($0) }) {
                if let variant = files.open(name, suffix: candidate.suffix, in: mount) {
                    Sys.close(file.fd)
                    file = variant
                    encoding = candidate
                    break
                }
            }
        }
        let facts = StaticFileFacts(size: file.size, mtimeSeconds: file.sec, mtimeNanoseconds: file.nsec, encoding: encoding)
        var conditions = StaticConditions()
        conditions.isHEAD = isHEAD
        conditions.ifNoneMatch = requestHeader(conn, "if-none-match", uwsgiKey: "HTTP_IF_NONE_MATCH")
        conditions.ifModifiedSince = requestHeader(conn, "if-modified-since", uwsgiKey: "HTTP_IF_MODIFIED_SINCE", first: true)
        conditions.range = requestHeader(conn, "range", uwsgiKey: "HTTP_RANGE", first: true)
        conditions.ifRange = requestHeader(conn, "if-range", uwsgiKey: "HTTP_IF_RANGE", first: true)
        let etag = facts.etag
        let answer = StaticAnswer.decide(conditions, facts, etag: etag)
        var keepAlive = !uwsgi && conn.keepAlive && !conn.closeAfterResponse
        files.date.update(unixTime: Int64(time(nil)))
        staticResponseHead(answer, file: facts, etag: etag, contentType: staticContentType(name), date: files.date.bytes,
                           keepAlive: keepAlive, versionMinor: head.versionMinor, into: &conn.pendingOut)
        var sent = answer.count
        if answer.count == 0 {
            Sys.close(file.fd)
        } else if answer.count <= StaticFiles.inlineBodyLimit {
            let at = conn.pendingOut.count
            conn.pendingOut.append(contentsOf: repeatElement(0, count: answer.count))
            let n = conn.pendingOut.withUnsafeMutableBytes { out in
                Sys.call { pread(file.fd, out.baseAddress! + at, answer.count, off_t(answer.offset)) }.value ?? 0
            }
            Sys.close(file.fd)
            if n < answer.count {
                // The file shrank since fstat: what there is goes out, then the connection
                // closes, so the client sees a short body rather than a wrong one.
                conn.pendingOut.removeLast(answer.count - n)
                keepAlive = false
                sent = n
            }
        } else {
            conn.file = FileBody(fd: file.fd, offset: Int64(answer.offset), end: Int64(answer.offset + answer.count))
        }
        notFresh(conn)
        InFlight.slot?.counters.recordStatic(status: answer.status, bytes: sent)
        logAccess(conn, status: answer.status, bytes: sent, seconds: Sys.now() - t)
        return keepAlive
    }

    /// A request header's value: HTTP fields named `name` (lowercase), joined with ", ", or
    /// the first only; for a uwsgi packet, the var `uwsgiKey`.
    private func requestHeader(_ conn: Connection, _ name: StaticString, uwsgiKey: StaticString, first: Bool = false) -> [UInt8]? {
        let buf = conn.bytes
        var out: [UInt8]? = nil
        if conn.machine.wire == .uwsgi {
            let key = UnsafeRawBufferPointer(start: uwsgiKey.utf8Start, count: uwsgiKey.utf8CodeUnitCount)
            for v in conn.uwsgiHead.vars where buf[v.key].elementsEqual(key) {
                return Array(buf[v.value])
            }
            return nil
        }
        for field in conn.machine.head.headers where equalsIgnoringCase(buf, field.name, name) {
            if first { return Array(buf[field.value]) }
            if out == nil { out = Array(buf[field.value]) } else {
                out!.append(contentsOf: ", ".utf8)
                out!.append(contentsOf: buf[field.value])
            }
        }
        return out
    }

    /// Sends the connection's file body without blocking, at most `turnBytes` per call.
    /// True when it is all out; false when the socket is full or the turn is over (the
    /// connection then waits for EPOLLOUT, which comes at once if the socket has room) or
    /// the connection closed.
    func sendFileBody(_ conn: Connection) -> Bool {
        guard let body = conn.file else { return true }
        var turn = 0
        while body.offset < body.end {
            if turn >= StaticFiles.turnBytes {
                conn.machine.writeStalled(now: Sys.now())
                watch(conn, Epoll.writable | Epoll.edgeTriggered)
                return false
            }
            let left = Int(body.end - body.offset)
            switch Sys.call({ apus_sendfile(conn.fd, body.fd, &body.offset, min(left, StaticFiles.turnBytes)) }) {
            case let .done(n) where n > 0:
                turn += n
                conn.machine.wroteSome(now: Sys.now())
            case .wouldBlock:
                if !conn.machine.writeBlocked {
                    conn.machine.writeStalled(now: Sys.now())
                    watch(conn, Epoll.writable | Epoll.edgeTriggered)
                }
                return false
            case .done, .failed:
                // The file shrank (its body cannot be completed) or the peer is gone.
                closeConnection(conn)
                return false
            }
        }
        conn.closeFile()
        return true
    }
}
