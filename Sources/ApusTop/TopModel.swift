// What `apus top` shows, as a value: made from the last two stats documents and when they
// were read, so rates come from deltas between polls. No I/O here; TopTerminal polls and
// draws, TopRender turns this into lines.

/// One stats document and the monotonic time it was read at.
public struct TopSample: Equatable, Sendable {
    public var snapshot: StatsSnapshot
    /// Seconds on the monotonic clock.
    public var at: Double

    public init(_ snapshot: StatsSnapshot, at: Double) {
        self.snapshot = snapshot
        self.at = at
    }
}

public struct TopRow: Equatable, Sendable {
    public var id: Int
    public var pid: Int
    public var generation: Int?
    public var status: String
    public var state: String?
    public var requests: Int
    /// Requests per second since the previous poll; nil on the first poll or when the
    /// worker was replaced (another pid) or its count went down.
    public var requestsPerSecond: Double?
    public var averageMs: Double?
    public var lastMs: Double?
    public var rssMiB: Double
    /// The requests in progress, as one column: "GET /x 1.2s", uWSGI's "in request 0.3s".
    public var inProgress: String
}

public struct TopView: Equatable, Sendable {
    public var version: String?
    public var masterPid: Int?
    public var generation: Int?
    /// The kind of reload in progress ("graceful", "workers", ...), and the generation it
    /// starts, when the Apus extras say one is in progress.
    public var reload: String?
    public var incoming: Int?
    public var reloads: Int?
    public var ready: Bool?
    public var stopping: Bool?
    /// All workers' requests per second since the previous poll (nil on the first).
    public var requestsPerSecond: Double?
    public var requests: Int
    /// Workers ready: Apus's state "ready"; for uWSGI, workers with a pid that accept.
    public var workersReady: Int
    /// `workers_wanted` (Apus), else the number of worker slots.
    public var workersWanted: Int
    public var listenQueue: Int?
    public var rows: [TopRow]

    /// The view of `current`, with rates from `previous` (the poll before it, if any).
    public init(previous: TopSample?, current: TopSample) {
        let s = current.snapshot
        let apus = s.apus
        version = s.version
        masterPid = s.pid
        generation = apus?.generation
        reload = apus?.reload
        incoming = apus?.incoming
        reloads = apus?.reloads
        ready = apus?.ready
        stopping = apus?.stopping
        listenQueue = s.listenQueue
        workersWanted = apus?.workersWanted ?? s.workers.count
        workersReady = s.workers.filter { w in
            if let state = w.state { return state == "ready" }
            return w.pid > 0 && w.accepting != false
        }.count
        // Saturating: a hostile document may hold many counters near 2^53.
        let workerTotal = s.workers.reduce(0) { total, w in
            let (sum, overflow) = total.addingReportingOverflow(max(0, w.requests))
            return overflow ? Int.max : sum
        }
        requests = apus?.requests ?? workerTotal

        let elapsed = previous.map { current.at - $0.at } ?? 0
        var before: [Int: WorkerStats] = [:]
        for w in previous?.snapshot.workers ?? [] { before[w.id] = w }
        rows = s.workers.map { w in
            var rate: Double?
            if elapsed > 0, let old = before[w.id], old.pid == w.pid, w.requests >= old.requests {
                rate = Double(w.requests - old.requests) / elapsed
            }
            return TopRow(id: w.id, pid: w.pid, generation: w.generation, status: w.status, state: w.state,
                          requests: w.requests, requestsPerSecond: rate,
                          averageMs: w.avgRT.map { Double($0) / 1000 }, lastMs: w.lastRT.map { Double($0) / 1000 },
                          rssMiB: Double(w.rss) / 1_048_576, inProgress: TopView.describe(w.inProgress))
        }
        if let previous, elapsed > 0 {
            // Apus's total counts requests of workers gone since; otherwise the sum of the
            // workers' deltas (a replaced worker's count starts over and is left out).
            if let now = apus?.requests, let then = previous.snapshot.apus?.requests, now >= then {
                requestsPerSecond = Double(now - then) / elapsed
            } else {
                requestsPerSecond = rows.reduce(0) { $0 + ($1.requestsPerSecond ?? 0) }
            }
        }
    }

    /// "GET /x 1.2s, GET /y 0.1s"; "in request" when the server does not name the request.
    static func describe(_ list: [InProgress]) -> String {
        list.map { p in
            let what = p.request ?? "in request"
            guard let seconds = p.seconds else { return what }
            return "\(what) \(formatFixed(seconds, 1))s"
        }.joined(separator: ", ")
    }
}

/// `value` with `decimals` digits after the point, rounded (no Foundation's String(format:)).
func formatFixed(_ value: Double, _ decimals: Int) -> String {
    guard value.isFinite else { return "-" }
    var scale = 1.0
    for _ in 0..<decimals { scale *= 10 }
    let negative = value < 0
    let scaled = (abs(value) * scale).rounded()
    guard scaled < 9.0e15 else { return negative ? "-inf" : "inf" }
    let n = Int(scaled)
    let s = Int(scale)
    var text = String(n / s)
    if decimals > 0 {
        let frac = String(n % s)
        text += "." + String(repeating: "0", count: decimals - frac.count) + frac
    }
    return negative && n > 0 ? "-" + text : text
}
