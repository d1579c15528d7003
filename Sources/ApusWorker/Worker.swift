#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusIPC
import ApusObserve
import ApusProtocols
import ApusPython

/// Set from the signal handler; read by the loop: 1 stop (TERM/INT: the server is shutting
/// down), 2 retire (HUP: a reload replaces this worker).
nonisolated(unsafe) var stopRequested: Int32 = 0
nonisolated(unsafe) var wakeFD: Int32 = -1

private let handleStop: @convention(c) (Int32) -> Void = { _ in
    stopRequested = 1
    var one: UInt64 = 1
    _ = write(wakeFD, &one, 8)
}
/// SIGHUP from the master: this worker is replaced by a reload. It drains like a stop, but
/// leaves the connections still queued on the shared listeners to the workers that stay.
private let handleRetire: @convention(c) (Int32) -> Void = { _ in
    if stopRequested == 0 { stopRequested = 2 }
    var one: UInt64 = 1
    _ = write(wakeFD, &one, 8)
}
private let handleQuit: @convention(c) (Int32) -> Void = { _ in _exit(0) }
/// The master's "time is up": say which requests are cut, then go.
private let handleDeadline: @convention(c) (Int32) -> Void = { _ in
    InFlight.logAll()
    _exit(0)
}
/// SIGUSR1: reopen the log file (logrotate moved it).
nonisolated(unsafe) var logFilePath: UnsafeMutablePointer<CChar>? = nil
private let handleReopenLog: @convention(c) (Int32) -> Void = { _ in
    guard let path = logFilePath else { return }
    let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
    if fd >= 0 {
        dup2(fd, 2)
        close(fd)
    }
}

/// One worker process: an epoll loop that accepts, reads and parses requests, and runs the
/// app on itself (`--threads 1`) or on a pool of app threads.
final class Worker {
    let spec: WorkerLaunch
    let config: Configuration
    let interpreter: PythonInterpreter
    let application: WSGIApplication
    let parser: HTTPRequestParser
    let uwsgiParser: UWSGIRequestParser
    let trustedProxies: TrustedProxies
    let epfd: Int32
    var listeners: [Listener] = []
    /// Connections by file descriptor.
    var connections: [Connection?] = []
    var liveConnections = 0
    var draining = false
    /// Requests handed to the app and not finished yet.
    var inFlight = 0
    /// With app threads: connections accepted in the last `freshGrace` seconds whose first
    /// request has not reached the app yet. They count against the free threads, so a worker
    /// does not take more new connections than it has threads for; the grace period keeps a
    /// slow client from holding that place.
    var fresh: [Connection] = []
    static let freshGrace = 0.02
    /// How long a response may wait for a client that does not read it.
    static let sendTimeout = 30.0
    /// Pending response bytes past which a connection's pipelined requests wait.
    static let pendingLimit = 65536
    /// Whether the listeners are in the epoll set; they are taken out while every app thread
    /// has work or while this worker holds more connections than its share.
    var accepting = false
    /// Inside `updateAccepting`, taking connections from the backlog.
    private var takingBacklog = false
    /// Open connections this worker holds at most (`--max-connections`, or derived from
    /// RLIMIT_NOFILE): at the cap it stops accepting and the kernel's queue and the other
    /// workers take the load.
    let maxConnections: Int
    /// accept() ran out of file descriptors (EMFILE/ENFILE): the listeners stay out of the
    /// epoll set until then (a level-triggered listener would otherwise wake the loop for
    /// ever), and the episode is logged once.
    private var acceptPausedUntil = 0.0
    private var acceptFailureLogged = false
    /// Log lines any client can cause (refused connections, malformed requests), at most 10 a
    /// second for the worker; the rest are counted in the next line.
    private var clientErrorLog = LogBudget(perSecond: 10)
    static let acceptPause = 0.25
    /// Loop-thread app runner (threads == 1) or nil when a pool runs the app.
    var inline: AppRunner?
    var pool: AppPool?
    /// Connections with finished responses in `pendingOut`, written once the current batch
    /// of events is handled: a client is woken once per batch rather than once per
    /// response, and the app runs back to back with warm caches (bjoern does the same).
    var held: [Connection] = []
    let accessLog: AccessLog?
    /// The loop thread's hold on the GIL (it holds it until `run` starts the loop).
    let loopThread: PythonThread

    /// Connections are edge-triggered: the loop reads until the socket is empty, and an
    /// event for a connection that is in the app is remembered instead of disarming the
    /// connection for the app's time (two epoll_ctl calls per request saved).
    static let connectionEvents = UInt32(APUS_EPOLLIN) | UInt32(APUS_EPOLLRDHUP) | UInt32(APUS_EPOLLET)
    static let hangupEvents = UInt32(APUS_EPOLLRDHUP) | UInt32(APUS_EPOLLHUP) | UInt32(APUS_EPOLLERR)
    static let wakeToken: UInt64 = 1 << 40
    static let listenerBase: UInt64 = 1 << 32

    init(spec: WorkerLaunch, interpreter: PythonInterpreter, app: WSGICallable) {
        self.spec = spec
        config = spec.configuration
        self.interpreter = interpreter
        loopThread = interpreter.currentThread()
        application = WSGIApplication(interpreter: interpreter, app: app, scriptName: config.scriptName,
                                      multithread: config.threads > 1, multiprocess: config.processes > 1,
                                      trustedProxies: config.trustedProxies)
        var limits = HTTPParserLimits()
        limits.maxRequestLine = config.limits.maxRequestLine
        limits.maxHeaderBytes = config.limits.maxHeaderBytes
        limits.maxHeaderCount = config.limits.maxHeaderCount
        limits.maxFieldBytes = config.limits.maxFieldBytes
        limits.maxBodyBytes = config.limits.maxBodyBytes
        parser = HTTPRequestParser(limits: limits)
        var uwsgiLimits = UWSGIParserLimits()
        uwsgiLimits.maxVarsBytes = min(65535, config.limits.maxHeaderBytes)
        uwsgiLimits.maxBodyBytes = config.limits.maxBodyBytes
        uwsgiParser = UWSGIRequestParser(limits: uwsgiLimits)
        trustedProxies = config.trustedProxies
        epfd = apus_epoll_create()
        accessLog = config.accessLog ? AccessLog() : nil
        maxConnections = config.maxConnections > 0 ? config.maxConnections : Self.derivedMaxConnections()
    }

    /// Half of what the open-files limit leaves after a reserve for the app's own files: a
    /// connection can hold a second descriptor (a body spooled to a temporary file).
    static func derivedMaxConnections() -> Int {
        let files = apus_open_files_limit()
        return files < 0 ? 1024 : max(4, (files - 32) / 2)
    }

    /// Runs until drained. Called on the main thread with the GIL held.
    func run() -> Never {
        wakeFD = apus_eventfd()
        _ = apus_epoll_add(epfd, wakeFD, UInt32(APUS_EPOLLIN), Self.wakeToken)
        _ = apus_signal(SIGTERM, handleStop)
        _ = apus_signal(SIGINT, handleStop)
        _ = apus_signal(SIGQUIT, handleQuit)
        _ = apus_signal(SIGUSR2, handleDeadline)
        _ = apus_signal(SIGHUP, handleRetire)
        // The master's scaling signals mean nothing to a worker (and would stop it): a stray
        // one, or one sent to the process group, is ignored.
        for sig in [SIGTTIN, SIGTTOU] { _ = apus_signal_ignore(sig) }
        if let file = config.logFile {
            logFilePath = strdup(file)
            _ = apus_signal(SIGUSR1, handleReopenLog)
        } else {
            _ = apus_signal_ignore(SIGUSR1)
        }
        InFlight.setUp(threads: config.threads, role: spec.role)
        for (i, l) in spec.listeners.enumerated() {
            _ = apus_set_nonblocking(l.fd, 1)
            let (name, port): (String, Int)
            switch l.bind.address {
            case let .tcp(host, p): (name, port) = (host.isEmpty ? "0.0.0.0" : host, Int(p))
            case .unix: (name, port) = ("localhost", 0)
            }
            let isUnix: Bool
            if case .unix = l.bind.address { isUnix = true } else { isUnix = false }
            listeners.append(Listener(fd: l.fd, proto: l.bind.proto, proxyProtocol: config.proxyProtocol,
                                      isUnix: isUnix, serverName: name, serverPort: port))
            _ = i
        }
        spec.tally.set(Int(spec.slot), 0)
        updateAccepting()
        if config.threads > 1 {
            pool = AppPool(worker: self, threads: config.threads)
            _ = apus_epoll_add(epfd, pool!.doneFD, UInt32(APUS_EPOLLIN), Self.wakeToken + 1)
        } else {
            inline = AppRunner(worker: self)
        }
        if let path = config.warmupPath {
            let status = application.warmUp(path: path)
            guard let status, (200..<300).contains(status) else {
                Log.error("warm-up GET \(path) answered \(status.map(String.init) ?? "with an error"), not 2xx: this worker is not ready")
                _exit(WorkerExit.warmupFailed)
            }
        }
        loopThread.releaseGIL()
        WorkerMessage(kind: .ready, slot: spec.slot, pid: getpid(), generation: spec.generation).send(to: spec.statusFD)
        loop()
        accessLog?.flush()
        _exit(0)
    }

    private func loop() {
        var events = [apus_event](repeating: apus_event(), count: 128)
        var lastSweep = now()
        while true {
            if stopRequested != 0 && !draining { beginDrain(takeQueued: stopRequested == 1) }
            if draining && liveConnections == 0 { return }
            // Out of the accept rotation, look again soon: the others' counts change too.
            let timeout: Int32 = (accepting && fresh.isEmpty) || draining ? 1000 : 10
            let n = events.withUnsafeMutableBufferPointer { apus_epoll_wait(epfd, $0.baseAddress, 128, timeout) }
            if n < 0 && errno != EINTR { return }
            let t = now()
            for i in 0..<max(0, Int(n)) {
                let ev = events[i]
                if ev.data == Self.wakeToken {
                    var v: UInt64 = 0
                    _ = read(wakeFD, &v, 8)
                } else if ev.data == Self.wakeToken + 1 {
                    pool?.collectFinished(t)
                } else if ev.data >= Self.listenerBase {
                    acceptOne(listeners[Int(ev.data - Self.listenerBase)], now: t)
                } else if let conn = connections[Int(ev.data)] {
                    if conn.writeBlocked { writePending(conn) }
                    else { readable(conn, now: t, hangup: ev.events & Self.hangupEvents != 0) }
                }
            }
            while !held.isEmpty { writeHeld() }
            accessLog?.flush()
            if !fresh.isEmpty { expireFresh(now()) }
            if !accepting { updateAccepting() }
            if t - lastSweep >= 1 {
                sweepTimeouts(t)
                lastSweep = t
            }
        }
    }

    // MARK: Accepting

    /// Whether this worker has a free app thread, is under its connection cap, holds no more
    /// than its share of connections, and is not pausing after running out of descriptors.
    private func wantsConnections() -> Bool {
        inFlight + fresh.count < config.threads && mayTakeConnection()
    }

    /// Everything `wantsConnections` asks but a free app thread.
    private func mayTakeConnection() -> Bool {
        liveConnections < maxConnections
            && spec.tally.mayAccept(slot: Int(spec.slot), mine: liveConnections)
            && (acceptPausedUntil == 0 || now() >= acceptPausedUntil)
    }

    /// EPOLLEXCLUSIVE: one sleeping worker is woken per new connection, not all of them.
    /// A worker with no free app thread, or with more connections than its share, takes its
    /// listeners out so that the kernel wakes another worker instead.
    private func updateAccepting() {
        if draining || takingBacklog { return }
        var want = wantsConnections()
        guard want != accepting else { return }
        if want && pool != nil {
            // An app thread came free: take what already waits in the backlog. Under load
            // this keeps the listeners out of the epoll set instead of adding and deleting
            // them once per request; only an empty backlog puts them back.
            takingBacklog = true
            var took = true
            while took && wantsConnections() {
                took = false
                for l in listeners where wantsConnections() {
                    if acceptOne(l, now: now()) { took = true }
                }
            }
            takingBacklog = false
            want = wantsConnections()
            if !want { return }
        }
        accepting = want
        for (i, l) in listeners.enumerated() {
            if want {
                _ = apus_epoll_add(epfd, l.fd, UInt32(APUS_EPOLLIN) | UInt32(APUS_EPOLLEXCLUSIVE), Self.listenerBase + UInt64(i))
            } else {
                _ = apus_epoll_del(epfd, l.fd)
            }
        }
    }

    /// Takes one connection per wake-up, so the other workers get their share.
    @discardableResult
    private func acceptOne(_ listener: Listener, now t: Double) -> Bool {
        var addr = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let fd = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { apus_accept(listener.fd, $0, &len) }
        }
        if fd < 0 {
            acceptFailed(errno, t)
            return false
        }
        if acceptPausedUntil != 0 {
            acceptPausedUntil = 0
            acceptFailureLogged = false
        }
        let (host, port) = listener.isUnix ? ([], 0) : describe(addr)
        if listener.proxyProtocol && !host.isEmpty && !host.withUnsafeBytes({ config.proxyAllowed.trusts($0) }) {
            // A PROXY header says who the client is: believed only from the listed
            // balancers (--proxy-allow-ips), else anyone could claim any address.
            Log.warning("connection from \(String(decoding: host, as: UTF8.self)) refused: not in --proxy-allow-ips, so its PROXY header would not be believed",
                        budget: &clientErrorLog, now: t)
            close(fd)
            return true
        }
        if !listener.isUnix { _ = apus_tcp_nodelay(fd) }
        let conn = Connection(fd: fd, listener: listener, peerAddress: host, peerPort: port, now: t)
        conn.trustedPeer = host.withUnsafeBytes { trustedProxies.trusts($0) }
        if pool != nil && !draining {
            conn.isFresh = true
            fresh.append(conn)
        }
        register(conn)
        // The request is often here already (nginx writes it as soon as it connects): read
        // it now. The socket joins the epoll set only when the connection has to wait.
        let open = conn.fill()
        if conn.buffered > 0 {
            process(conn, now: t, peerClosed: !open)
        } else if !open {
            closeConnection(conn)
            return true
        }
        if connections[Int(fd)] === conn && !conn.armed {
            switch conn.state {
            case .inApp, .closing: break  // armed when the app is done, or to write
            default: watch(conn, Self.connectionEvents)
            }
        }
        return true
    }

    /// accept() failed. Out of descriptors (this process's or the system's) or kernel memory:
    /// take the listeners out of the epoll set for a moment and say so once per episode.
    private func acceptFailed(_ error: Int32, _ t: Double) {
        switch error {
        case EMFILE, ENFILE, ENOBUFS, ENOMEM:
            acceptPausedUntil = t + Self.acceptPause
            if !acceptFailureLogged {
                acceptFailureLogged = true
                let what = error == EMFILE ? "this worker's open-files limit" : error == ENFILE ? "the system's open-files limit" : "kernel memory"
                Log.warning("cannot accept connections: out of \(what) with \(liveConnections) open; new ones wait in the queue (or go to other workers) until some close. Raise the limit (ulimit -n) or lower --max-connections")
            }
            if accepting && !takingBacklog { updateAccepting() }
        default:
            break  // EAGAIN (taken by another worker), ECONNABORTED and the like
        }
    }

    /// Every app thread is busy and requests are queued: a finished request lets one
    /// connection in from the backlog, so that new connections take their turn in the queue
    /// with the keep-alive ones. Without this a worker accepts only when a thread is free, and
    /// the keep-alive clients' next requests always take the freed thread first: a health
    /// check or a new browser would wait for as long as the load lasts. The backlog is not
    /// empty only when no worker has a free thread, so taking from it here costs no balance.
    private func acceptInTurn(_ t: Double) {
        guard mayTakeConnection() else { return }
        for l in listeners {
            if acceptOne(l, now: t) { return }
        }
    }

    /// Puts the connection in the epoll set, or changes what it waits for there.
    private func watch(_ conn: Connection, _ events: UInt32) {
        if conn.armed {
            _ = apus_epoll_mod(epfd, conn.fd, events, UInt64(conn.fd))
        } else {
            conn.armed = true
            _ = apus_epoll_add(epfd, conn.fd, events, UInt64(conn.fd))
        }
    }

    /// Fresh connections past the grace period stop counting (see `fresh`).
    private func expireFresh(_ t: Double) {
        let before = fresh.count
        fresh.removeAll { conn in
            if conn.isFresh && t - conn.since < Self.freshGrace { return false }
            conn.isFresh = false
            return true
        }
        if fresh.count != before { updateAccepting() }
    }

    private func notFresh(_ conn: Connection) {
        guard conn.isFresh else { return }
        conn.isFresh = false
        fresh.removeAll { $0 === conn }
    }

    private func register(_ conn: Connection) {
        let fd = Int(conn.fd)
        if fd >= connections.count {
            connections.append(contentsOf: repeatElement(nil, count: fd - connections.count + 64))
        }
        connections[fd] = conn
        liveConnections += 1
        if !draining { spec.tally.set(Int(spec.slot), liveConnections) }
        updateAccepting()
    }

    /// Closes now, or once the pending response is written.
    func closeAfterPending(_ conn: Connection) {
        if conn.pendingOut.isEmpty {
            closeConnection(conn)
        } else {
            conn.state = .closing
            hold(conn)
        }
    }

    func closeConnection(_ conn: Connection) {
        conn.pendingOut = []
        conn.pendingSent = 0
        notFresh(conn)
        // close() takes the socket out of the epoll set: it is never shared with another
        // process (accepted after the fork, close-on-exec).
        connections[Int(conn.fd)] = nil
        liveConnections -= 1
        if !draining { spec.tally.set(Int(spec.slot), liveConnections) }
        if !accepting { updateAccepting() }
        conn.body.reset()
        close(conn.fd)
    }

    // MARK: Writing held responses

    private func hold(_ conn: Connection) {
        guard !conn.isHeld && !conn.writeBlocked else { return }
        conn.isHeld = true
        held.append(conn)
    }

    private func writeHeld() {
        let batch = held
        held.removeAll(keepingCapacity: true)
        for conn in batch {
            conn.isHeld = false
            // A pipelined request may be in an app thread, which writes these bytes first.
            if case .inApp = conn.state { continue }
            if connections[Int(conn.fd)] === conn { writePending(conn) }
        }
    }

    /// Writes a connection's pending bytes without blocking. When the socket is full the
    /// connection waits for EPOLLOUT and reads no further requests until it drains.
    private func writePending(_ conn: Connection) {
        while conn.pendingSent < conn.pendingOut.count {
            let n = conn.pendingOut.withUnsafeBytes {
                send(conn.fd, $0.baseAddress! + conn.pendingSent, $0.count - conn.pendingSent, Int32(MSG_NOSIGNAL))
            }
            if n > 0 { conn.pendingSent += n; continue }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if !conn.writeBlocked {
                    conn.writeBlocked = true
                    conn.since = now()
                    watch(conn, UInt32(APUS_EPOLLOUT) | UInt32(APUS_EPOLLET))
                }
                return
            }
            closeConnection(conn)  // the peer is gone
            return
        }
        conn.pendingOut.removeAll(keepingCapacity: conn.pendingOut.capacity <= 16384)
        conn.pendingSent = 0
        let wasBlocked = conn.writeBlocked
        conn.writeBlocked = false
        if case .closing = conn.state {
            closeConnection(conn)
            return
        }
        if wasBlocked {
            let t = now()
            conn.since = t
            watch(conn, Self.connectionEvents)
            if conn.buffered > 0 { process(conn, now: t) }
        }
    }

    // MARK: Reading and dispatching

    private func readable(_ conn: Connection, now t: Double, hangup: Bool = false) {
        if case .inApp = conn.state {
            // Read once the app is done: edge-triggered, this event will not come again.
            conn.eventWhileInApp = true
            conn.hangupWhileInApp = conn.hangupWhileInApp || hangup
            return
        }
        if case .closing = conn.state { return }
        if case .discarding = conn.state {
            var scratch = [UInt8](repeating: 0, count: 16384)
            while true {
                let n = scratch.withUnsafeMutableBytes { recv(conn.fd, $0.baseAddress, $0.count, 0) }
                if n > 0 { continue }
                if n < 0 && errno == EINTR { continue }
                if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
                closeConnection(conn)
                return
            }
        }
        let wasIdle = conn.buffered == 0
        let open = conn.fill(toEnd: hangup)
        // The head timeout counts from the head's first byte, not from the idle time before.
        if case .head = conn.state, wasIdle, conn.buffered > 0 { conn.since = t }
        if !open && conn.buffered == 0 {
            closeAfterPending(conn)
            return
        }
        process(conn, now: t, peerClosed: !open)
    }

    /// Moves the connection forward with the bytes it has: parse, read the body, run the app.
    func process(_ conn: Connection, now t: Double, peerClosed: Bool = false) {
        while true {
            if case .head = conn.state, !conn.pendingOut.isEmpty,
               pool != nil || conn.pendingOut.count >= Self.pendingLimit {
                // Answers go out before more pipelined requests are taken: an app thread
                // would otherwise add to bytes the loop cannot write while it runs, and a
                // client that does not read would make them grow without bound.
                writePending(conn)
                if conn.writeBlocked || connections[Int(conn.fd)] !== conn { return }
            }
            switch conn.state {
            case .inApp, .discarding, .closing:
                return
            case .proxyHeader:
                if conn.buffered == 0 {
                    if draining || peerClosed { closeAfterPending(conn) }
                    return
                }
                switch parseProxyHeader(conn.bytes) {
                case .incomplete:
                    if peerClosed { closeAfterPending(conn) }
                    return
                case let .failure(why):
                    Log.warning("PROXY protocol header from \(conn.peerDescription) rejected: \(why)", budget: &clientErrorLog, now: t)
                    closeConnection(conn)
                    return
                case let .complete(proxy):
                    if !proxy.isLocal, let source = proxy.source {
                        conn.peerAddress = Array(formatIPAddress(source).utf8)
                        conn.peerPort = proxy.sourcePort ?? 0
                        conn.trustedPeer = conn.peerAddress.withUnsafeBytes { trustedProxies.trusts($0) }
                    }
                    conn.start += proxy.length
                    conn.state = .head
                }
            case .head where conn.listener.proto == .uwsgi:
                if conn.buffered == 0 {
                    if draining || peerClosed { closeAfterPending(conn) }
                    return
                }
                switch uwsgiParser.parseHead(conn.bytes, into: &conn.uwsgiHead) {
                case .incomplete:
                    if peerClosed { closeAfterPending(conn) }
                    return
                case let .failure(error):
                    // A broken packet is a broken front end: log it and close, never call the app.
                    Log.warning("bad uwsgi packet from \(conn.peerDescription): \(error.logDescription)", budget: &clientErrorLog, now: t)
                    closeConnection(conn)
                    return
                case .complete:
                    conn.head.adoptUWSGI(conn.uwsgiHead, in: conn.bytes)
                    conn.keepAlive = false  // uwsgi: one request per connection
                    if !startBody(conn, now: t) { return }
                }
            case .head:
                if conn.buffered == 0 {
                    if draining || peerClosed { closeAfterPending(conn) }
                    return
                }
                let result = parser.parseHead(conn.bytes, into: &conn.head)
                switch result {
                case .incomplete:
                    if peerClosed { closeAfterPending(conn) }
                    return
                case let .failure(error):
                    reject(conn, error)
                    return
                case .complete:
                    conn.keepAlive = conn.head.keepAlive
                    if !startBody(conn, now: t) { return }
                }
            case let .body(remaining):
                if case let .contentLength(total) = conn.head.framing, total > config.limits.bodyMemoryBytes {
                    // Spooling: everything after the head goes to the accumulator.
                    let piece = UnsafeRawBufferPointer(rebasing: conn.bytes[conn.head.headLength...])
                    let take = min(piece.count, remaining)
                    if take > 0 {
                        if !conn.body.append(UnsafeRawBufferPointer(rebasing: piece[0..<take]), memoryLimit: config.limits.bodyMemoryBytes) {
                            closeConnection(conn); return
                        }
                        // Keep pipelined bytes after the body.
                        let rest = piece.count - take
                        if rest > 0 { memmove(conn.buffer + conn.start + conn.head.headLength, conn.buffer + conn.start + conn.head.headLength + take, rest) }
                        conn.end = conn.start + conn.head.headLength + rest
                    }
                    if remaining - take > 0 {
                        conn.state = .body(remaining: remaining - take)
                        if peerClosed { closeConnection(conn) }
                        return
                    }
                    let (body, _) = conn.body.take()
                    dispatch(conn, body: body, contentLength: conn.body.length, bodyInBuffer: 0)
                } else {
                    let n: Int
                    if case let .contentLength(total) = conn.head.framing { n = total } else { n = 0 }
                    let have = conn.buffered - conn.head.headLength
                    if have < n {
                        if peerClosed { closeConnection(conn) }
                        return
                    }
                    dispatch(conn, body: .memory(UnsafeRawBufferPointer(rebasing: conn.bytes[conn.head.headLength..<(conn.head.headLength + n)])),
                             contentLength: n, bodyInBuffer: n)
                }
            case .chunked:
                let input = UnsafeRawBufferPointer(rebasing: conn.bytes[conn.head.headLength...])
                var overflow = false
                let limit = config.limits.bodyMemoryBytes
                let result = conn.chunkedDecoder.decode(input) { piece in
                    if !conn.body.append(piece, memoryLimit: limit) { overflow = true }
                }
                let consumed: Int
                var done = false
                switch result {
                case let .needMore(c): consumed = c
                case let .done(c): consumed = c; done = true
                case let .failure(e):
                    reject(conn, e)
                    return
                }
                if overflow { closeConnection(conn); return }
                // Drop the consumed chunked bytes, keeping the head in place.
                let rest = input.count - consumed
                if consumed > 0 && rest > 0 {
                    memmove(conn.buffer + conn.start + conn.head.headLength, conn.buffer + conn.start + conn.head.headLength + consumed, rest)
                }
                conn.end = conn.start + conn.head.headLength + rest
                if !done {
                    if peerClosed { closeConnection(conn) }
                    return
                }
                let length = conn.body.length
                let (body, memory) = conn.body.take()
                if case .file = body {
                    dispatch(conn, body: body, contentLength: length, bodyInBuffer: 0)
                } else {
                    conn.body.memory = memory
                    dispatch(conn, body: .empty, contentLength: length, bodyInBuffer: 0, chunkedMemory: true)
                }
            }
            if case .inApp = conn.state { return }
            // Inline app run finished: the loop goes on with pipelined bytes, if any.
            if connections[Int(conn.fd)] !== conn { return }
        }
    }

    /// A request head is complete (HTTP, or derived from a uwsgi packet): dispatch it when
    /// its body is already here, else start reading the body, spooling to a file past
    /// --body-buffer-size. The loop always reads the whole body before the app runs, so an
    /// app that ignores the body leaves nothing on the wire and a slow uploader holds no app
    /// thread; `Expect: 100-continue` gets its interim answer here, before any byte of the
    /// final response can exist. False: the connection closed.
    private func startBody(_ conn: Connection, now t: Double) -> Bool {
        conn.body.reset()
        let have = conn.buffered - conn.head.headLength
        switch conn.head.framing {
        case .none:
            dispatch(conn, body: .empty, contentLength: nil, bodyInBuffer: 0)
            return true
        case let .contentLength(n):
            if have >= n {
                dispatch(conn, body: n == 0 ? .empty : .memory(UnsafeRawBufferPointer(rebasing: conn.bytes[conn.head.headLength..<(conn.head.headLength + n)])),
                         contentLength: n, bodyInBuffer: n)
                return true
            }
            if n > config.limits.bodyMemoryBytes {
                // Spool: move what we have into the accumulator.
                let piece = UnsafeRawBufferPointer(rebasing: conn.bytes[conn.head.headLength...])
                if !conn.body.append(piece, memoryLimit: config.limits.bodyMemoryBytes) {
                    closeConnection(conn)
                    return false
                }
                conn.end = conn.start + conn.head.headLength
            }
            conn.state = .body(remaining: n - have)
        case .chunked:
            conn.chunkedDecoder = ChunkedDecoder(maxBodyBytes: config.limits.maxBodyBytes)
            conn.state = .chunked
        }
        conn.bodyDeadline = t + (config.limits.bodyTimeout ?? config.limits.headTimeout)
        if conn.head.expectContinue && have == 0 && conn.listener.proto == .http {
            conn.queueContinue()
            hold(conn)
        }
        return true
    }

    /// Hands a complete request to the app: inline, or to the pool.
    private func dispatch(_ conn: Connection, body: WSGIBody, contentLength: Int?, bodyInBuffer: Int, chunkedMemory: Bool = false) {
        conn.state = .inApp
        inFlight += 1
        notFresh(conn)
        if pool != nil { updateAccepting() }
        if draining { conn.closeAfterResponse = true }
        let job = AppJob(conn: conn, body: body, contentLength: contentLength, bodyInBuffer: bodyInBuffer, chunkedMemory: chunkedMemory)
        if let pool {
            pool.submit(job)
        } else {
            inline!.run(job)
            finish(job, keepAlive: inline!.writer.canKeepAlive, now: now())
        }
    }

    /// After the app answered: next request, or close.
    func finish(_ job: AppJob, keepAlive: Bool, now t: Double) {
        let conn = job.conn
        conn.requestsServed += 1
        inFlight -= 1
        if !accepting { updateAccepting() }
        if pool != nil && !accepting && !draining && inFlight >= config.threads { acceptInTurn(t) }
        if case .file = job.body { /* the app's stream owned and closed the fd */ }
        conn.body.reset()
        if !keepAlive || conn.closeAfterResponse {
            closeAfterPending(conn)
            return
        }
        conn.start += conn.head.headLength + job.bodyInBuffer
        if conn.start > conn.end { conn.start = conn.end }
        conn.shrinkIfIdle()
        conn.state = .head
        conn.since = t
        if !conn.pendingOut.isEmpty { hold(conn) }
        if !conn.armed { watch(conn, Self.connectionEvents) }
        if conn.eventWhileInApp {
            conn.eventWhileInApp = false
            let hangup = conn.hangupWhileInApp
            conn.hangupWhileInApp = false
            readable(conn, now: t, hangup: hangup)
        } else if pool != nil && conn.buffered > 0 {
            process(conn, now: t)
        }
    }

    /// A malformed or oversized request: a short answer, then the connection closes.
    private func reject(_ conn: Connection, _ error: HTTPRequestError) {
        let reason = error.reasonPhrase
        let body = "\(error.status) \(reason)\n"
        let text = "HTTP/1.1 \(error.status) \(reason)\r\nServer: apus\r\nContent-Type: text/plain\r\nContent-Length: \(body.utf8.count)\r\nConnection: close\r\n\r\n\(body)"
        var bytes = Array(text.utf8)
        // Rare, and the order on the wire must hold: what is pending goes first.
        _ = conn.writePendingBlocking(timeout: 5)
        _ = bytes.withUnsafeMutableBytes { SocketIO.writeAll(conn.fd, UnsafeRawBufferPointer($0), timeout: 1) }
        if case let .badRequest(why) = error {
            Log.warning("bad request from \(conn.peerDescription): \(why)", budget: &clientErrorLog, now: now())
        }
        // Half-close and drop what the client still sends for a moment: closing with
        // unread bytes would reset the connection and could destroy the answer in flight.
        shutdown(conn.fd, Int32(SHUT_WR))
        conn.state = .discarding(until: now() + 2)
        conn.start = 0
        conn.end = 0
        readable(conn, now: now())
    }

    // MARK: Timeouts and draining

    private func sweepTimeouts(_ t: Double) {
        for case let conn? in connections {
            if conn.writeBlocked {
                if t - conn.since > Self.sendTimeout { closeConnection(conn) }
                continue
            }
            switch conn.state {
            case .inApp, .closing: continue
            case let .discarding(until):
                if t >= until { closeConnection(conn) }
            case .head where conn.buffered == 0:
                let idle = draining ? 0 : config.limits.keepAliveTimeout
                if conn.requestsServed > 0 && t - conn.since > idle { closeConnection(conn) }
                else if conn.requestsServed == 0 && t - conn.since > config.limits.headTimeout { closeConnection(conn) }
            case .body, .chunked:
                // One deadline for the whole body, however steadily it trickles in.
                if t >= conn.bodyDeadline { closeConnection(conn) }
            default:
                if t - conn.since > config.limits.headTimeout { closeConnection(conn) }
            }
        }
    }

    /// Stop taking new connections, then finish what is in flight. On a stop, first take what
    /// the kernel already queued, since no worker will stay to take it; a worker retired by
    /// a reload leaves it to the workers that stay, so no request that arrives after a
    /// reload completed is served by the old code.
    private func beginDrain(takeQueued: Bool) {
        draining = true
        spec.tally.set(Int(spec.slot), -1)  // out of the accept rotation for good
        for (i, l) in listeners.enumerated() {
            var taken = 0
            while takeQueued {
                let before = liveConnections
                acceptOne(l, now: now())
                if liveConnections == before { break }
                taken += 1
            }
            _ = i
            if accepting { _ = apus_epoll_del(epfd, l.fd) }
            close(l.fd)
        }
        listeners.removeAll()
        let t = now()
        for case let conn? in connections {
            conn.closeAfterResponse = true
            guard case .head = conn.state, conn.buffered == 0, conn.requestsServed > 0 else { continue }
            if conn.writeBlocked { conn.state = .closing; continue }
            // An idle keep-alive connection may hold a request the loop has not read yet
            // (it was busy in the app): read before deciding it is idle.
            let open = conn.fill()
            if conn.buffered > 0 { process(conn, now: t, peerClosed: !open) }
            else { closeAfterPending(conn) }
        }
    }
}

@inline(__always) func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}

/// "127.0.0.1" (as bytes), 54321 for a peer address.
func describe(_ addr: sockaddr_storage) -> ([UInt8], Int) {
    var a = addr
    var host = [UInt8](repeating: 0, count: 64)
    var port: UInt16 = 0
    withUnsafePointer(to: &a) { p in
        if addr.ss_family == sa_family_t(AF_INET) {
            p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) { s in
                var ina = s.pointee.sin_addr
                host.withUnsafeMutableBytes { _ = inet_ntop(AF_INET, &ina, $0.baseAddress!.assumingMemoryBound(to: CChar.self), 64) }
                port = UInt16(bigEndian: s.pointee.sin_port)
            }
        } else if addr.ss_family == sa_family_t(AF_INET6) {
            p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { s in
                var ina = s.pointee.sin6_addr
                host.withUnsafeMutableBytes { _ = inet_ntop(AF_INET6, &ina, $0.baseAddress!.assumingMemoryBound(to: CChar.self), 64) }
                port = UInt16(bigEndian: s.pointee.sin6_port)
            }
        }
    }
    host.removeSubrange((host.firstIndex(of: 0) ?? 0)..<host.count)  // keeps the one allocation
    return (host, Int(port))
}
