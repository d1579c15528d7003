#if canImport(Glibc)
import Glibc
#endif
import ApusIPC
import ApusObserve
import ApusSys

/// Supervision: replacing workers that must go while they still serve (recycling, a request
/// past --harakiri), and saying what a worker that died had in flight. The decisions are
/// the `WorkerTable`'s; the counters come from the shared `Scoreboard`.
extension Master {
    /// Replaces worker `pid` for `reason`: its replacement is spawned now, and it is retired
    /// (drained, with --reload-mercy) once the replacement is ready (`WorkerTable.keepStrength`).
    func recycle(pid: pid_t, _ reason: WorkerTable.Recycle) {
        guard let worker = table.recycle(pid: pid, reason: reason) else { return }
        if reason == .harakiri { counters.harakiri(slot: worker.slot) }
        let when = plan.isReloading ? "replaced once the reload in progress is done (unless the reload retires it)" : "starting its replacement, then it finishes its requests"
        Log.info("worker \(worker.slot) (pid \(worker.pid)) \(reason): \(when)")
        keepStrength(now: Sys.now())
    }

    /// --max-worker-lifetime, --reload-on-rss and --evil-reload-on-rss, once a turn of the
    /// loop: memory is read from /proc at most once a second; `RecycleWatch` decides.
    func superviseWorkers(_ t: Double) {
        let limits = config
        recycleWatch.maxLifetime = limits.maxWorkerLifetime
        recycleWatch.reloadOnRSS = limits.reloadOnRSS * RecycleWatch.mib
        recycleWatch.evilReloadOnRSS = limits.evilReloadOnRSS * RecycleWatch.mib
        guard recycleWatch.maxLifetime > 0 || recycleWatch.watchesRSS else { return }
        var rss: [pid_t: Int] = [:]
        for pid in recycleWatch.toMeasure(table.workers, now: t) { rss[pid] = ProcessMemory.residentBytes(pid) }
        for verdict in recycleWatch.due(table.workers, rss: rss, serving: plan.serving, reloading: plan.isReloading, now: t) {
            switch verdict {
            case let .recycle(worker, reason):
                recycle(pid: worker.pid, reason)
            case let .kill(worker, mib):
                // Its requests in flight are logged when it is reaped, and it is respawned as
                // after a crash.
                Log.warning("worker \(worker.slot) (pid \(worker.pid)) uses \(mib) MiB, above --evil-reload-on-rss \(limits.evilReloadOnRSS) MiB: killing it (SIGKILL)")
                deliver(SIGKILL, to: worker.pid)
            }
        }
    }

    /// Logs the requests worker `record` had in flight when it died, from its scoreboard slot.
    func logInFlight(of record: WorkerTable.Worker) {
        let slot = tally.board.slot(Int(record.slot))
        guard slot.pid == record.pid else { return }  // it died before it took its slot
        for (line, seconds) in slot.inFlight(now: Sys.now()) {
            Log.warning("worker \(record.slot) (pid \(record.pid)) had in flight: \(line) (for \(secondsText(seconds)))")
        }
    }
}

/// "exit status 3", "killed by signal 11 (SIGSEGV, core dumped)".
func describeExit(_ status: Int32) -> String {
    if status & 0x7f == 0 { return "exit status \((status >> 8) & 0xff)" }
    let sig = status & 0x7f
    let core = status & 0x80 != 0 ? ", core dumped" : ""
    return "killed by signal \(sig) (\(signalName(sig))\(core))"
}

/// The usual name of a signal ("SIGSEGV"), or "signal N".
func signalName(_ sig: Int32) -> String {
    let names: [Int32: String] = [
        SIGHUP: "SIGHUP", SIGINT: "SIGINT", SIGQUIT: "SIGQUIT", SIGILL: "SIGILL", SIGTRAP: "SIGTRAP",
        SIGABRT: "SIGABRT", SIGBUS: "SIGBUS", SIGFPE: "SIGFPE", SIGKILL: "SIGKILL", SIGUSR1: "SIGUSR1",
        SIGSEGV: "SIGSEGV", SIGUSR2: "SIGUSR2", SIGPIPE: "SIGPIPE", SIGALRM: "SIGALRM", SIGTERM: "SIGTERM",
        SIGXCPU: "SIGXCPU", SIGXFSZ: "SIGXFSZ", SIGSYS: "SIGSYS",
    ]
    return names[sig] ?? "signal \(sig)"
}

/// "2.5 s", "0.012 s". The scoreboard is memory the workers (and so the apps) can write:
/// a time that is not a sane number is shown as "?", never allowed to trap the master.
func secondsText(_ s: Double) -> String {
    guard s.isFinite, s >= 0, s < 1e9 else { return "? s" }
    return s >= 10 ? "\(Int(s.rounded())) s" : "\((s * 1000).rounded() / 1000) s"
}
