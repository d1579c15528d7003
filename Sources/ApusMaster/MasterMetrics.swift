#if canImport(Glibc)
import Glibc
#endif
import ApusIPC

/// What workers answered, summed: by status class (app and static answers), the app
/// requests' duration histogram (one count per bucket of `Scoreboard.durationBounds`, then
/// the rest; not cumulative) and their total time, exceptions and body bytes. One worker's
/// slot read at a scrape, the counts of the workers that are gone, or the sum of both.
struct AnswerCounts: Equatable {
    var byClass = [UInt64](repeating: 0, count: 5)
    var histogram = [UInt64](repeating: 0, count: Scoreboard.durationBounds.count + 1)
    var busyMicros: UInt64 = 0
    var exceptions: UInt64 = 0
    var bodyBytes: UInt64 = 0

    init() {}

    /// A worker's slot, read without a lock (each word is read whole; the words may be a
    /// request apart).
    init(_ slot: Scoreboard.Slot) {
        let c = slot.counters
        byClass = (0..<5).map { c.appStatus($0) &+ c.staticStatus($0) }
        histogram = (0..<histogram.count).map { c.histogram($0) }
        busyMicros = slot.busyMicros
        exceptions = c.exceptions
        bodyBytes = c.bodyBytes
    }

    /// Requests the histogram counted (app requests).
    var durationCount: UInt64 { histogram.reduce(0, &+) }

    static func + (a: AnswerCounts, b: AnswerCounts) -> AnswerCounts {
        var s = a
        s.byClass = zip(a.byClass, b.byClass).map { $0 &+ $1 }
        s.histogram = zip(a.histogram, b.histogram).map { $0 &+ $1 }
        s.busyMicros = a.busyMicros &+ b.busyMicros
        s.exceptions = a.exceptions &+ b.exceptions
        s.bodyBytes = a.bodyBytes &+ b.bodyBytes
        return s
    }
}

/// The running totals behind `/metrics`'s counters. A worker's slot is zeroed when a new
/// worker takes it, so the counts of a worker are folded in here when the master reaps it
/// (while the slot still holds its pid); a counter is then the departed workers' totals plus
/// the live workers' slots, and never goes back while this master image runs. An upgrade in
/// place starts a new image with empty totals: Prometheus sees a counter reset.
struct AnswerTotals: Equatable {
    private(set) var departed = AnswerCounts()

    /// A worker exited; `counts` is its slot as it left it.
    mutating func workerExited(_ counts: AnswerCounts) {
        departed = departed + counts
    }

    /// Every answer so far: the departed workers' and the `live` ones'.
    func total(live: [AnswerCounts]) -> AnswerCounts {
        live.reduce(departed, +)
    }
}

/// Everything `/metrics` shows, read by the master at a scrape; `render` is pure.
struct MetricsSnapshot {
    var answers = AnswerCounts()
    /// App requests running now (busy app threads of the live workers).
    var inFlight = 0
    var workers: [ObservedWorker.State: Int] = [:]
    /// Workers with at least one request in the app now.
    var busyWorkers = 0
    var desiredWorkers = 0
    /// Reloads that ended, by method (`ReloadKind.name`) and outcome.
    var reloads: [String: [MasterCounters.Outcome: Int]] = [:]
    var harakiri = 0
    var respawns = 0
    /// Open client connections of the live workers.
    var connections = 0
    var ready = false
    var generation: UInt32 = 0
    /// Resident memory by worker slot (the workers /proc could be read for).
    var residentBytes: [(slot: UInt32, bytes: Int)] = []

    static let reloadMethods = ["graceful", "workers", "chain", "upgrade"]
    static let statusClasses = ["1xx", "2xx", "3xx", "4xx", "5xx"]

    /// Prometheus's text format 0.0.4.
    func render() -> [UInt8] {
        var out = ""
        func family(_ name: String, _ type: String, _ help: String) {
            out += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
        }
        func sample(_ name: String, _ labels: String = "", _ value: String) {
            out += labels.isEmpty ? "\(name) \(value)\n" : "\(name){\(labels)} \(value)\n"
        }
        /// A family of one sample without labels.
        func single(_ name: String, _ type: String, _ help: String, _ value: String) {
            family(name, type, help)
            sample(name, "", value)
        }

        family("apus_requests_total", "counter", "Requests answered by the app or as static files, by status class.")
        for (i, cls) in Self.statusClasses.enumerated() {
            sample("apus_requests_total", "status_class=\"\(cls)\"", "\(answers.byClass[i])")
        }

        family("apus_request_duration_seconds", "histogram", "Time the app took per request (static files are not timed).")
        var cumulative: UInt64 = 0
        for (i, bound) in Scoreboard.durationBounds.enumerated() {
            cumulative &+= answers.histogram[i]
            sample("apus_request_duration_seconds_bucket", "le=\"\(bound)\"", "\(cumulative)")
        }
        let count = answers.durationCount
        sample("apus_request_duration_seconds_bucket", "le=\"+Inf\"", "\(count)")
        sample("apus_request_duration_seconds_sum", "", Self.seconds(micros: answers.busyMicros))
        sample("apus_request_duration_seconds_count", "", "\(count)")

        single("apus_requests_in_flight", "gauge", "App requests running now.", "\(inFlight)")

        single("apus_exceptions_total", "counter", "App requests that raised an exception.", "\(answers.exceptions)")

        single("apus_response_body_bytes_total", "counter", "Response body bytes sent by the app and as static files.", "\(answers.bodyBytes)")

        family("apus_workers", "gauge", "Worker processes by state.")
        for state in ObservedWorker.State.allCases {
            sample("apus_workers", "state=\"\(state.rawValue)\"", "\(workers[state] ?? 0)")
        }
        single("apus_workers_busy", "gauge", "Worker processes with at least one request in the app.", "\(busyWorkers)")
        single("apus_workers_desired", "gauge", "Worker processes wanted (--processes, --cheaper, SIGTTIN and SIGTTOU).", "\(desiredWorkers)")

        family("apus_reloads_total", "counter", "Reloads that ended, by method and outcome.")
        for method in Self.reloadMethods {
            for outcome in MasterCounters.Outcome.allCases {
                sample("apus_reloads_total", "method=\"\(method)\",outcome=\"\(outcome.rawValue)\"",
                       "\(reloads[method]?[outcome] ?? 0)")
            }
        }

        single("apus_harakiri_total", "counter", "Workers replaced because a request ran past --harakiri.", "\(harakiri)")
        single("apus_worker_respawns_total", "counter", "Workers started again after they died.", "\(respawns)")

        single("apus_connections_open", "gauge", "Client connections open in the workers.", "\(connections)")

        single("apus_ready", "gauge", "1 while /readyz answers 200.", ready ? "1" : "0")
        single("apus_generation", "gauge", "The serving generation's number (1 at start, higher after each reload).", "\(generation)")

        family("apus_worker_resident_memory_bytes", "gauge", "Resident memory of each worker, by slot.")
        for w in residentBytes {
            sample("apus_worker_resident_memory_bytes", "slot=\"\(w.slot)\"", "\(w.bytes)")
        }
        return Array(out.utf8)
    }

    /// Microseconds as seconds, exactly ("1.5", "0.000250").
    static func seconds(micros: UInt64) -> String {
        let fraction = String(micros % 1_000_000)
        return "\(micros / 1_000_000).\(String(repeating: "0", count: 6 - fraction.count))\(fraction)"
    }
}

extension Master {
    /// `/metrics`: the snapshot of this moment, rendered.
    func metricsText() -> [UInt8] {
        metricsSnapshot().render()
    }

    func metricsSnapshot() -> MetricsSnapshot {
        let observed = observedWorkers()
        var s = MetricsSnapshot()
        s.answers = answerTotals.total(live: observed.compactMap { $0.slot.map(AnswerCounts.init) })
        for w in observed {
            s.workers[w.state, default: 0] += 1
            s.inFlight += w.busyThreads
            if w.busyThreads > 0 { s.busyWorkers += 1 }
            // Negative: a slot not accepting (draining after a reload).
            s.connections += max(0, tally.count(Int(w.record.slot)))
            if let bytes = ProcessMemory.residentBytes(w.record.pid) { s.residentBytes.append((w.record.slot, bytes)) }
        }
        s.desiredWorkers = table.desired
        s.reloads = counters.reloads
        s.harakiri = counters.harakiri
        s.respawns = counters.respawns
        s.ready = isReady
        s.generation = plan.serving
        return s
    }

    /// The master reaped worker `pid`, which held `slot`: its answers join the totals, read
    /// before a new worker takes the slot and zeroes it.
    func foldAnswers(ofWorker pid: pid_t, slot: UInt32) {
        let board = tally.board.slot(Int(slot))
        guard board.pid == pid else { return }  // it died before taking its slot
        answerTotals.workerExited(AnswerCounts(board))
    }
}
