#if canImport(Glibc)
import Glibc
#endif

/// The master's worker table, as a pure value: the worker records, their slots, their
/// deadlines, the respawn back-off and the number of workers wanted. It makes no system
/// call and reads no clock (`now` is always an argument): it answers who to spawn, signal
/// or kill next, and the master carries that out. Tested as values in WorkerTableTests.
struct WorkerTable: Equatable {
    struct Worker: Equatable {
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
        /// Being replaced while it serves (`recycle`): it is retired once enough other
        /// workers are ready.
        var recycling: Recycle? = nil
        /// Its number within its generation, 1...N (`apus.worker_id()`); 0 when unknown
        /// (a worker adopted by an upgrade in place).
        var number: UInt32 = 0
    }

    /// Why a worker that still serves is replaced. Its replacement is started at once and
    /// it is retired (drained like a chain-reload step) when the replacement is ready, so
    /// recycling fails no request.
    enum Recycle: Equatable, CustomStringConvertible {
        /// It served its `--max-requests`.
        case maxRequests
        /// A request outlived `--harakiri`.
        case harakiri
        /// It is older than `--max-worker-lifetime`.
        case lifetime
        /// Its resident memory (MiB) is above `--reload-on-rss`.
        case rss(Int)

        var description: String {
            switch self {
            case .maxRequests: return "served its --max-requests"
            case .harakiri: return "has a request past --harakiri"
            case .lifetime: return "reached --max-worker-lifetime"
            case let .rss(mib): return "uses \(mib) MiB, above --reload-on-rss"
            }
        }
    }

    /// What the master does to keep the serving generation at strength.
    enum Step: Equatable {
        /// Retire this surplus worker (after SIGTTOU or a smaller graceful reload).
        case retire(Worker)
        /// The generation's zygote is gone: start a new one.
        case startZygote
        /// Ask the zygote for this many workers.
        case spawn(count: Int)
    }

    /// What to do to a worker that reached its deadline.
    enum Deadline: Equatable {
        /// Tell it to log what it cuts and exit (SIGUSR2); killed a second later if it has not.
        case cut(Worker)
        case kill(Worker)
    }

    /// A worker asked of a zygote that never said `started` within this many seconds died
    /// being born; its slot is freed.
    static let birthTimeout = 10.0
    /// The longest respawn back-off, in seconds.
    static let maxBackOff = 30.0

    private(set) var workers: [Worker] = []
    /// The number of workers the serving generation should have.
    var desired: Int
    /// Whether any worker was ever ready: an app that cannot be imported at start stops the
    /// server, later it only delays respawns.
    private(set) var everReady = false
    /// Consecutive boot failures, for the respawn back-off.
    private(set) var bootFailures = 0
    /// No worker or zygote of the serving generation is started before this time.
    private(set) var nextSpawnAt = 0.0

    init(desired: Int) {
        self.desired = desired
    }

    /// The table of a master image that upgraded in place: the old image's workers that
    /// had a pid (one still being forked is stopped when it says `started`).
    init(desired: Int, adopting records: [UpgradeState.Worker]) {
        self.desired = desired
        workers = records.filter { $0.pid > 0 }.map {
            Worker(slot: $0.slot, pid: $0.pid, generation: $0.generation, ready: $0.ready,
                   startedAt: $0.startedAt, retiring: $0.retiring, deadline: $0.deadline)
        }
        everReady = true  // the old image served: a failing boot now delays, it does not stop
    }

    /// The records an upgrade in place hands to the next image.
    var upgradeRecords: [UpgradeState.Worker] {
        workers.filter { $0.pid > 0 }.map {
            UpgradeState.Worker(slot: $0.slot, pid: $0.pid, generation: $0.generation, ready: $0.ready,
                                retiring: $0.retiring, startedAt: $0.startedAt, deadline: $0.deadline)
        }
    }

    var isEmpty: Bool { workers.isEmpty }

    /// The pids of the running workers (those that said `started`).
    var pids: [pid_t] { workers.compactMap { $0.pid > 0 ? $0.pid : nil } }

    func worker(pid: pid_t) -> Worker? { workers.first { $0.pid == pid } }

    // MARK: Births

    /// The lowest slot number no worker holds.
    func freeSlot() -> UInt32 {
        let used = Set(workers.map(\.slot))
        var s: UInt32 = 0
        while used.contains(s) { s += 1 }
        return s
    }

    /// The lowest number, from 1, that no worker of generation `g` staying in service holds:
    /// a worker that replaces one being retired or recycled takes over its number, as a
    /// uWSGI worker respawned in its slot keeps its id.
    func freeNumber(generation g: UInt32) -> UInt32 {
        let used = Set(workers.filter { $0.generation == g && !$0.retiring && $0.recycling == nil }.map(\.number))
        var n: UInt32 = 1
        while used.contains(n) { n += 1 }
        return n
    }

    /// A worker was asked of generation `generation`'s zygote for `slot`.
    mutating func add(slot: UInt32, generation: UInt32, now: Double, number: UInt32 = 0) {
        workers.append(Worker(slot: slot, pid: 0, generation: generation, startedAt: now, number: number))
    }

    /// A worker said `started`: its pid is known. False when nobody waits for it (its
    /// record was dropped): the master stops it.
    mutating func started(slot: UInt32, generation: UInt32, pid: pid_t) -> Bool {
        guard let i = workers.firstIndex(where: { $0.slot == slot && $0.generation == generation && $0.pid == 0 }) else {
            return false
        }
        workers[i].pid = pid
        return true
    }

    /// A worker said `ready`: boots succeed again, so the back-off starts over.
    mutating func ready(slot: UInt32, pid: pid_t) -> Worker? {
        guard let i = workers.firstIndex(where: { $0.slot == slot && $0.pid == pid }) else { return nil }
        workers[i].ready = true
        everReady = true
        bootFailures = 0
        return workers[i]
    }

    /// Drops the workers asked for longer than `birthTimeout` ago that never said `started`.
    mutating func dropStillborn(now: Double) {
        workers.removeAll { $0.pid == 0 && now - $0.startedAt > Self.birthTimeout }
    }

    /// Drops the workers of `generation` still being forked: its zygote is gone.
    mutating func dropUnborn(generation: UInt32) {
        workers.removeAll { $0.generation == generation && $0.pid == 0 }
    }

    /// Drops every worker still being forked (the server stops).
    mutating func dropUnborn() {
        workers.removeAll { $0.pid == 0 }
    }

    // MARK: Deaths and the back-off

    /// A child exited: its record, if it was a worker.
    mutating func remove(pid: pid_t) -> Worker? {
        guard pid > 0, let i = workers.firstIndex(where: { $0.pid == pid }) else { return nil }
        return workers.remove(at: i)
    }

    /// A worker died before it was ready: the next spawn waits, twice as long after each
    /// failure in a row (0.5 s, 1 s, ... up to `maxBackOff`). Returns the wait.
    mutating func workerBootFailed(now: Double) -> Double {
        bootFailures += 1
        let delay = Self.backOff(after: bootFailures)
        nextSpawnAt = now + delay
        return delay
    }

    /// A zygote died before it was ready: the next one waits (0.25 s after the first
    /// failure, doubling up to `maxBackOff`), and the failure counts for the next wait.
    mutating func zygoteBootFailed(now: Double) -> Double {
        let delay = Self.backOff(after: bootFailures)
        bootFailures += 1
        nextSpawnAt = now + delay
        return delay
    }

    /// Nothing of the serving generation is started before `time`.
    mutating func delaySpawns(until time: Double) {
        nextSpawnAt = time
    }

    static func backOff(after failures: Int) -> Double {
        min(maxBackOff, 0.25 * Double(1 << min(failures, 7)))
    }

    // MARK: Keeping strength

    /// What keeping `generation` at `desired` workers takes at `now`: surplus workers to
    /// retire (the highest slots first), then, once the back-off allows, a new zygote if
    /// the generation has none, or the workers missing. `pendingSpawns` are workers asked
    /// for but waiting for the zygote to be ready.
    /// A worker being recycled counts as missing (its replacement is spawned) and is retired
    /// once the ready workers that stay, with it, are more than `desired`.
    func keepStrength(generation g: UInt32, zygoteRunning: Bool, pendingSpawns: Int, now: Double) -> [Step] {
        let serving = workers.filter { $0.generation == g && !$0.retiring }
        let staying = serving.filter { $0.recycling == nil }
        var steps: [Step] = []
        if staying.count > desired {
            for w in staying.sorted(by: { $0.slot > $1.slot }).prefix(staying.count - desired) where w.pid > 0 {
                steps.append(.retire(w))
            }
        }
        let readyStaying = staying.filter(\.ready).count
        var recycled = serving.filter { $0.recycling != nil }.sorted { $0.startedAt < $1.startedAt }
        while !recycled.isEmpty && readyStaying + recycled.count > desired {
            steps.append(.retire(recycled.removeFirst()))
        }
        guard now >= nextSpawnAt else { return steps }
        if !zygoteRunning { return steps + [.startZygote] }
        let missing = desired - staying.count - pendingSpawns
        if missing > 0 { steps.append(.spawn(count: missing)) }
        return steps
    }

    /// Marks the running worker `pid` to be replaced for `reason`. Nil when there is no such
    /// worker, or it is already retiring or being recycled.
    mutating func recycle(pid: pid_t, reason: Recycle) -> Worker? {
        guard pid > 0, let i = workers.firstIndex(where: { $0.pid == pid }),
              !workers[i].retiring, workers[i].recycling == nil else { return nil }
        workers[i].recycling = reason
        return workers[i]
    }

    // MARK: Retiring and deadlines

    /// Marks the worker in `slot` with `pid` retiring, to be cut at `deadline`. False if
    /// there is no such worker.
    mutating func retire(slot: UInt32, pid: pid_t, deadline: Double) -> Bool {
        guard let i = workers.firstIndex(where: { $0.pid == pid && $0.slot == slot }) else { return false }
        workers[i].retiring = true
        workers[i].deadline = deadline
        return true
    }

    /// The workers of generations older than `generation` not yet retiring, oldest
    /// generation first; at most `count` of them (nil: all).
    func older(than generation: UInt32, count: Int?) -> [Worker] {
        let old = workers.filter { $0.generation < generation && !$0.retiring }.sorted { $0.generation < $1.generation }
        if let count { return Array(old.prefix(count)) }
        return old
    }

    /// Generation `generation` failed. Its ready workers move to `adopter` when one is given
    /// (a chain stopped midway: they replaced old workers and run the same configuration);
    /// those still being forked are dropped. Returns the running ones to retire.
    mutating func abandon(generation g: UInt32, adopter: UInt32?) -> [Worker] {
        var toRetire: [Worker] = []
        for i in workers.indices where workers[i].generation == g && !workers[i].retiring {
            if let adopter, workers[i].ready {
                workers[i].generation = adopter
            } else if workers[i].pid > 0 {
                toRetire.append(workers[i])
            }
        }
        dropUnborn(generation: g)
        return toRetire
    }

    /// The server stops: every worker gets `deadline` unless its own is earlier. Returns
    /// the running workers' pids, to be told to stop; those being forked are dropped.
    mutating func stopAll(deadline: Double) -> [pid_t] {
        for i in workers.indices {
            workers[i].deadline = min(workers[i].deadline ?? deadline, deadline)
        }
        let running = pids
        dropUnborn()
        return running
    }

    /// Every worker's deadline becomes `deadline`.
    mutating func setDeadlines(_ deadline: Double) {
        for i in workers.indices { workers[i].deadline = deadline }
    }

    /// The running workers past their deadline at `now`, and what to do to each: the
    /// first time a cut, a second later a kill.
    mutating func dueDeadlines(now: Double) -> [Deadline] {
        var due: [Deadline] = []
        for i in workers.indices {
            guard let deadline = workers[i].deadline, now >= deadline, workers[i].pid > 0 else { continue }
            if !workers[i].cutSent {
                workers[i].cutSent = true
                workers[i].deadline = now + 1
                due.append(.cut(workers[i]))
            } else {
                workers[i].deadline = nil
                due.append(.kill(workers[i]))
            }
        }
        return due
    }
}
