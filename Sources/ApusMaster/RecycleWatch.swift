#if canImport(Glibc)
import Glibc
#endif

/// The master's decisions for `--max-worker-lifetime`, `--reload-on-rss` and
/// `--evil-reload-on-rss`, as a value: given the worker records, their resident memory and
/// the time, who is recycled (replaced, the new worker ready first) and who is killed at
/// once. It reads no clock and no /proc (the master does, `ProcessMemory`), so it is tested
/// as values in RecycleWatchTests. (`--max-requests` is counted by the workers themselves.)
struct RecycleWatch: Equatable {
    /// Seconds after its start a worker is recycled (0: off).
    var maxLifetime: Double
    /// Resident bytes above which a worker is recycled (0: off).
    var reloadOnRSS: Int
    /// Resident bytes above which a worker is killed at once (0: off).
    var evilReloadOnRSS: Int
    /// Memory is read at most this often, in seconds.
    static let rssInterval = 1.0
    static let mib = 1 << 20

    private(set) var lastRSSRead = -Double.infinity
    /// Workers killed for their memory, not yet reaped: never killed twice.
    private(set) var killed: Set<pid_t> = []

    enum Verdict: Equatable {
        case recycle(WorkerTable.Worker, WorkerTable.Recycle)
        /// Above --evil-reload-on-rss: SIGKILL now. `mib`: its resident memory.
        case kill(WorkerTable.Worker, mib: Int)
    }

    init(maxLifetime: Double, reloadOnRSSMiB: Int, evilReloadOnRSSMiB: Int) {
        self.maxLifetime = maxLifetime
        reloadOnRSS = reloadOnRSSMiB * Self.mib
        evilReloadOnRSS = evilReloadOnRSSMiB * Self.mib
    }

    var watchesRSS: Bool { reloadOnRSS > 0 || evilReloadOnRSS > 0 }

    /// The workers whose memory to read at `now`: none when no RSS limit is set or the last
    /// reading is less than `rssInterval` old (then `due` sees no memory), else every
    /// running worker (a worker still importing the app may already be past the evil limit).
    mutating func toMeasure(_ workers: [WorkerTable.Worker], now: Double) -> [pid_t] {
        guard watchesRSS, now - lastRSSRead >= Self.rssInterval else { return [] }
        lastRSSRead = now
        return workers.compactMap { $0.pid > 0 && !killed.contains($0.pid) ? $0.pid : nil }
    }

    /// A worker was reaped.
    mutating func forget(pid: pid_t) {
        killed.remove(pid)
    }

    /// Who is due at `now`. `rss`: resident bytes of the workers just measured (empty between
    /// readings). `serving`: the generation that serves; only its workers are recycled, and
    /// none while `reloading` (the reload replaces workers itself and the replacements wait
    /// for it: a worker found due then is found again after it). Killing applies to every
    /// worker, whatever its state: it is the limit memory must never pass.
    ///
    /// Spread: every worker above --reload-on-rss is recycled at once (memory cannot wait),
    /// but --max-worker-lifetime recycles one worker at a time, the oldest first, and only
    /// while no other worker waits for its replacement, so workers started together are
    /// replaced one after another, never all booting at once.
    mutating func due(_ workers: [WorkerTable.Worker], rss: [pid_t: Int], serving: UInt32,
                      reloading: Bool, now: Double) -> [Verdict] {
        var verdicts: [Verdict] = []
        if evilReloadOnRSS > 0 {
            for w in workers where w.pid > 0 && !killed.contains(w.pid) {
                guard let bytes = rss[w.pid], bytes > evilReloadOnRSS else { continue }
                killed.insert(w.pid)
                verdicts.append(.kill(w, mib: bytes / Self.mib))
            }
        }
        guard !reloading else { return verdicts }
        // Ready workers of the serving generation that still serve, are not being replaced
        // and were not killed.
        let candidates = workers.filter {
            $0.pid > 0 && $0.ready && !$0.retiring && $0.recycling == nil && $0.generation == serving && !killed.contains($0.pid)
        }
        var recycled: Set<pid_t> = []
        if reloadOnRSS > 0 {
            for w in candidates {
                guard let bytes = rss[w.pid], bytes > reloadOnRSS else { continue }
                recycled.insert(w.pid)
                verdicts.append(.recycle(w, .rss(bytes / Self.mib)))
            }
        }
        if maxLifetime > 0 && recycled.isEmpty && !workers.contains(where: { $0.recycling != nil && !$0.retiring }) {
            let old = candidates.filter { now - $0.startedAt >= maxLifetime }
            if let oldest = old.min(by: { $0.startedAt < $1.startedAt }) {
                verdicts.append(.recycle(oldest, .lifetime))
            }
        }
        return verdicts
    }
}
