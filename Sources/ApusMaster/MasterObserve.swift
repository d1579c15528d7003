#if canImport(Glibc)
import Glibc
#endif
import ApusConfig
import ApusIPC
import ApusSys

/// What only the master can count, for the stats and `/metrics`: reloads by kind and outcome,
/// workers replaced for --harakiri and workers respawned after they died, in total and per
/// slot (uWSGI's `harakiri_count` and `respawn_count` are per worker id). A value: the master
/// bumps it where the event happens (MasterGenerations.swift, MasterChildren.swift,
/// MasterSupervision.swift).
struct MasterCounters: Equatable {
    enum Outcome: String, CaseIterable { case done, failed }

    /// Reloads that ended, by kind ("graceful", "workers", "chain", "upgrade") and outcome.
    private(set) var reloads: [String: [Outcome: Int]] = [:]
    private(set) var harakiri = 0
    private(set) var respawns = 0
    private(set) var harakiriBySlot: [UInt32: Int] = [:]
    private(set) var respawnsBySlot: [UInt32: Int] = [:]

    mutating func reloadEnded(_ kind: ReloadKind, _ outcome: Outcome) {
        reloads[kind.name, default: [:]][outcome, default: 0] += 1
    }

    mutating func harakiri(slot: UInt32) {
        harakiri += 1
        harakiriBySlot[slot, default: 0] += 1
    }

    mutating func respawn(slot: UInt32) {
        respawns += 1
        respawnsBySlot[slot, default: 0] += 1
    }

    /// Reloads of any kind that ended with `outcome`.
    func reloads(_ outcome: Outcome) -> Int { reloads.values.reduce(0) { $0 + ($1[outcome] ?? 0) } }
}

/// The observer endpoints' answers (`ObserveServer` does the sockets): `/healthz` and
/// `/readyz` on both addresses, the stats document (MasterStats.swift) and the metrics
/// (MasterMetrics.swift).
extension Master {
    func observe(_ request: ObserveServer.Request) -> ObserveServer.Answer {
        if let method = request.method, method != "GET" && method != "HEAD" {
            return .text(405, "only GET and HEAD\n")
        }
        switch (request.endpoint, request.path) {
        case (_, "/healthz"?): return .text(200, "ok\n")
        case (_, "/readyz"?): return isReady ? .text(200, "ready\n") : .text(503, "not ready: \(notReadyReason)\n")
        case (.metrics, "/metrics"?):
            return ObserveServer.Answer(status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8", body: metricsText())
        case (.metrics, _): return .text(404, "not found: try /metrics, /healthz or /readyz\n")
        case (.stats, _): return ObserveServer.Answer(status: 200, contentType: "application/json", body: statsDocument())
        }
    }

    /// Ready: the serving generation has a ready worker and no shutdown has begun (SIGTERM
    /// turns this off before the drain, and `--shutdown-delay` before that).
    var isReady: Bool { notReadyReason.isEmpty }

    var notReadyReason: String {
        if stopping || shutdownRequested { return "shutting down" }
        // Any ready worker that is not being retired serves: in a chain reload the last old
        // one may retire just before the new generation is committed.
        if !table.workers.contains(where: { $0.ready && !$0.retiring }) { return "no worker is ready" }
        return ""
    }
}

/// One worker as the stats and the metrics show it: the master's record, and its scoreboard
/// slot once the worker has taken it (a worker still starting may not have yet).
struct ObservedWorker {
    enum State: String, CaseIterable { case starting, ready, recycling, retiring }

    let record: WorkerTable.Worker
    let slot: Scoreboard.Slot?
    /// App threads in a request now.
    let busyThreads: Int
    let threads: Int

    var state: State {
        if record.retiring { return .retiring }
        if record.recycling != nil { return .recycling }
        return record.ready ? .ready : .starting
    }
}

extension Master {
    /// The workers that have a process, by slot.
    func observedWorkers() -> [ObservedWorker] {
        table.workers.filter { $0.pid > 0 }.sorted { $0.slot < $1.slot }.map { record in
            let threads = (generations[record.generation]?.config ?? config).threads
            let slot = tally.board.slot(Int(record.slot))
            let mine = slot.pid == record.pid ? slot : nil
            return ObservedWorker(record: record, slot: mine, busyThreads: mine?.busyCores(threads: threads) ?? 0, threads: threads)
        }
    }
}
