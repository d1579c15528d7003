#if canImport(Glibc)
import Glibc
#endif
import ApusConfig
import ApusObserve
import ApusSys

/// The generations' lives: what the `ReloadPlan` decided, carried out. A generation begins
/// (its configuration, its new sockets, its zygote), commits (it serves; older zygotes are
/// told to exit) or is abandoned (its workers retired, the serving one untouched).
extension Master {
    /// Carries out what the plan decided.
    func perform(_ actions: [ReloadPlan.Action]) {
        for action in actions {
            switch action {
            case let .begin(g, kind):
                beginGeneration(g, kind)
            case let .spawn(g, count):
                stepStartedAt = Sys.now()
                spawnWorkers(generation: g, count: count)
            case let .retireOld(before, count):
                for worker in table.older(than: before, count: count) { retire(worker) }
            case let .abandon(g, reason):
                abandonGeneration(g, reason)
            case let .commit(g, kind):
                commitGeneration(g, kind)
            }
        }
    }

    func beginGeneration(_ g: UInt32, _ kind: ReloadKind) {
        var next = (config, serving.python)
        if kind == .graceful, let fresh = pendingConfig {
            next = fresh
            pendingConfig = nil
        }
        let (cfg, py) = next
        Log.info("\(kind): starting generation \(g) (\(cfg.processes) workers x \(cfg.threads) threads)")
        generations[g] = Generation(g, config: cfg, python: py, kind: kind)
        stepStartedAt = Sys.now()
        do {
            for bind in cfg.binds where sockets[bind] == nil {
                if case let .fd(n) = bind.address, let own = sockets.first(where: { $0.value == n && $0.key.address != bind.address }) {
                    throw ListenSocket.Failure(description: "\(bind): fd \(n) is Apus's own socket for \(own.key)")
                }
                sockets[bind] = try Umask.with(cfg.umask) { () throws(ListenSocket.Failure) in
                    try ListenSocket.open(bind, backlog: cfg.listenBacklog, mode: cfg.socketMode, owner: cfg.socketOwner,
                                          reusePort: cfg.reusePort)
                }
                Log.info("\(cfg.reusePort ? "bound to" : "listening on") \(bind) (new in generation \(g))")
            }
        } catch {
            perform(plan.failed(generation: g, reason: "\(error)", workers: workerCount(for: plan.pending)))
            return
        }
        startGeneration(g)
    }

    func abandonGeneration(_ g: UInt32, _ reason: String) {
        Log.error("reload failed: \(reason); generation \(plan.serving) keeps serving")
        if let kind = generations[g]?.kind { counters.reloadEnded(kind, .failed) }
        // A chain stopped midway: the new workers already serving replaced old ones and run
        // the same configuration, so they stay, counted with the serving generation.
        let adopter = generations[g]?.kind == .chain ? plan.serving : nil
        for worker in table.abandon(generation: g, adopter: adopter) { retire(worker) }
        stopZygote(of: g)
        closeUnusedSockets()
        if let gen = generations[g], !gen.zygote.isRunning { generations[g] = nil }
        mapLibraries()
    }

    func commitGeneration(_ g: UInt32, _ kind: ReloadKind) {
        if let gen = generations[g] {
            let c = gen.config
            table.desired = c.cheaper > 0 ? min(max(table.desired, c.cheaper), c.processes) : c.processes
            cheaper = Self.cheaperPolicy(c)
        }
        for old in generations.keys where old < g { stopZygote(of: old) }
        generations = generations.filter { $0.key >= g || $0.value.zygote.isRunning }
        closeUnusedSockets()
        mapLibraries()
        counters.reloadEnded(kind, .done)
        Log.info("\(kind) done: generation \(g) serving")
    }

    /// Sockets neither the serving generation nor the one starting binds. (An old
    /// generation's zygote may still be exiting: it holds its own copies until then.)
    func closeUnusedSockets() {
        let live = [plan.serving, plan.incoming].compactMap { $0 }
        let wanted = Set(live.compactMap { generations[$0] }.flatMap { $0.config.binds })
        for (bind, fd) in sockets where !wanted.contains(bind) {
            // An inherited socket cannot be opened again: the master keeps it (unserved)
            // for a later reload, and the parent's copy stays the parent's business.
            if case .fd = bind.address { continue }
            Sys.close(fd)
            if case let .unix(path) = bind.address { removeFile(path) }
            sockets[bind] = nil
            Log.info("stopped listening on \(bind)")
        }
    }

    func checkReloadTimeout(_ t: Double) {
        guard let g = plan.incoming, let gen = generations[g] else { return }
        let limit = gen.config.reloadTimeout
        if t - stepStartedAt > limit {
            perform(plan.failed(generation: g, reason: "generation \(g) was not ready within \(limit) s",
                                workers: workerCount(for: plan.pending)))
        }
    }

    /// Starts what a generation needs before workers: its zygote.
    func startGeneration(_ g: UInt32) {
        guard generations[g] != nil else { return }
        mapLibraries()
        startZygote(of: g)
    }

    func mapLibraries() {
        libraries.keep(Set(generations.values.flatMap { [$0.python.libraryPath] + $0.python.sharedLibraries }))
    }
}
