#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusIPC
import ApusObserve

/// What a forked child needs to become a worker (or the preloading zygote).
public struct WorkerLaunch {
    public let slot: UInt32
    public let generation: UInt32
    public let statusFD: Int32
    public let masterPID: pid_t
    public let listeners: [(fd: Int32, bind: Bind)]
    public let tally: ConnectionTally
}

/// The master: owns the listening sockets, forks and supervises the workers, and turns
/// signals into lifecycle steps. It is single-threaded and never loads Python, so an app
/// can never wedge it and forking from it is always safe.
///
/// The whole lifecycle is in this file: `run` sets up and loops; each signal has a
/// `handle…` verb; workers are started by `spawnWorker`, collected by `reapWorkers`,
/// replaced by `manageWorkers`, and stopped by `stopGracefully` / `stopNow`.
public final class Master {
    /// Exit status when no worker could import the app.
    public static let appLoadFailed: Int32 = 4
    /// Exit status when the sockets could not be opened.
    public static let startFailed: Int32 = 1

    struct WorkerRecord {
        var slot: UInt32
        var pid: pid_t
        var generation: UInt32
        var ready = false
        var startedAt: Double
    }

    let config: Configuration
    let python: PythonInstallation
    let startWorker: (WorkerLaunch) -> Never
    let startZygote: (WorkerLaunch, Int32) -> Never
    let version: String

    private var listeners: [(fd: Int32, bind: Bind)] = []
    private var workers: [WorkerRecord] = []
    private var desiredWorkers: Int
    private var generation: UInt32 = 1
    private var everReady = false
    private var stopping = false
    private var stopDeadline = 0.0
    private var exitStatus: Int32 = 0
    /// Consecutive boot failures, for the respawn back-off.
    private var bootFailures = 0
    private var nextSpawnAt = 0.0
    // Preload.
    private var zygotePID: pid_t = 0
    private var zygoteReady = false
    private var zygoteCommandFD: Int32 = -1
    // Pipes.
    private var statusRead: Int32 = -1
    private var statusWrite: Int32 = -1
    private var statusBuffer: [UInt8] = []
    /// Workers' open-connection counts, shared with them (accept balancing).
    private let tally = ConnectionTally()

    public init(config: Configuration, python: PythonInstallation, version: String,
                startWorker: @escaping (WorkerLaunch) -> Never,
                startZygote: @escaping (WorkerLaunch, Int32) -> Never) {
        self.config = config
        self.python = python
        self.version = version
        self.startWorker = startWorker
        self.startZygote = startZygote
        desiredWorkers = config.processes
    }

    // MARK: Main loop

    /// Runs until the server stops; returns the exit status.
    public func run() -> Int32 {
        Log.role = "master"
        _ = apus_set_child_subreaper()  // workers forked by the zygote become ours
        SignalQueue.install()
        do {
            for bind in config.binds {
                listeners.append((try ListenSocket.open(bind, backlog: config.listenBacklog,
                                                        mode: config.socketMode, owner: config.socketOwner), bind))
            }
        } catch {
            Log.error("\(error)")
            return Self.startFailed
        }
        var fds: [Int32] = [0, 0]
        _ = apus_pipe_cloexec(&fds, 1)
        statusRead = fds[0]
        statusWrite = fds[1]
        _ = apus_set_nonblocking(statusWrite, 0)
        logBanner()
        tally.slots = desiredWorkers
        if config.preload { spawnZygote() } else { manageWorkers(now: now()) }

        while true {
            waitForEvents(timeout: stopping ? 100 : 500)
            for sig in SignalQueue.drain() { handle(signal: sig) }
            readStatusMessages()
            reapWorkers()
            let t = now()
            if stopping {
                if workers.isEmpty && zygotePID == 0 { break }
                if t >= stopDeadline {
                    killAll(SIGKILL)
                    workers.removeAll { $0.pid == 0 }  // never started: nothing to wait for
                }
            } else {
                if exitStatus != 0 { break }
                manageWorkers(now: t)
            }
        }
        for l in listeners { close(l.fd) }
        cleanUpUnixSockets()
        Log.info("stopped")
        return exitStatus
    }

    private func waitForEvents(timeout: Int32) {
        var pfds = [pollfd(fd: SignalQueue.readFD, events: Int16(POLLIN), revents: 0),
                    pollfd(fd: statusRead, events: Int16(POLLIN), revents: 0)]
        _ = poll(&pfds, 2, timeout)
    }

    // MARK: Signals

    private func handle(signal sig: Int32) {
        switch sig {
        case SIGCHLD: break  // reapWorkers runs every turn
        case SIGTERM, SIGINT: handleTerm(sig)
        case SIGQUIT: handleQuit()
        case SIGTTIN: handleTTIN()
        case SIGTTOU: handleTTOU()
        case SIGHUP: Log.warning("SIGHUP: reload is not available yet; ignored")
        default: break
        }
    }

    private func handleTerm(_ sig: Int32) {
        if stopping { return }
        Log.info("\(sig == SIGTERM ? "SIGTERM" : "SIGINT"): graceful shutdown (up to \(config.shutdownTimeout) s)")
        stopGracefully()
    }

    private func handleQuit() {
        Log.info("SIGQUIT: immediate shutdown")
        stopNow()
    }

    private func handleTTIN() {
        desiredWorkers = min(desiredWorkers + 1, ConnectionTally.maxSlots)
        tally.slots = desiredWorkers
        Log.info("SIGTTIN: \(desiredWorkers) workers")
    }

    private func handleTTOU() {
        guard desiredWorkers > 1 else { return }
        desiredWorkers -= 1
        tally.slots = desiredWorkers
        Log.info("SIGTTOU: \(desiredWorkers) workers")
        if let victim = workers.filter({ $0.slot >= UInt32(desiredWorkers) }).first {
            kill(victim.pid, SIGTERM)
        }
    }

    // MARK: Workers

    /// Starts workers for empty slots, after the back-off when boots keep failing.
    private func manageWorkers(now t: Double) {
        // A worker the zygote was asked for but that never said `started` died in birth.
        workers.removeAll { $0.pid == 0 && t - $0.startedAt > 10 }
        if config.preload && !zygoteReady { return }
        guard t >= nextSpawnAt else { return }
        for slot in 0..<UInt32(desiredWorkers) where !workers.contains(where: { $0.slot == slot }) {
            spawnWorker(slot: slot)
        }
    }

    private func spawnWorker(slot: UInt32) {
        let launch = WorkerLaunch(slot: slot, generation: generation, statusFD: statusWrite, masterPID: getpid(), listeners: listeners, tally: tally)
        if config.preload {
            guard zygoteCommandFD >= 0, SpawnRequest(slot: slot, generation: generation).send(to: zygoteCommandFD) else { return }
            // The pid arrives with the worker's `started` message.
            workers.append(WorkerRecord(slot: slot, pid: 0, generation: generation, startedAt: now()))
            return
        }
        let pid = fork()
        if pid == 0 {
            closeMasterOnlyFDs()
            startWorker(launch)
        }
        if pid < 0 {
            Log.error("fork failed: \(String(cString: strerror(errno)))")
            return
        }
        workers.append(WorkerRecord(slot: slot, pid: pid, generation: generation, startedAt: now()))
    }

    private func spawnZygote() {
        var fds: [Int32] = [0, 0]
        _ = apus_pipe_cloexec(&fds, 0)
        let launch = WorkerLaunch(slot: 0, generation: generation, statusFD: statusWrite, masterPID: getpid(), listeners: listeners, tally: tally)
        let pid = fork()
        if pid == 0 {
            close(fds[1])
            closeMasterOnlyFDs()
            startZygote(launch, fds[0])
        }
        close(fds[0])
        zygotePID = pid
        zygoteReady = false
        zygoteCommandFD = fds[1]
    }

    /// Collects every child that exited and decides what its exit means.
    private func reapWorkers() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            if pid <= 0 { return }
            let exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : -1
            let signal = status & 0x7f
            if pid == zygotePID {
                zygotePID = 0
                zygoteReady = false
                if zygoteCommandFD >= 0 { close(zygoteCommandFD); zygoteCommandFD = -1 }
                if stopping { continue }
                if exitCode == WorkerExit.appLoadError && !everReady {
                    halt("the application could not be imported (see the traceback above)")
                    continue
                }
                Log.warning("the preloading process exited (\(describeExit(exitCode, signal))); starting a new one")
                // Workers still being forked by it will never come: forget them.
                workers.removeAll { $0.pid == 0 }
                spawnZygote()
                continue
            }
            guard let i = workers.firstIndex(where: { $0.pid == pid }) else { continue }
            let record = workers.remove(at: i)
            tally.set(Int(record.slot), 0)
            if stopping { continue }
            if !record.ready {
                bootFailures += 1
                if exitCode == WorkerExit.appLoadError && !everReady {
                    halt("no worker could import the application (see the traceback above)")
                    continue
                }
                let delay = min(30.0, 0.25 * Double(1 << min(bootFailures, 7)))
                nextSpawnAt = now() + delay
                Log.warning("worker \(record.slot) (pid \(pid)) died while starting (\(describeExit(exitCode, signal))); retrying in \(delay) s")
            } else {
                Log.warning("worker \(record.slot) (pid \(pid)) died (\(describeExit(exitCode, signal))); respawning")
            }
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
                zygoteReady = true
                Log.info("application preloaded (pid \(message.pid))")
            case .started:
                if let i = workers.firstIndex(where: { $0.slot == message.slot && $0.pid == 0 }) {
                    workers[i].pid = message.pid
                } else if stopping {
                    kill(message.pid, SIGTERM)
                }
            case .ready:
                if let i = workers.firstIndex(where: { $0.slot == message.slot && ($0.pid == message.pid || $0.pid == 0) }) {
                    workers[i].pid = message.pid
                    workers[i].ready = true
                    everReady = true
                    bootFailures = 0
                    Log.info("worker \(message.slot) ready (pid \(message.pid))")
                }
            }
        }
    }

    // MARK: Stopping

    /// Stop taking connections, let every worker answer what it has, then exit.
    private func stopGracefully() {
        stopping = true
        stopDeadline = now() + config.shutdownTimeout
        // The master's copies go first, so the workers' last accept drains what is queued.
        for l in listeners { close(l.fd) }
        listeners.removeAll()
        if zygoteCommandFD >= 0 { close(zygoteCommandFD); zygoteCommandFD = -1 }
        killAll(SIGTERM)
    }

    private func stopNow() {
        stopping = true
        stopDeadline = now()
        killAll(SIGKILL)
    }

    private func halt(_ reason: String) {
        Log.error(reason)
        exitStatus = Self.appLoadFailed
        stopping = true
        stopDeadline = now() + 5
        killAll(SIGTERM)
    }

    private func killAll(_ sig: Int32) {
        for w in workers where w.pid > 0 { kill(w.pid, sig) }
        if zygotePID > 0 { kill(zygotePID, sig) }
    }

    // MARK: Helpers

    private func closeMasterOnlyFDs() {
        SignalQueue.closeInChild()
        close(statusRead)
        if zygoteCommandFD >= 0 { close(zygoteCommandFD) }
    }

    private func cleanUpUnixSockets() {
        for bind in config.binds {
            if case let .unix(path) = bind.address { unlink(path) }
        }
    }

    private func logBanner() {
        let binds = config.binds.map(\.description).joined(separator: ", ")
        let threads = config.threads == 1 ? "1 thread" : "\(config.threads) threads"
        let processes = config.processes == 1 ? "1 worker" : "\(config.processes) workers"
        Log.info("apus \(version) (pid \(getpid())), Python \(python.version) at \(python.programPath)")
        Log.info("app \(config.app.description), \(processes) x \(threads), \(config.preload ? "preloaded once then forked" : "imported by each worker")")
        Log.info("listening on \(binds)")
    }

    private func describeExit(_ code: Int32, _ signal: Int32) -> String {
        code >= 0 ? "exit status \(code)" : "killed by signal \(signal)"
    }
}

@inline(__always) func now() -> Double {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
}
