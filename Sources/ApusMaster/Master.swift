#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusIPC
import ApusObserve

/// The master: owns the listening sockets, forks and supervises the workers, and turns
/// signals, FIFO commands and touched files into lifecycle steps. It is single-threaded and
/// never loads Python, so an app can never wedge it and forking from it is always safe.
///
/// The whole lifecycle is in this file: `run` sets up and loops; each signal and FIFO
/// command has a `handle…` verb; workers are started by `spawnWorkers`, collected by
/// `reapChildren`, kept at strength by `manageWorkers`, replaced by `requestReload` (whose
/// sequencing is the pure `ReloadPlan`), and stopped by `stopGracefully` / `stopNow`.
public final class Master {
    /// Exit status when no worker could import the app at start.
    public static let appLoadFailed: Int32 = 4
    /// Exit status when the sockets, FIFO or pidfile could not be set up.
    public static let startFailed: Int32 = 1

    /// The master's own outcomes for `reloadConfiguration`: the new settings or why not.
    public typealias ConfigurationSource = () -> Result<(Configuration, PythonInstallation), ConfigurationFailure>
    public struct ConfigurationFailure: Error { public let message: String; public init(_ m: String) { message = m } }

    struct WorkerRecord {
        var slot: UInt32
        /// 0 until the worker, forked by its generation's zygote, says `started`.
        var pid: pid_t
        var generation: UInt32
        var ready = false
        var startedAt: Double
        /// Told to stop taking requests; exits when its requests are done.
        var retiring = false
        /// When the worker is told its time is up (SIGUSR2), then killed a second later.
        var deadline: Double? = nil
        var cutSent = false
    }

    /// One generation's settings and its zygote: the process, with Python started (and with
    /// --preload the app imported), that forks the generation's workers.
    struct Generation {
        var config: Configuration
        var python: PythonInstallation
        var zygotePID: pid_t = 0
        var zygoteReady = false
        var zygoteCommandFD: Int32 = -1
        /// Workers asked for before the zygote was ready.
        var pendingSpawns = 0
        /// The reload that started it (nil for the first generation).
        var kind: ReloadKind? = nil
    }

    /// Turn a launch and the zygote's command pipe into what the child runs, in the master
    /// before the fork: the child then starts from values it only reads (see "Memory of a
    /// worker" in docs/architecture.md).
    let prepareZygote: (WorkerLaunch, Int32) -> () -> Never
    let reloadConfiguration: ConfigurationSource
    let version: String

    private var generations: [UInt32: Generation] = [:]
    private var plan: ReloadPlan
    /// The configuration waiting for a graceful reload that is queued behind another.
    private var pendingConfig: (Configuration, PythonInstallation)?
    private var sockets: [Bind: Int32] = [:]
    private var workers: [WorkerRecord] = []
    private var desiredWorkers: Int
    private var everReady = false
    private var stopping = false
    private var exitStatus: Int32 = 0
    /// Consecutive boot failures, for the respawn back-off.
    private var bootFailures = 0
    private var nextSpawnAt = 0.0
    /// When the current reload step started (for --reload-timeout).
    private var stepStartedAt = 0.0
    private var statusRead: Int32 = -1
    private var statusWrite: Int32 = -1
    private var statusBuffer: [UInt8] = []
    private var fifoFD: Int32 = -1
    /// Modification time of each touch file when last looked at (nil: it did not exist).
    private var touchTimes: [String: timespec?] = [:]
    private var lastTouchCheck = 0.0
    /// Workers' open-connection counts, shared with them (accept balancing).
    private let tally = ConnectionTally()
    /// libpython of the live generations, mapped before any worker is forked.
    private var libraries = MappedLibraries()

    public init(config: Configuration, python: PythonInstallation, version: String,
                prepareZygote: @escaping (WorkerLaunch, Int32) -> () -> Never,
                reloadConfiguration: @escaping ConfigurationSource) {
        self.version = version
        self.prepareZygote = prepareZygote
        self.reloadConfiguration = reloadConfiguration
        generations[1] = Generation(config: config, python: python)
        plan = ReloadPlan(serving: 1)
        desiredWorkers = config.processes
    }

    /// The configuration in force (the serving generation's).
    private var config: Configuration { generations[plan.serving]!.config }

    // MARK: Main loop

    /// Runs until the server stops; returns the exit status.
    public func run() -> Int32 {
        Log.role = "master"
        _ = apus_set_child_subreaper()  // workers forked by a preloader become ours
        _ = apus_raise_open_files_limit()  // the workers' --max-connections default follows it
        SignalQueue.install()
        guard setUp() else { return Self.startFailed }
        logBanner()
        startGeneration(plan.serving)

        while true {
            waitForEvents(timeout: stopping || plan.isReloading ? 100 : 500)
            for sig in SignalQueue.drain() { handle(signal: sig) }
            readFIFO()
            readStatusMessages()
            reapChildren()
            let t = now()
            if stopping {
                if workers.isEmpty && !generations.values.contains(where: { $0.zygotePID > 0 }) { break }
                enforceDeadlines(t)
                continue
            }
            if exitStatus != 0 { break }
            checkTouchFiles(t)
            checkReloadTimeout(t)
            enforceDeadlines(t)
            manageWorkers(now: t)
        }
        tearDown()
        Log.info("stopped")
        return exitStatus
    }

    /// Sockets, status pipe, log file, pidfile, FIFO, touch files. False: already logged.
    private func setUp() -> Bool {
        if let file = config.logFile, !reopenLogFile(file) {
            Log.error("--log-file: cannot open \(file): \(String(cString: strerror(errno)))")
            return false
        }
        do {
            for bind in config.binds where sockets[bind] == nil {
                sockets[bind] = try ListenSocket.open(bind, backlog: config.listenBacklog,
                                                      mode: config.socketMode, owner: config.socketOwner)
            }
        } catch {
            Log.error("\(error)")
            return false
        }
        var fds: [Int32] = [0, 0]
        _ = apus_pipe_cloexec(&fds, 1)
        statusRead = fds[0]
        statusWrite = fds[1]
        _ = apus_set_nonblocking(statusWrite, 0)
        if let pidfile = config.pidfile {
            let text = "\(getpid())\n"
            guard let f = fopen(pidfile, "w") else {
                Log.error("--pidfile: cannot write \(pidfile): \(String(cString: strerror(errno)))")
                return false
            }
            fputs(text, f)
            fclose(f)
        }
        if let path = config.masterFIFO, !openFIFO(path) { return false }
        for file in [config.touchReload, config.touchWorkersReload, config.touchChainReload].compactMap({ $0 }) {
            touchTimes[file] = modificationTime(file)
        }
        return true
    }

    private func tearDown() {
        for fd in sockets.values { close(fd) }
        for bind in sockets.keys { if case let .unix(path) = bind.address { unlink(path) } }
        if let path = config.masterFIFO { close(fifoFD); unlink(path) }
        if let pidfile = config.pidfile { unlink(pidfile) }
    }

    private func waitForEvents(timeout: Int32) {
        var pfds = [pollfd(fd: SignalQueue.readFD, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: statusRead, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: fifoFD, events: Int16(POLLIN), revents: 0)]
        _ = poll(&pfds, fifoFD >= 0 ? 3 : 2, timeout)
    }

    // MARK: Signals and commands

    private func handle(signal sig: Int32) {
        switch sig {
        case SIGCHLD: break  // reapChildren runs every turn
        case SIGTERM, SIGINT: handleTerm(sig == SIGTERM ? "SIGTERM" : "SIGINT")
        case SIGQUIT: handleQuit("SIGQUIT")
        case SIGHUP: requestReload(.graceful, reason: "SIGHUP")
        case SIGTTIN: handleTTIN("SIGTTIN")
        case SIGTTOU: handleTTOU("SIGTTOU")
        case SIGUSR1: handleUSR1()
        default: break
        }
    }

    /// uWSGI's master FIFO commands, one byte each.
    private func handle(command: UInt8) {
        switch command {
        case UInt8(ascii: "r"): requestReload(.graceful, reason: "FIFO r")
        case UInt8(ascii: "w"): requestReload(.workers, reason: "FIFO w")
        case UInt8(ascii: "c"): requestReload(.chain, reason: "FIFO c")
        case UInt8(ascii: "q"): handleTerm("FIFO q")
        case UInt8(ascii: "Q"): handleQuit("FIFO Q")
        case UInt8(ascii: "+"): handleTTIN("FIFO +")
        case UInt8(ascii: "-"): handleTTOU("FIFO -")
        case UInt8(ascii: "s"): logStats()
        case UInt8(ascii: "\n"), UInt8(ascii: "\r"), UInt8(ascii: " "): break
        default:
            let shown = command >= 32 && command < 127 ? "'\(Character(Unicode.Scalar(command)))'" : "byte \(command)"
            Log.warning("master FIFO: unknown command \(shown) ignored")
        }
    }

    private func handleTerm(_ source: String) {
        if stopping { return }
        Log.info("\(source): graceful shutdown (up to \(config.shutdownTimeout) s)")
        stopGracefully()
    }

    private func handleQuit(_ source: String) {
        Log.info("\(source): immediate shutdown")
        stopNow()
    }

    private func handleTTIN(_ source: String) {
        desiredWorkers = min(desiredWorkers + 1, ConnectionTally.maxSlots / 2)
        Log.info("\(source): \(desiredWorkers) workers")
    }

    private func handleTTOU(_ source: String) {
        guard desiredWorkers > 1 else { return }
        desiredWorkers -= 1
        Log.info("\(source): \(desiredWorkers) workers")
    }

    private func handleUSR1() {
        guard let file = config.logFile else {
            Log.info("SIGUSR1: logging to stderr, no log file to reopen")
            return
        }
        if reopenLogFile(file) { Log.info("SIGUSR1: reopened \(file)") }
        for w in workers where w.pid > 0 { kill(w.pid, SIGUSR1) }
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

    private func workerCount(for kind: ReloadKind?) -> Int {
        if kind == .graceful, let next = pendingConfig { return next.0.processes }
        return desiredWorkers
    }

    /// Carries out what the plan decided.
    private func perform(_ actions: [ReloadPlan.Action]) {
        for action in actions {
            switch action {
            case let .begin(g, kind):
                beginGeneration(g, kind)
            case let .spawn(g, count):
                stepStartedAt = now()
                spawnWorkers(generation: g, count: count)
            case let .retireOld(before, count):
                var old = workers.filter { $0.generation < before && !$0.retiring }.sorted { $0.generation < $1.generation }
                if let count { old = Array(old.prefix(count)) }
                for w in old { retire(pid: w.pid, slot: w.slot) }
            case let .abandon(g, reason):
                abandonGeneration(g, reason)
            case let .commit(g, kind):
                commitGeneration(g, kind)
            }
        }
    }

    private func beginGeneration(_ g: UInt32, _ kind: ReloadKind) {
        var next = (generations[plan.serving]!.config, generations[plan.serving]!.python)
        if kind == .graceful, let fresh = pendingConfig {
            next = fresh
            pendingConfig = nil
        }
        let (cfg, py) = next
        Log.info("\(kind): starting generation \(g) (\(cfg.processes) workers x \(cfg.threads) threads)")
        generations[g] = Generation(config: cfg, python: py, kind: kind)
        stepStartedAt = now()
        do {
            for bind in cfg.binds where sockets[bind] == nil {
                sockets[bind] = try ListenSocket.open(bind, backlog: cfg.listenBacklog, mode: cfg.socketMode, owner: cfg.socketOwner)
                Log.info("listening on \(bind) (new in generation \(g))")
            }
        } catch {
            perform(plan.failed(generation: g, reason: "\(error)", workers: workerCount(for: plan.pending)))
            return
        }
        startGeneration(g)
    }

    /// Starts what a generation needs before workers: its zygote.
    private func startGeneration(_ g: UInt32) {
        guard generations[g] != nil else { return }
        mapLibraries()
        spawnZygote(generation: g)
    }

    private func abandonGeneration(_ g: UInt32, _ reason: String) {
        Log.error("reload failed: \(reason); generation \(plan.serving) keeps serving")
        let chain = generations[g]?.kind == .chain
        for i in workers.indices where workers[i].generation == g && !workers[i].retiring {
            if chain && workers[i].ready {
                // A chain stopped midway: the new workers already serving replaced old ones
                // and run the same configuration, so they stay, counted with the old ones.
                workers[i].generation = plan.serving
            } else if workers[i].pid > 0 {
                retire(pid: workers[i].pid, slot: workers[i].slot)
            }
        }
        workers.removeAll { $0.generation == g && $0.pid == 0 }
        stopZygote(of: g)
        closeUnusedSockets()
        if generations[g]?.zygotePID == 0 { generations[g] = nil }
        mapLibraries()
    }

    private func mapLibraries() {
        libraries.keep(Set(generations.values.flatMap { [$0.python.libraryPath] + $0.python.sharedLibraries }))
    }

    private func commitGeneration(_ g: UInt32, _ kind: ReloadKind) {
        let cfg = generations[g]!.config
        desiredWorkers = cfg.processes
        for old in generations.keys where old < g { stopZygote(of: old) }
        generations = generations.filter { $0.key >= g || $0.value.zygotePID > 0 }
        closeUnusedSockets()
        mapLibraries()
        Log.info("\(kind) done: generation \(g) serving")
    }

    /// Sockets neither the serving generation nor the one starting binds. (An old
    /// generation's zygote may still be exiting: it holds its own copies until then.)
    private func closeUnusedSockets() {
        let live = [plan.serving, plan.incoming].compactMap { $0 }
        let wanted = Set(live.compactMap { generations[$0] }.flatMap { $0.config.binds })
        for (bind, fd) in sockets where !wanted.contains(bind) {
            close(fd)
            if case let .unix(path) = bind.address { unlink(path) }
            sockets[bind] = nil
            Log.info("stopped listening on \(bind)")
        }
    }

    private func checkReloadTimeout(_ t: Double) {
        guard let g = plan.incoming, let gen = generations[g] else { return }
        let limit = gen.config.reloadTimeout
        if t - stepStartedAt > limit {
            perform(plan.failed(generation: g, reason: "generation \(g) was not ready within \(limit) s",
                                workers: workerCount(for: plan.pending)))
        }
    }

    private func checkTouchFiles(_ t: Double) {
        guard !touchTimes.isEmpty, t - lastTouchCheck >= 1 else { return }
        lastTouchCheck = t
        let files: [(String?, ReloadKind)] = [(config.touchReload, .graceful), (config.touchWorkersReload, .workers),
                                              (config.touchChainReload, .chain)]
        for case let (file?, kind) in files {
            let m = modificationTime(file)
            let known = touchTimes[file] ?? nil
            guard !sameTime(known, m) else { continue }
            touchTimes[file] = m
            if m != nil { requestReload(kind, reason: "touched \(file)") }
        }
    }

    // MARK: Workers

    /// Keeps the serving generation at strength: replaces dead workers (after the back-off
    /// when boots keep failing) and retires extra ones after SIGTTOU. Idle during a reload.
    private func manageWorkers(now t: Double) {
        // A worker a zygote was asked for but that never said `started` died in birth.
        workers.removeAll { $0.pid == 0 && t - $0.startedAt > 10 }
        guard !plan.isReloading, !stopping else { return }
        let g = plan.serving
        let serving = workers.filter { $0.generation == g && !$0.retiring }
        if serving.count > desiredWorkers {
            for w in serving.sorted(by: { $0.slot > $1.slot }).prefix(serving.count - desiredWorkers) where w.pid > 0 {
                retire(pid: w.pid, slot: w.slot)
            }
        }
        guard t >= nextSpawnAt, let gen = generations[g] else { return }
        if gen.zygotePID == 0 {
            spawnZygote(generation: g)  // it died (or could not be forked): after the back-off
            return
        }
        let missing = desiredWorkers - serving.count - gen.pendingSpawns
        if missing > 0 { spawnWorkers(generation: g, count: missing) }
    }

    private func spawnWorkers(generation g: UInt32, count: Int) {
        guard let gen = generations[g] else { return }
        if !gen.zygoteReady {
            generations[g]!.pendingSpawns += count
            return
        }
        for _ in 0..<count { spawnWorker(generation: g) }
    }

    private func spawnWorker(generation g: UInt32) {
        let gen = generations[g]!
        let slot = freeSlot()
        tally.slots = max(tally.slots, Int(slot) + 1)
        guard gen.zygoteCommandFD >= 0, SpawnRequest(slot: slot, generation: g).send(to: gen.zygoteCommandFD) else { return }
        // The pid arrives with the worker's `started` message.
        workers.append(WorkerRecord(slot: slot, pid: 0, generation: g, startedAt: now()))
    }

    private func spawnZygote(generation g: UInt32) {
        var fds: [Int32] = [0, 0]
        _ = apus_pipe_cloexec(&fds, 0)
        let launch = makeLaunch(generation: g)
        let keep = launch.listeners.map { $0.fd } + [fds[0]]
        let run = prepareZygote(launch, fds[0])
        let pid = apus_fork_clean()
        if pid == 0 {
            close(fds[1])
            closeMasterOnlyFDs(keeping: keep)
            run()
        }
        let forkError = errno
        // Keeps what was made for the child before the fork: the optimizer may otherwise
        // sink it into the child, which would then run that code itself.
        withExtendedLifetime((run, keep)) {}
        close(fds[0])
        if pid < 0 {
            close(fds[1])
            let reason = "cannot fork the \(zygoteName(g)) of generation \(g): \(String(cString: strerror(forkError)))"
            if g == plan.incoming {
                perform(plan.failed(generation: g, reason: reason, workers: workerCount(for: plan.pending)))
            } else {
                Log.error("\(reason); retrying in 1 s")
                nextSpawnAt = now() + 1
            }
            return
        }
        generations[g]!.zygotePID = pid
        generations[g]!.zygoteReady = false
        generations[g]!.zygoteCommandFD = fds[1]
    }

    /// "preloader" when it imports the app (--preload), else "zygote".
    private func zygoteName(_ g: UInt32) -> String {
        generations[g]?.config.preload == true ? "preloader" : "zygote"
    }

    private func stopZygote(of g: UInt32) {
        guard let gen = generations[g] else { return }
        if gen.zygoteCommandFD >= 0 { close(gen.zygoteCommandFD) }  // it exits when the pipe closes
        generations[g]!.zygoteCommandFD = -1
        generations[g]!.zygoteReady = false
        generations[g]!.pendingSpawns = 0
        if gen.zygotePID > 0 { kill(gen.zygotePID, SIGTERM) }
    }

    /// What generation `g`'s zygote is given (it sets each worker's slot itself).
    private func makeLaunch(generation g: UInt32) -> WorkerLaunch {
        let gen = generations[g]!
        let listeners = gen.config.binds.compactMap { bind in sockets[bind].map { BoundSocket(fd: $0, bind: bind) } }
        return WorkerLaunch(role: zygoteName(g), slot: 0, generation: g, configuration: gen.config, python: gen.python,
                            statusFD: statusWrite, masterPID: getpid(), listeners: listeners, tally: tally)
    }

    /// The lowest slot number no live worker holds.
    private func freeSlot() -> UInt32 {
        let used = Set(workers.map(\.slot))
        var s: UInt32 = 0
        while used.contains(s) { s += 1 }
        return s
    }

    /// Tells a worker to stop accepting and finish its requests within --reload-mercy.
    private func retire(pid: pid_t, slot: UInt32) {
        guard let i = workers.firstIndex(where: { $0.pid == pid && $0.slot == slot }) else { return }
        workers[i].retiring = true
        workers[i].deadline = now() + (generations[workers[i].generation]?.config ?? config).reloadMercy
        tally.set(Int(slot), -1)
        kill(pid, SIGHUP)  // drain, leaving the queued connections to the workers that stay
    }

    /// Workers past their deadline are told to log what they cut and exit (SIGUSR2), and
    /// killed a second later if they have not.
    private func enforceDeadlines(_ t: Double) {
        for i in workers.indices {
            guard let deadline = workers[i].deadline, t >= deadline, workers[i].pid > 0 else { continue }
            if !workers[i].cutSent {
                Log.warning("worker \(workers[i].slot) (pid \(workers[i].pid)) still busy at its deadline: cutting its requests")
                kill(workers[i].pid, SIGUSR2)
                workers[i].cutSent = true
                workers[i].deadline = t + 1
            } else {
                kill(workers[i].pid, SIGKILL)
                workers[i].deadline = nil
            }
        }
    }

    /// Collects every child that exited and decides what its exit means.
    private func reapChildren() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { return }
            let exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : -1
            let how = exitCode >= 0 ? "exit status \(exitCode)" : "killed by signal \(status & 0x7f)"
            if let g = generations.first(where: { $0.value.zygotePID == pid })?.key {
                zygoteExited(g, exitCode: exitCode, how: how)
                continue
            }
            guard let i = workers.firstIndex(where: { $0.pid == pid }) else { continue }
            let record = workers.remove(at: i)
            tally.set(Int(record.slot), -1)
            if stopping || record.retiring { continue }
            let g = record.generation
            if g == plan.incoming {
                perform(plan.failed(generation: g, reason: "a worker of generation \(g) exited (\(how)) \(record.ready ? "after" : "before") it was ready",
                                    workers: workerCount(for: plan.pending)))
            } else if g == plan.serving {
                workerExited(record, exitCode: exitCode, how: how)
            }
        }
    }

    private func workerExited(_ record: WorkerRecord, exitCode: Int32, how: String) {
        if record.ready {
            Log.warning("worker \(record.slot) (pid \(record.pid)) died (\(how)); respawning")
            return
        }
        bootFailures += 1
        if exitCode == WorkerExit.appLoadError && !everReady {
            halt("no worker could import the application (see the traceback above)")
            return
        }
        let delay = min(30.0, 0.25 * Double(1 << min(bootFailures, 7)))
        nextSpawnAt = now() + delay
        Log.warning("worker \(record.slot) (pid \(record.pid)) died while starting (\(how)); retrying in \(delay) s")
    }

    private func zygoteExited(_ g: UInt32, exitCode: Int32, how: String) {
        let wasReady = generations[g]!.zygoteReady
        let commandFD = generations[g]!.zygoteCommandFD
        if commandFD >= 0 { close(commandFD) }
        generations[g]!.zygotePID = 0
        generations[g]!.zygoteReady = false
        generations[g]!.zygoteCommandFD = -1
        if stopping { return }
        if g == plan.incoming {
            perform(plan.failed(generation: g, reason: "the \(zygoteName(g)) of generation \(g) exited (\(how))\(exitCode == WorkerExit.appLoadError ? ": the application could not be imported (see the traceback above)" : "")",
                                workers: workerCount(for: plan.pending)))
        } else if g == plan.serving {
            if exitCode == WorkerExit.appLoadError && !everReady {
                halt("the application could not be imported (see the traceback above)")
                return
            }
            // Workers still being forked by it will never come.
            workers.removeAll { $0.generation == g && $0.pid == 0 }
            let delay = wasReady ? 0 : min(30.0, 0.25 * Double(1 << min(bootFailures, 7)))
            bootFailures += wasReady ? 0 : 1
            nextSpawnAt = now() + delay
            Log.warning("the \(zygoteName(g)) exited (\(how))\(wasReady ? "" : " before it was ready"); starting a new one\(delay > 0 ? " in \(delay) s" : "")")
        } else if generations[g]!.zygotePID == 0 {
            generations[g] = nil  // an older generation's zygote, done
            mapLibraries()
        }
    }

    private func readStatusMessages() {
        var buf = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = read(statusRead, &buf, buf.count)
            if n <= 0 { break }
            statusBuffer.append(contentsOf: buf[0..<n])
        }
        while statusBuffer.count >= WorkerMessage.size {
            let message = WorkerMessage(statusBuffer[0..<WorkerMessage.size])
            statusBuffer.removeFirst(WorkerMessage.size)
            guard let message else { continue }
            switch message.kind {
            case .zygoteReady:
                let g = message.generation
                guard generations[g]?.zygotePID == message.pid else { continue }
                generations[g]!.zygoteReady = true
                Log.info(generations[g]!.config.preload ? "generation \(g): application preloaded (pid \(message.pid))"
                                                        : "generation \(g): Python started in the zygote (pid \(message.pid))")
                let pending = generations[g]!.pendingSpawns
                generations[g]!.pendingSpawns = 0
                if pending > 0 { spawnWorkers(generation: g, count: pending) }
                else if g == plan.serving { manageWorkers(now: now()) }
            case .started:
                if let i = workers.firstIndex(where: { $0.slot == message.slot && $0.generation == message.generation && $0.pid == 0 }) {
                    workers[i].pid = message.pid
                    if stopping { kill(message.pid, SIGTERM) }
                } else {
                    kill(message.pid, SIGTERM)  // nobody waits for it any more
                }
            case .ready:
                guard let i = workers.firstIndex(where: { $0.slot == message.slot && $0.pid == message.pid }) else { continue }
                workers[i].ready = true
                everReady = true
                bootFailures = 0
                Log.info("worker \(message.slot) ready (pid \(message.pid), generation \(message.generation))")
                if stopping { kill(message.pid, SIGTERM) } else if workers[i].retiring { kill(message.pid, SIGHUP) }
                perform(plan.ready(generation: message.generation, workers: workerCount(for: plan.pending)))
            }
        }
    }

    // MARK: Stopping

    /// Stop taking connections, let every worker answer what it has, then exit.
    private func stopGracefully() {
        stopping = true
        // The master's copies go first, so the workers' last accept drains what is queued.
        for fd in sockets.values { close(fd) }
        let deadline = now() + config.shutdownTimeout
        for i in workers.indices {
            workers[i].deadline = min(workers[i].deadline ?? deadline, deadline)
            if workers[i].pid > 0 { kill(workers[i].pid, SIGTERM) }
        }
        workers.removeAll { $0.pid == 0 }
        for g in generations.keys { stopZygote(of: g) }
        sockets = sockets.mapValues { _ in -1 }
    }

    private func stopNow() {
        stopping = true
        for w in workers where w.pid > 0 { kill(w.pid, SIGKILL) }
        workers.removeAll { $0.pid == 0 }
        for gen in generations.values where gen.zygotePID > 0 { kill(gen.zygotePID, SIGKILL) }
    }

    private func halt(_ reason: String) {
        Log.error(reason)
        exitStatus = Self.appLoadFailed
        stopGracefully()
        for i in workers.indices { workers[i].deadline = now() + 5 }
    }

    // MARK: Helpers

    private func closeMasterOnlyFDs(keeping: [Int32]) {
        SignalQueue.closeInChild()
        close(statusRead)
        if fifoFD >= 0 { close(fifoFD) }
        for fd in sockets.values where fd >= 0 && !keeping.contains(fd) { close(fd) }
        for gen in generations.values where gen.zygoteCommandFD >= 0 { close(gen.zygoteCommandFD) }
    }

    private func openFIFO(_ path: String) -> Bool {
        var st = stat()
        if lstat(path, &st) == 0 && (st.st_mode & S_IFMT) != S_IFIFO {
            Log.error("--master-fifo: \(path) exists and is not a FIFO")
            return false
        }
        if lstat(path, &st) != 0 && mkfifo(path, 0o600) != 0 {
            Log.error("--master-fifo: cannot create \(path): \(String(cString: strerror(errno)))")
            return false
        }
        // Read-write, so the FIFO never reports end-of-file when a writer goes away.
        fifoFD = open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC)
        if fifoFD < 0 {
            Log.error("--master-fifo: cannot open \(path): \(String(cString: strerror(errno)))")
            return false
        }
        return true
    }

    private func readFIFO() {
        guard fifoFD >= 0 else { return }
        var buf = [UInt8](repeating: 0, count: 256)
        while true {
            let n = read(fifoFD, &buf, buf.count)
            if n <= 0 { return }
            for b in buf[0..<n] { handle(command: b) }
        }
    }

    private func reopenLogFile(_ path: String) -> Bool {
        let fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return false }
        dup2(fd, 2)
        close(fd)
        return true
    }

    private func logStats() {
        let t = now()
        Log.info("stats: generation \(plan.serving) serving\(plan.incoming.map { ", generation \($0) starting" } ?? ""), \(workers.count) worker processes, \(desiredWorkers) wanted")
        for w in workers.sorted(by: { $0.slot < $1.slot }) {
            let state = w.retiring ? "retiring" : (w.ready ? "ready" : "starting")
            Log.info("stats: worker \(w.slot) pid \(w.pid) generation \(w.generation) \(state), up \(Int(t - w.startedAt)) s, connections \(max(0, tally.count(Int(w.slot))))")
        }
    }

    private func logBanner() {
        let binds = config.binds.map(\.description).joined(separator: ", ")
        let threads = config.threads == 1 ? "1 thread" : "\(config.threads) threads"
        let processes = config.processes == 1 ? "1 worker" : "\(config.processes) workers"
        let python = generations[plan.serving]!.python
        Log.info("apus \(version) (pid \(getpid())), Python \(python.version) at \(python.programPath)")
        Log.info("app \(config.app.description), \(processes) x \(threads), \(config.preload ? "preloaded once then forked" : "imported by each worker, forked with Python started")")
        Log.info("listening on \(binds)")
        if let fifo = config.masterFIFO { Log.info("master FIFO at \(fifo)") }
    }
}

private func modificationTime(_ path: String) -> timespec? {
    var st = stat()
    guard stat(path, &st) == 0 else { return nil }
    return st.st_mtim
}

private func sameTime(_ a: timespec?, _ b: timespec?) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case let (x?, y?): return x.tv_sec == y.tv_sec && x.tv_nsec == y.tv_nsec
    default: return false
    }
}

@inline(__always) func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
