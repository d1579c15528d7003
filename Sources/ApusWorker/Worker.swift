#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusIPC
import ApusObserve
import ApusProtocols
import ApusPython
import ApusSys

/// Set from the signal handler; read by the loop: 1 stop (TERM/INT: the server is shutting
/// down), 2 retire (HUP: a reload replaces this worker).
nonisolated(unsafe) var stopRequested: Int32 = 0
nonisolated(unsafe) var wakeFD: Int32 = -1

private let handleStop: @convention(c) (Int32) -> Void = { _ in
    stopRequested = 1
    Sys.wake(wakeFD)
}
/// SIGHUP from the master: this worker is replaced by a reload. It drains like a stop, but
/// leaves the connections still queued on the shared listeners to the workers that stay.
private let handleRetire: @convention(c) (Int32) -> Void = { _ in
    if stopRequested == 0 { stopRequested = 2 }
    Sys.wake(wakeFD)
}
private let handleQuit: @convention(c) (Int32) -> Void = { _ in
    AccessLog.current?.flushBeforeExit()
    _exit(0)
}
/// The master's "time is up": say which requests are cut, then go.
private let handleDeadline: @convention(c) (Int32) -> Void = { _ in
    InFlight.logAll()
    AccessLog.current?.flushBeforeExit()
    _exit(0)
}
/// SIGUSR1: reopen the log file and the access log file (logrotate moved them). The access
/// log file is reopened by the loop (`reopenAccessLogIfAsked`), after it wrote the lines it
/// buffered for the old file.
nonisolated(unsafe) var logFilePath: UnsafeMutablePointer<CChar>? = nil
nonisolated(unsafe) var accessLogPath: UnsafeMutablePointer<CChar>? = nil
nonisolated(unsafe) var accessLogFD: Int32 = -1
nonisolated(unsafe) var accessLogReopenAsked: Int32 = 0
private let handleReopenLog: @convention(c) (Int32) -> Void = { _ in
    if let path = logFilePath { reopen(path, onto: 2) }
    if accessLogPath != nil, accessLogFD > 2 {
        accessLogReopenAsked = 1
        Sys.wake(wakeFD)
    }
}

/// Opens `path` for appending in the place of `target` (async-signal-safe). Nothing can be
/// reported from a signal handler: when the file cannot be opened, lines go on to the old one.
private func reopen(_ path: UnsafeMutablePointer<CChar>, onto target: Int32) {
    let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
    if fd >= 0 {
        if dup2(fd, target) < 0 { /* the old file stays */ }
        if target > 2 { _ = fcntl(target, F_SETFD, FD_CLOEXEC) }
        Sys.close(fd)
    }
}

/// The descriptor of `--access-logfile`: stderr without it, stdout for "-", else the file
/// opened for appending (the master made sure it can be). SIGUSR1 reopens a file.
func openAccessLog(_ file: String?) -> Int32 {
    guard let file else { return 2 }
    if file == AccessLogDestination.stdout { return 1 }
    let fd = open(file, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
    guard fd >= 0 else {
        Log.error("--access-logfile: cannot open \(file): \(Sys.describe(errno)); access lines go to stderr")
        return 2
    }
    accessLogPath = strdup(file)
    accessLogFD = fd
    return fd
}

/// One worker process: an epoll loop that accepts connections, moves each one through its
/// `ConnectionMachine`, and runs the app for the requests it completes. With `--threads` > 1
/// every thread can run the loop, one at a time (`Crew`): the one that has it runs the app
/// itself and hands the loop on only while an app call waits. This file has the loop, the
/// signals and the drain; accepting and balancing are in WorkerAccept.swift, reading and
/// dispatching in WorkerRequests.swift, holding and writing answers in WorkerWrite.swift.
final class Worker {
    let spec: WorkerLaunch
    let config: Configuration
    let interpreter: PythonInterpreter
    let application: WSGIApplication
    let rules: ConnectionRules
    let trustedProxies: TrustedProxies
    let poller = Epoll()
    var listeners: [Listener] = []
    /// Connections by file descriptor.
    var connections: [Connection?] = []
    var liveConnections = 0
    var draining = false
    /// Requests handed to the app and not finished yet: waiting in `ready`, or running.
    var inFlight = 0
    /// Threads running the app (the requests of `inFlight` that left `ready`).
    var inApp = 0
    /// With app threads: connections accepted in the last `freshGrace` seconds whose first
    /// request has not reached the app yet. They count against the free threads, so a worker
    /// does not take more new connections than it has threads for; the grace period keeps a
    /// slow client from holding that place.
    var fresh: [Connection] = []
    static let freshGrace = 0.02
    /// Whether the listeners are in the epoll set; they are taken out while every app thread
    /// has work or while this worker holds more connections than its share.
    var accepting = false
    /// Inside `updateAccepting`, taking connections from the backlog.
    var takingBacklog = false
    /// Open connections this worker holds at most (`--max-connections`, or derived from
    /// RLIMIT_NOFILE): at the cap it stops accepting and the kernel's queue and the other
    /// workers take the load.
    let maxConnections: Int
    /// accept() ran out of file descriptors (EMFILE/ENFILE): the listeners stay out of the
    /// epoll set until then (a level-triggered listener would otherwise wake the loop for
    /// ever), and the episode is logged once.
    var acceptPausedUntil = 0.0
    var acceptFailureLogged = false
    static let acceptPause = 0.25
    /// Log lines any client can cause (refused connections, malformed requests), at most 10 a
    /// second for the worker; the rest are counted in the next line.
    var clientErrorLog = LogBudget(perSecond: 10)
    /// With `--threads` > 1: the threads' hand-over of the loop.
    var crew: Crew?
    /// Complete requests waiting for the app, in the order they came. The thread that has
    /// the loop runs them after handling its batch of events.
    var ready: [AppJob] = []
    var readyHead = 0
    /// Connections with finished responses in `pendingOut`, written once the current batch
    /// of events is handled: a client is woken once per batch rather than once per
    /// response, and the app runs back to back with warm caches (bjoern does the same).
    var held: [Connection] = []
    let accessLog: AccessLog?
    /// `--static-map`: files answered by the loop (nil: none, or no safe way to open them).
    let staticFiles: StaticFiles?
    /// Read buffers for the connections that are reading (see `Connection.buffer`).
    let readBuffers = ReadBuffers(keep: 32)
    /// The main thread's hold on the GIL (it holds it until `run` starts the loop).
    let mainThread: PythonThread
    /// The runner of the thread that has the loop.
    var loopRunner: AppRunner?
    /// When the loop last closed the connections whose deadline passed.
    var lastSweep = 0.0

    /// Connections are edge-triggered: the loop reads until the socket is empty, and an
    /// event for a connection that is in the app is remembered instead of disarming the
    /// connection for the app's time (two epoll_ctl calls per request saved).
    static let connectionEvents = Epoll.readable | Epoll.peerClosed | Epoll.edgeTriggered
    static let hangupEvents = Epoll.peerClosed | Epoll.hangup | Epoll.error

    /// `number`: the worker's number in its generation, 1...N (`apus.worker_id()`).
    init(spec: WorkerLaunch, number: UInt32, interpreter: PythonInterpreter, app: WSGICallable) {
        self.spec = spec
        config = spec.configuration
        self.interpreter = interpreter
        mainThread = interpreter.currentThread()
        application = WSGIApplication(interpreter: interpreter, app: app, scriptName: config.scriptName,
                                      multithread: config.threads > 1, multiprocess: config.processes > 1,
                                      trustedProxies: config.trustedProxies)
        rules = Self.rules(config)
        trustedProxies = config.trustedProxies
        accessLog = config.accessLog || !config.accessLogAlso.isEmpty ? AccessLog(fd: openAccessLog(config.accessLogFile), format: config.accessLogFormat, forwardedFor: config.logXForwardedFor,
                      worker: Int(number), generation: Int(spec.generation), threads: config.threads) : nil
        AccessLog.current = accessLog
        staticFiles = StaticFiles(config.staticMaps)
        maxConnections = config.maxConnections > 0 ? config.maxConnections : Self.derivedMaxConnections()
    }

    /// The protocol rules the options ask for.
    static func rules(_ config: Configuration) -> ConnectionRules {
        var rules = ConnectionRules()
        var limits = HTTPParserLimits()
        limits.maxRequestLine = config.limits.maxRequestLine
        limits.maxHeaderBytes = config.limits.maxHeaderBytes
        limits.maxHeaderCount = config.limits.maxHeaderCount
        limits.maxFieldBytes = config.limits.maxFieldBytes
        limits.maxBodyBytes = config.limits.maxBodyBytes
        rules.http = HTTPRequestParser(limits: limits)
        var uwsgiLimits = UWSGIParserLimits()
        uwsgiLimits.maxVarsBytes = min(65535, config.limits.maxHeaderBytes)
        uwsgiLimits.maxBodyBytes = config.limits.maxBodyBytes
        rules.uwsgi = UWSGIRequestParser(limits: uwsgiLimits)
        rules.bodyMemoryBytes = config.limits.bodyMemoryBytes
        rules.maxBodyBytes = config.limits.maxBodyBytes
        rules.headTimeout = config.limits.headTimeout
        rules.bodyTimeout = config.limits.bodyTimeout
        rules.keepAliveTimeout = config.limits.keepAliveTimeout
        rules.writeBeforeNextRequest = config.threads > 1
        return rules
    }

    /// Half of what the open-files limit leaves after a reserve for the app's own files: a
    /// connection can hold a second descriptor (a body spooled to a temporary file).
    static func derivedMaxConnections() -> Int {
        let files = apus_open_files_limit()
        return files < 0 ? 1024 : max(4, (files - 32) / 2)
    }

    /// Runs until drained. Called on the main thread with the GIL held.
    func run() -> Never {
        installSignals()
        InFlight.setUp(threads: config.threads, role: spec.role, slot: spec.tally.board.slot(Int(spec.slot)))
        startHarakiri()
        RequestBudget.setUp(maxRequests: config.maxRequests, jitter: config.maxRequestsJitter,
                            message: WorkerMessage(kind: .maxRequests, slot: spec.slot, pid: getpid(), generation: spec.generation),
                            statusFD: spec.statusFD)
        for socket in spec.listeners {
            Sys.check("making a listener non-blocking") { apus_set_nonblocking(socket.fd, 1) }
            listeners.append(Listener(socket, proxyProtocol: config.proxyProtocol))
        }
        spec.tally.set(Int(spec.slot), 0)
        if config.threads > 1 {
            let crew = Crew(threads: config.threads)
            crew.register(0)
            self.crew = crew
            register(crew.doneFD, .appThreadsDone)
        }
        let runner = AppRunner(worker: self, index: 0)
        if let path = config.warmupPath {
            let status = application.warmUp(path: path)
            guard let status, (200..<300).contains(status) else {
                Log.error("warm-up GET \(path) answered \(status.map(String.init) ?? "with an error"), not 2xx: this worker is not ready")
                _exit(WorkerExit.warmupFailed)
            }
        }
        // Ready: a socket bound with --reuse-port starts listening now. A bound TCP socket
        // that does not listen reports EPOLLHUP, so none joins the epoll set before.
        for socket in spec.listeners { joinReusePortGroup(socket) }
        updateAccepting()
        WorkerTitle.idle()
        if let crew {
            // The other threads wait for the loop; each makes its Python thread state once
            // the main thread lets the GIL go.
            nonisolated(unsafe) let worker = self
            Crew.start(config.threads - 1) { index in
                crew.register(index)
                let runner = AppRunner(worker: worker, index: index)
                while true {
                    crew.waitForLoop(index)
                    worker.serve(runner)
                }
            }
        }
        mainThread.releaseGIL()
        WorkerMessage(kind: .ready, slot: spec.slot, pid: getpid(), generation: spec.generation).send(to: spec.statusFD)
        lastSweep = Sys.now()
        while true {
            serve(runner)
            crew!.waitForLoop(0)
        }
    }

    /// Makes a TCP socket bound with --reuse-port listen, if no worker did yet (`ReusePort`).
    private func joinReusePortGroup(_ socket: BoundSocket) {
        guard case .tcp = socket.bind.address else { return }
        do {
            switch try ReusePort.join(socket.fd, backlog: config.listenBacklog) {
            case .alreadyListening:
                break
            case .joined(others: 0):
                Log.info("listening on \(socket.bind) (reuse-port: the only instance)")
            case let .joined(others):
                Log.info("listening on \(socket.bind) (reuse-port: new connections come here, not to the \(others) other listening socket\(others == 1 ? "" : "s"))")
            case let .joinedUnsteered(others, e):
                Log.warning("listening on \(socket.bind), but cannot steer new connections to this instance (SO_ATTACH_REUSEPORT_CBPF: \(Sys.describe(e))): the kernel shares them with the \(others) other listening socket\(others == 1 ? "" : "s")")
            case let .joinedUncounted(e):
                Log.warning("listening on \(socket.bind), but cannot read /proc/net/tcp to find other instances (\(Sys.describe(e))): the kernel shares new connections between them")
            }
        } catch {
            Log.error("cannot listen on \(socket.bind): \(error.call): \(Sys.describe(error.error))")
            _exit(WorkerExit.bootError)
        }
    }

    private func installSignals() {
        wakeFD = apus_eventfd()
        precondition(wakeFD >= 0, "eventfd failed: \(Sys.describe(errno))")
        register(wakeFD, .wake)
        Sys.check("installing the SIGTERM handler") { apus_signal(SIGTERM, handleStop) }
        Sys.check("installing the SIGINT handler") { apus_signal(SIGINT, handleStop) }
        Sys.check("installing the SIGQUIT handler") { apus_signal(SIGQUIT, handleQuit) }
        Sys.check("installing the SIGUSR2 handler") { apus_signal(SIGUSR2, handleDeadline) }
        Sys.check("installing the SIGHUP handler") { apus_signal(SIGHUP, handleRetire) }
        // The master's scaling signals mean nothing to a worker (and would stop it): a stray
        // one, or one sent to the process group, is ignored.
        Sys.check("ignoring SIGTTIN") { apus_signal_ignore(SIGTTIN) }
        Sys.check("ignoring SIGTTOU") { apus_signal_ignore(SIGTTOU) }
        if let file = config.logFile {
            logFilePath = strdup(file)
            // The zygote's stderr may be a file --log-maxsize or logrotate has moved since.
            handleReopenLog(SIGUSR1)
        }
        if logFilePath != nil || accessLogPath != nil {
            Sys.check("installing the SIGUSR1 handler") { apus_signal(SIGUSR1, handleReopenLog) }
        } else {
            Sys.check("ignoring SIGUSR1") { apus_signal_ignore(SIGUSR1) }
        }
    }

    /// Puts one of the worker's own descriptors (an eventfd) in the epoll set.
    private func register(_ fd: Int32, _ token: EventToken) {
        if case let .failed(e) = poller.add(fd, Epoll.readable, token.raw) {
            fatalError("epoll_ctl for the worker's own descriptor failed: \(Sys.describe(e))")
        }
    }

    /// The loop, on the thread that has it, until it exits the process (drained) or, with
    /// app threads, until it handed the loop on while in the app.
    func serve(_ me: AppRunner) {
        loopRunner = me
        var events = [apus_event](repeating: apus_event(), count: 128)
        while true {
            if readyHead < ready.count {
                let job = ready[readyHead]
                readyHead += 1
                if readyHead == ready.count {
                    ready.removeAll(keepingCapacity: true)
                    readyHead = 0
                }
                inApp += 1
                crew?.leave(me.index)
                // The GIL is kept across the requests run back to back.
                if !me.thread.holdsGIL { me.thread.acquireGIL() }
                me.run(job)
                let keep = me.writer.canKeepAlive
                if let crew, !crew.returned(me.index, job, keepAlive: keep) {
                    me.thread.releaseGIL()
                    return
                }
                finish(job, keepAlive: keep, now: Sys.now())
                continue
            }
            if me.thread.holdsGIL { me.thread.releaseGIL() }
            while !held.isEmpty { writeHeld() }
            let now = Sys.now()
            reopenAccessLogIfAsked()
            let logDue = accessLog?.flushIfDue(now: now)
            if !fresh.isEmpty { expireFresh(now) }
            updateAccepting()
            if now - lastSweep >= 1 {
                lastSweep = now
                sweepTimeouts(now)
            }
            if stopRequested != 0 && !draining { beginDrain(takeQueued: stopRequested == 1) }
            // Connections whose request --harakiri gave up on wait only for a call that may
            // never return: they count as gone.
            if draining && liveConnections == (HarakiriClaim.enabled ? HarakiriClaim.abandonedConnections : 0)
                && readyHead == ready.count {
                accessLog?.flush()
                _exit(0)
            }
            if readyHead < ready.count { continue }
            // Out of the accept rotation, look again soon: the others' counts change too.
            // Awake in time to write buffered access lines.
            let timeout: Int32 = min((accepting && fresh.isEmpty) || draining ? 1000 : 10, logDue ?? 1000)
            let n = crew.map { crew in crew.polling(me.index) { poller.wait(into: &events, timeoutMS: timeout) } }
                ?? poller.wait(into: &events, timeoutMS: timeout)
            let t = Sys.now()
            for i in 0..<n {
                let event = events[i]
                switch EventToken(event.data) {
                case let .connection(fd)?:
                    guard let conn = connections[Int(fd)] else { continue }
                    if conn.machine.writeBlocked { writePending(conn) }
                    else { readable(conn, now: t, hangup: event.events & Self.hangupEvents != 0) }
                case let .listener(index)?:
                    listenerReady(index, now: t)
                case .wake?:
                    Sys.drain(wakeFD)
                case .appThreadsDone?:
                    crew?.collect { job, keep in finish(job, keepAlive: keep, now: t) }
                case nil:
                    preconditionFailure("epoll event with an unknown token \(event.data)")
                }
            }
        }
    }

    /// After SIGUSR1: the buffered access lines go to the file they were made for, then the
    /// file is opened again by its name (logrotate moved it).
    private func reopenAccessLogIfAsked() {
        guard accessLogReopenAsked != 0, let path = accessLogPath else { return }
        accessLogReopenAsked = 0
        accessLog?.flush()
        reopen(path, onto: accessLogFD)
    }

    /// Closes the connections whose deadline passed (about once a second).
    private func sweepTimeouts(_ t: Double) {
        for case let conn? in connections
        where conn.machine.expired(now: t, buffered: conn.buffered, draining: draining, rules: rules) {
            closeConnection(conn)
        }
    }

    /// Stop taking new connections, then finish what is in flight. On a stop, first take what
    /// the kernel already queued, since no worker will stay to take it; a worker retired by
    /// a reload leaves it to the workers that stay, so no request that arrives after a
    /// reload completed is served by the old code. A socket a zerg server handed keeps its
    /// queue (the zerg server holds it open): it is left to the next instance either way.
    private func beginDrain(takeQueued: Bool) {
        draining = true
        WorkerTitle.markDraining()
        spec.tally.set(Int(spec.slot), -1)  // out of the accept rotation for good
        for l in listeners {
            // Until the queue is empty: a connection closed at once (its client gave up)
            // or a failed one does not end it. With --reuse-port a newer instance takes
            // the new connections meanwhile, so this ends even under load.
            while takeQueued && !config.zergSockets.contains(l.fd) && acceptOne(l, now: Sys.now()) {}
            if accepting { stopWatching(l) }
            Sys.close(l.fd)
        }
        listeners.removeAll()
        let t = Sys.now()
        for case let conn? in connections {
            guard case .read? = conn.machine.drain(buffered: conn.buffered) else { continue }
            let open = conn.fill()
            if conn.buffered > 0 { process(conn, now: t, peerClosed: !open) }
            else { closeAfterPending(conn) }
        }
    }
}
