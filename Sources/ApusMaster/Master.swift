#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusIPC
import ApusObserve
import ApusSys

/// The master: owns the listening sockets, forks and supervises the workers, and turns
/// signals, FIFO commands and touched files into lifecycle steps. It is single-threaded and
/// never loads Python, so an app can never wedge it and forking from it is always safe.
///
/// This file is the spine: `run` sets up and loops; each signal, FIFO command and worker
/// message has a `handle…` verb. The decisions are pure values: the reload sequencing is
/// `ReloadPlan` (Reload.swift), the workers' bookkeeping `WorkerTable` (WorkerTable.swift).
/// Their answers are carried out in MasterGenerations.swift (a generation begins, commits
/// or is abandoned) and MasterChildren.swift (forking, reaping, signalling). Each
/// generation's zygote is a `Zygote` (Zygote.swift); the FIFO, touch files, pidfile and log
/// file are in Controls.swift, the status pipe in StatusPipe.swift.
public final class Master {
    /// Exit status when no worker could import the app at start.
    public static let appLoadFailed: Int32 = 4
    /// Exit status when the sockets, FIFO or pidfile could not be set up.
    public static let startFailed: Int32 = 1

    /// The master's own outcomes for `reloadConfiguration`: the new settings or why not.
    public typealias ConfigurationSource = () -> Result<(Configuration, PythonInstallation), ConfigurationFailure>
    public struct ConfigurationFailure: Error { public let message: String; public init(_ m: String) { message = m } }

    /// One generation: its settings and its zygote.
    struct Generation {
        let config: Configuration
        let python: PythonInstallation
        /// The reload that started it (nil for the first generation).
        let kind: ReloadKind?
        let zygote: Zygote

        init(_ g: UInt32, config: Configuration, python: PythonInstallation, kind: ReloadKind?) {
            self.config = config
            self.python = python
            self.kind = kind
            zygote = Zygote(generation: g, preload: config.preload)
        }
    }

    /// Turn a launch and the zygote's command pipe into what the child runs, in the master
    /// before the fork: the child then starts from values it only reads (see "Memory of a
    /// worker" in docs/architecture.md).
    let prepareZygote: (WorkerLaunch, Int32) -> () -> Never
    let reloadConfiguration: ConfigurationSource
    let version: String
    /// When this master image started (Unix time): the app's `apus.started_on`.
    let startedOn = Int(time(nil))

    /// The live generations: the serving one, the one starting, and older ones whose
    /// zygote has not exited yet. Entries are only added and removed: what changes in a
    /// generation is its zygote, a reference.
    var generations: [UInt32: Generation] = [:]
    var plan: ReloadPlan
    /// The configuration waiting for a graceful reload that is queued behind another.
    var pendingConfig: (Configuration, PythonInstallation)?
    var sockets: [Bind: Int32] = [:]
    var table: WorkerTable
    var stopping = false
    var exitStatus: Int32 = 0
    /// When the current reload step started (for --reload-timeout).
    var stepStartedAt = 0.0
    var status = StatusPipe.none
    var fifo: MasterFIFO?
    var pidfile: String?
    var touchFiles = TouchFiles([])
    /// Workers' open-connection counts, shared with them (accept balancing).
    let tally: ConnectionTally
    /// How to start this master again for an upgrade in place, and where that stands.
    let relaunch: Relaunch
    var upgrade = UpgradeStep.idle
    /// What the previous image handed over, when this one was started by an upgrade.
    let inherited: UpgradeState?
    /// `--uid`/`--gid` as decided at start (DropPrivileges.swift).
    let privileges: PrivilegeDrop
    /// libpython of the live generations, mapped before any worker is forked.
    var libraries = MappedLibraries()
    /// `--subscribe-to`: announcements to subscription routers.
    var subscriber = Subscriber()
    /// `--cheaper`: the adaptive policy of the serving generation, and when it last sampled.
    var cheaper: Cheaper?
    var cheaperSampledAt = 0.0
    /// `--max-worker-lifetime`, `--reload-on-rss`, `--evil-reload-on-rss` (MasterSupervision.swift).
    var recycleWatch = RecycleWatch(maxLifetime: 0, reloadOnRSSMiB: 0, evilReloadOnRSSMiB: 0)
    /// `--attach-daemon` commands (MasterDaemons.swift), read at start, and when the ones
    /// still running at shutdown get SIGKILL.
    var daemons: [AttachedDaemon]
    var daemonDeadline: Double?
    /// `--log-maxsize`: when the log file's size was last looked at.
    var logCheckedAt = 0.0
    /// `--stats` and `--metrics` (ObserveServer.swift, MasterObserve.swift).
    let observers = ObserveServer()
    /// Reloads, harakiri replacements and respawns, for the stats and the metrics.
    var counters = MasterCounters()
    /// The answers of the workers that are gone, for `/metrics` (MasterMetrics.swift).
    var answerTotals = AnswerTotals()
    /// SIGTERM arrived: not ready from now on (`/readyz`), even while `--shutdown-delay`
    /// keeps serving before the drain.
    var shutdownRequested = false
    /// `--shutdown-delay`: when the graceful shutdown that SIGTERM asked for begins.
    var shutdownAt: Double?

    /// - Parameters:
    ///   - inherited: set when this image was started by an upgrade in place.
    ///   - privileges: what `--uid`/`--gid` ask of the master once its sockets are bound.
    public init(config: Configuration, python: PythonInstallation, version: String,
                relaunch: Relaunch, inherited: UpgradeState? = nil, privileges: PrivilegeDrop = .none,
                prepareZygote: @escaping (WorkerLaunch, Int32) -> () -> Never,
                reloadConfiguration: @escaping ConfigurationSource) {
        self.version = version
        self.relaunch = relaunch
        self.inherited = inherited
        self.privileges = privileges
        tally = inherited.map { ConnectionTally(adopting: $0.tallyFD) } ?? ConnectionTally()
        self.prepareZygote = prepareZygote
        self.reloadConfiguration = reloadConfiguration
        generations[1] = Generation(1, config: config, python: python, kind: nil)
        plan = ReloadPlan(serving: 1)
        table = WorkerTable(desired: Self.initialWorkers(config))
        cheaper = Self.cheaperPolicy(config)
        daemons = config.attachDaemons.map { AttachedDaemon(command: $0) }
    }

    /// The serving generation. It is never removed: a commit replaces it first.
    var serving: Generation {
        guard let gen = generations[plan.serving] else { preconditionFailure("the serving generation is gone") }
        return gen
    }

    /// The configuration in force (the serving generation's).
    var config: Configuration { serving.config }

    // MARK: Main loop

    /// Runs until the server stops; returns the exit status.
    public func run() -> Int32 {
        Log.role = "master"
        // Workers forked by a zygote are re-parented to the master, which reaps them.
        Sys.check("prctl(PR_SET_CHILD_SUBREAPER)") { apus_set_child_subreaper() }
        // The workers' --max-connections default follows the limit.
        if apus_raise_open_files_limit() < 0 { Log.warning("cannot read the open files limit: \(Sys.describe(errno))") }
        SignalQueue.install()
        Umask.set(config.umask)
        guard setUp() else { return Self.startFailed }
        // Root is dropped once the sockets and files that need it are open, before the
        // first fork: no zygote or worker ever runs as root.
        guard applyPrivileges() else {
            tearDown()
            return Self.startFailed
        }
        logBanner()
        if let inherited {
            adopt(inherited)
            perform(plan.request(.upgrade, workers: table.desired))
        } else {
            startGeneration(plan.serving)
        }
        startDaemons()

        while true {
            waitForEvents(timeout: stopping || plan.isReloading ? 100 : 500)
            for sig in SignalQueue.drain() { handle(signal: sig) }
            for command in fifo?.commands() ?? [] { handle(command: command) }
            for message in status.messages() { handle(message) }
            reapChildren()
            observers.serve(now: Sys.now(), answer: observe)
            carryOnUpgrade()
            let t = Sys.now()
            if stopping {
                if table.isEmpty && !generations.values.contains(where: { $0.zygote.isRunning }) && !daemonsRunning { break }
                enforceDeadlines(t)
                enforceDaemonDeadline(t)
                continue
            }
            if exitStatus != 0 { break }
            if let at = shutdownAt, t >= at { beginShutdown("--shutdown-delay passed") }
            checkTouchFiles(t)
            rotateLogIfFull(t)
            checkReloadTimeout(t)
            enforceDeadlines(t)
            superviseWorkers(t)
            keepStrength(now: t)
            adaptWorkers(now: t)
            subscriber.announce(config.subscriptions, frequency: config.subscribeFrequency,
                                ready: table.workers.contains { $0.ready } && !shutdownRequested, now: t)
        }
        tearDown()
        Log.info("stopped")
        return exitStatus
    }

    /// Log file, sockets, status pipe, pidfile, FIFO, touch files: everything that may need
    /// root, before `applyPrivileges` drops it. False: already logged.
    private func setUp() -> Bool {
        if let file = config.logFile, let e = LogFile.reopen(file) {
            Log.error("--log-file: cannot open \(file): \(Sys.describe(e))")
            return false
        }
        if let file = config.accessLogFile, let e = LogFile.create(file) {
            Log.error("--access-logfile: cannot open \(file): \(Sys.describe(e))")
            return false
        }
        do {
            if let inherited { adoptDescriptors(inherited) }
            for bind in config.binds where sockets[bind] == nil {
                sockets[bind] = try ListenSocket.open(bind, backlog: config.listenBacklog,
                                                      mode: config.socketMode, owner: config.socketOwner,
                                                      reusePort: config.reusePort)
            }
            if inherited == nil { status = try StatusPipe.open() }
            if let path = config.pidfile {
                do {
                    try Pidfile.write(path)
                } catch {
                    // An upgraded image has the previous image's pid, so its file is still
                    // right; after --uid this image may not open a file root made.
                    guard inherited != nil else { throw error }
                    Log.warning("\(error) (the file the previous image wrote stays: the pid is the same)")
                }
                pidfile = path
            }
            if let path = config.masterFIFO, fifo == nil { fifo = try MasterFIFO(path: path) }
            try observers.open(config: config)
        } catch {
            Log.error("\(error)")
            return false
        }
        touchFiles = TouchFiles([config.touchReload, config.touchWorkersReload, config.touchChainReload].compactMap { $0 })
        return true
    }

    /// An upgraded image takes over the previous one's status pipe, FIFO (when the path is
    /// the same) and the sockets its configuration still binds; the others are closed (the
    /// old workers keep their own copies until they exit).
    private func adoptDescriptors(_ state: UpgradeState) {
        status = StatusPipe.adopt(readFD: state.statusRead, writeFD: state.statusWrite)
        if state.fifoFD >= 0 {
            if config.masterFIFO == state.fifoPath { fifo = MasterFIFO(adopting: state.fifoFD, path: state.fifoPath) }
            else { MasterFIFO(adopting: state.fifoFD, path: state.fifoPath).remove() }
        }
        for socket in state.sockets {
            if let bind = config.binds.first(where: { $0.description == socket.bind }), sockets[bind] == nil {
                _ = apus_set_cloexec(socket.fd, 1)
                sockets[bind] = socket.fd
            } else {
                Sys.close(socket.fd)
                if let path = socket.unixPath { removeFile(path) }
                Log.info("stopped listening on \(socket.bind) (not in the new configuration)")
            }
        }
    }

    private func tearDown() {
        for fd in sockets.values { Sys.close(fd) }
        for bind in sockets.keys { if case let .unix(path) = bind.address { removeFile(path) } }
        fifo?.remove()
        observers.close()
        if let pidfile { Pidfile.remove(pidfile) }
    }

    /// Sleeps until a signal, a FIFO command or a worker message arrives, or `timeout` ms.
    private func waitForEvents(timeout: Int32) {
        // A negative descriptor (no FIFO) is skipped by poll.
        var pfds = [pollfd(fd: SignalQueue.readFD, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: status.readFD, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: fifo?.fd ?? -1, events: Int16(POLLIN), revents: 0)] + observers.pollDescriptors()
        let count = nfds_t(pfds.count)
        if case let .failed(e) = Sys.call({ poll(&pfds, count, timeout) }) {
            Log.error("poll: \(Sys.describe(e))")  // ENOMEM: the loop goes on and waits again
        }
    }

    // MARK: Signals, commands and messages

    private func handle(signal sig: Int32) {
        switch sig {
        case SIGCHLD: break  // reapChildren runs every turn
        case SIGTERM, SIGINT: handleTerm(sig == SIGTERM ? "SIGTERM" : "SIGINT")
        case SIGQUIT: handleQuit("SIGQUIT")
        case SIGHUP: requestReload(.graceful, reason: "SIGHUP")
        case SIGTTIN: handleTTIN("SIGTTIN")
        case SIGTTOU: handleTTOU("SIGTTOU")
        case SIGUSR1: reopenLog("SIGUSR1")
        case SIGUSR2: requestUpgrade(reason: "SIGUSR2")
        default: break
        }
    }

    /// uWSGI's master FIFO commands, one byte each.
    private func handle(command: UInt8) {
        switch command {
        case UInt8(ascii: "r"): requestReload(.graceful, reason: "FIFO r")
        case UInt8(ascii: "w"): requestReload(.workers, reason: "FIFO w")
        case UInt8(ascii: "c"): requestReload(.chain, reason: "FIFO c")
        case UInt8(ascii: "f"): requestUpgrade(reason: "FIFO f")
        case UInt8(ascii: "q"): handleTerm("FIFO q")
        case UInt8(ascii: "Q"): handleQuit("FIFO Q")
        case UInt8(ascii: "+"): handleTTIN("FIFO +")
        case UInt8(ascii: "-"): handleTTOU("FIFO -")
        case UInt8(ascii: "s"): logStats()
        case UInt8(ascii: "l"): reopenLog("FIFO l")
        case UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: " "): break
        default:
            let shown = command >= 32 && command < 127 ? "'\(Character(Unicode.Scalar(command)))'" : "byte \(command)"
            Log.warning("master FIFO: unknown command \(shown) ignored")
        }
    }

    /// What a worker or zygote said on the status pipe.
    private func handle(_ message: WorkerMessage) {
        switch message.kind {
        case .zygoteReady: handleZygoteReady(message)
        case .started: handleStarted(message)
        case .ready: handleReady(message)
        case .maxRequests: recycle(pid: message.pid, .maxRequests)
        case .harakiri: recycle(pid: message.pid, .harakiri)
        case .reloadRequested: handleAppReload(.graceful, message, call: "reload()")
        case .chainReloadRequested: handleAppReload(.chain, message, call: "chain_reload()")
        case .workersReloadRequested: handleAppReload(.workers, message, call: "workers_reload()")
        case .sourceChanged: handleSourceChanged(message)
        }
    }

    /// The app called one of the `apus` module's reload functions: the same reload as the
    /// FIFO command. The worker that asked keeps serving until it is retired like the others.
    private func handleAppReload(_ kind: ReloadKind, _ message: WorkerMessage, call: String) {
        guard let worker = table.worker(pid: message.pid) else { return }
        requestReload(kind, reason: "apus.\(call) in worker \(worker.slot) (pid \(message.pid))")
    }

    /// --py-autoreload / --reload: a worker saw a source file of the app change. Only the
    /// word of a worker staying in the newest generation counts: an older one is already
    /// being replaced by workers that import the files afresh, and a worker being recycled
    /// watches next to its replacement, so one change would be reported twice.
    private func handleSourceChanged(_ message: WorkerMessage) {
        guard let worker = table.worker(pid: message.pid), worker.generation == (plan.incoming ?? plan.serving),
              !worker.retiring, worker.recycling == nil else { return }
        requestReload(.chain, reason: "autoreload (a source file changed, seen by worker \(worker.slot))")
    }

    /// Not ready at once; with `--shutdown-delay`, serve on until `shutdownAt` (the loop
    /// checks it) so load balancers see `/readyz` fail first. A second one does not wait.
    private func handleTerm(_ source: String) {
        if stopping { return }
        if shutdownRequested || config.shutdownDelay <= 0 {
            shutdownRequested = true
            beginShutdown(source)
            return
        }
        shutdownRequested = true
        shutdownAt = Sys.now() + config.shutdownDelay
        subscriber.unsubscribe(config.subscriptions)
        Log.info("\(source): not ready from now on (/readyz answers 503); serving \(config.shutdownDelay) s more (--shutdown-delay), then a graceful shutdown")
    }

    private func beginShutdown(_ reason: String) {
        shutdownAt = nil
        Log.info("\(reason): graceful shutdown (up to \(config.shutdownTimeout) s)")
        stopGracefully()
    }

    private func handleQuit(_ source: String) {
        Log.info("\(source): immediate shutdown")
        stopNow()
    }

    private func handleTTIN(_ source: String) {
        table.desired = min(table.desired + 1, ConnectionTally.maxSlots / 2)
        Log.info("\(source): \(table.desired) workers")
    }

    private func handleTTOU(_ source: String) {
        guard table.desired > 1 else { return }
        table.desired -= 1
        Log.info("\(source): \(table.desired) workers")
    }

    private func reopenLog(_ source: String) {
        let accessFile = config.accessLogFile.flatMap { $0 == AccessLogDestination.stdout ? nil : $0 }
        guard config.logFile != nil || accessFile != nil else {
            Log.info("\(source): logging to stderr, no log file to reopen")
            return
        }
        if let file = config.logFile {
            if let e = LogFile.reopen(file) { Log.error("\(source): cannot reopen \(file): \(Sys.describe(e))") }
            else { Log.info("\(source): reopened \(file)") }
        }
        if let file = accessFile { Log.info("\(source): the workers reopen \(file)") }
        for pid in table.pids { deliver(SIGUSR1, to: pid) }
    }

    private func handleZygoteReady(_ message: WorkerMessage) {
        let g = message.generation
        guard let gen = generations[g], gen.zygote.pid == message.pid else { return }
        let pending = gen.zygote.becameReady()
        Log.info(gen.config.preload ? "generation \(g): application preloaded (pid \(message.pid))"
                                    : "generation \(g): Python started in the zygote (pid \(message.pid))")
        if pending > 0 { spawnWorkers(generation: g, count: pending) }
        else if g == plan.serving { keepStrength(now: Sys.now()) }
    }

    private func handleStarted(_ message: WorkerMessage) {
        let expected = table.started(slot: message.slot, generation: message.generation, pid: message.pid)
        if stopping || !expected { deliver(SIGTERM, to: message.pid) }  // unexpected: nobody waits for it any more
    }

    private func handleReady(_ message: WorkerMessage) {
        let failures = table.bootFailures
        guard let worker = table.ready(slot: message.slot, pid: message.pid) else { return }
        Log.info("worker \(message.slot) ready (pid \(message.pid), generation \(message.generation))\(failures > 0 ? " after \(failures) failed start\(failures == 1 ? "" : "s")" : "")")
        if stopping { deliver(SIGTERM, to: message.pid) } else if worker.retiring { deliver(SIGHUP, to: message.pid) }
        perform(plan.ready(generation: message.generation, workers: workerCount(for: plan.pending)))
    }

    // MARK: Reloads

    /// Starts a reload, or queues it behind the one running (coalesced into the strongest).
    private func requestReload(_ kind: ReloadKind, reason: String) {
        if stopping { return }
        if kind == .graceful {
            // Read the configuration now, so a bad one is reported at once and nothing stops.
            switch reloadConfiguration() {
            case let .success(next): pendingConfig = next
            case let .failure(problem):
                Log.error("reload failed: \(problem.message); generation \(plan.serving) keeps serving")
                return
            }
        }
        if plan.isReloading { Log.info("\(reason): \(kind) queued behind the reload in progress") }
        else { Log.info("\(reason): \(kind)") }
        perform(plan.request(kind, workers: workerCount(for: kind)))
    }

    func workerCount(for kind: ReloadKind?) -> Int {
        if kind == .graceful, let next = pendingConfig {
            // Adaptive: as many as now, within the new bounds.
            return next.0.cheaper > 0 ? min(max(table.desired, next.0.cheaper), next.0.processes) : next.0.processes
        }
        return table.desired
    }

    private func checkTouchFiles(_ t: Double) {
        let files: [(String?, ReloadKind)] = [(config.touchReload, .graceful), (config.touchWorkersReload, .workers),
                                              (config.touchChainReload, .chain)]
        for (file, kind) in touchFiles.touched(files, now: t) { requestReload(kind, reason: "touched \(file)") }
    }

    // MARK: Stopping

    /// Stop taking connections, let every worker answer what it has, then exit.
    private func stopGracefully() {
        stopping = true
        // Routers first: they stop sending new requests before the workers stop accepting.
        subscriber.unsubscribe(config.subscriptions)
        // The master's copies go first, so the workers' last accept drains what is queued.
        for fd in sockets.values { Sys.close(fd) }
        for pid in table.stopAll(deadline: Sys.now() + config.shutdownTimeout) { deliver(SIGTERM, to: pid) }
        for g in generations.keys { stopZygote(of: g) }
        sockets = sockets.mapValues { _ in -1 }
        stopDaemons(deadline: Sys.now() + config.reloadMercy)
    }

    private func stopNow() {
        stopping = true
        subscriber.unsubscribe(config.subscriptions)
        for pid in table.pids { deliver(SIGKILL, to: pid) }
        table.dropUnborn()
        for gen in generations.values where gen.zygote.isRunning { deliver(SIGKILL, to: gen.zygote.pid) }
        stopDaemons(deadline: Sys.now())
    }

    /// The application cannot be imported at start: stop, giving the workers 5 s.
    func halt(_ reason: String) {
        Log.error(reason)
        exitStatus = Self.appLoadFailed
        stopGracefully()
        table.setDeadlines(Sys.now() + 5)
    }

    // MARK: Reports

    private func logStats() {
        let t = Sys.now()
        Log.info("stats: generation \(plan.serving) serving\(plan.incoming.map { ", generation \($0) starting" } ?? ""), \(table.workers.count) worker processes, \(table.desired) wanted")
        for w in table.workers.sorted(by: { $0.slot < $1.slot }) {
            let state = w.retiring ? "retiring" : (w.ready ? "ready" : "starting")
            Log.info("stats: worker \(w.slot) pid \(w.pid) generation \(w.generation) \(state), up \(Int(t - w.startedAt)) s, connections \(max(0, tally.count(Int(w.slot))))")
        }
    }

    private func logBanner() {
        // An inherited socket is named by its descriptor and, when it has one, its address.
        let binds = config.binds.map { bind in
            guard case let .fd(n) = bind.address, let address = ListenSocket.localAddress(n) else { return bind.description }
            return "\(bind.description) (\(Bind(address: address, proto: bind.proto).description))"
        }.joined(separator: ", ")
        let threads = config.threads == 1 ? "1 thread" : "\(config.threads) threads"
        let processes = config.processes == 1 ? "1 worker" : "\(config.processes) workers"
        let python = serving.python
        Log.info("apus \(version) (pid \(getpid())), Python \(python.version) at \(python.programPath)")
        Log.info("app \(config.app.description), \(processes) x \(threads), \(config.preload ? "preloaded once then forked" : "imported by each worker, forked with Python started")")
        Log.info(config.reusePort ? "bound to \(binds) (--reuse-port: listening once a worker has the app loaded)" : "listening on \(binds)")
        if let fifo = config.masterFIFO { Log.info("master FIFO at \(fifo)") }
    }
}
