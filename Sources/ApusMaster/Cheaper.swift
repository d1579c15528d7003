#if canImport(Glibc)
import Glibc
#endif

/// `--cheaper` (uWSGI's adaptive process spawning), as a pure value: from what the workers
/// say in the scoreboard, whether the serving generation needs a worker more, one less, or
/// as many as it has. The master samples about twice a second and carries the answer out
/// by changing `WorkerTable.desired` (a new worker is spawned; a retired one drains).
///
/// A worker is *busy* over a sample when its app threads spent at least `busyShare` of the
/// interval in app calls, or when every one of them is in the app at the sample. The pool
/// grows when every worker stayed busy for `overloadFor` seconds, and shrinks by one when
/// the load would have fitted in one worker less at `spareShare` each for the whole of
/// `--cheaper-idle`. Time in the app is what is counted, not CPU: a worker waiting on a
/// database is as unavailable as one computing.
struct Cheaper: Equatable {
    struct Sample: Equatable {
        var pid: pid_t
        /// Microseconds spent in app calls since the worker started (the scoreboard's counter).
        var busyMicros: UInt64
        /// App threads in the app at the sample.
        var coresBusy: Int
    }

    enum Decision: Equatable {
        case keep
        case add
        case remove
    }

    static let busyShare = 0.8
    static let spareShare = 0.5
    static let overloadFor = 1.0

    let minimum: Int
    let maximum: Int
    let idleAfter: Double
    let threads: Int

    private var previous: [pid_t: UInt64] = [:]
    private var previousAt: Double?
    private var overloadedSince: Double?
    private var spareSince: Double?

    init(minimum: Int, maximum: Int, idleAfter: Double, threads: Int) {
        self.minimum = minimum
        self.maximum = maximum
        self.idleAfter = idleAfter
        self.threads = max(1, threads)
    }

    /// `samples`: the ready workers of the serving generation that stay (not retiring or
    /// being recycled); `starting`: workers asked for and not ready yet.
    mutating func decide(_ samples: [Sample], desired: Int, starting: Int, now: Double) -> Decision {
        defer {
            previous = Dictionary(samples.map { ($0.pid, $0.busyMicros) }, uniquingKeysWith: { a, _ in a })
            previousAt = now
        }
        guard let at = previousAt, now > at else { return .keep }
        let interval = now - at
        // Utilisation of each worker known at both samples.
        var shares: [(share: Double, allIn: Bool)] = []
        for s in samples {
            guard let before = previous[s.pid], s.busyMicros >= before else { continue }
            let share = min(1, Double(s.busyMicros - before) / 1e6 / (interval * Double(threads)))
            shares.append((share, s.coresBusy >= threads))
        }
        // Judge only a settled pool: a worker being started changes the picture.
        guard starting == 0, !shares.isEmpty, shares.count == samples.count else {
            overloadedSince = nil
            spareSince = nil
            return .keep
        }
        if shares.allSatisfy({ $0.share >= Self.busyShare || $0.allIn }) {
            spareSince = nil
            let since = overloadedSince ?? at
            overloadedSince = since
            guard desired < maximum, now - since >= Self.overloadFor else { return .keep }
            overloadedSince = nil
            return .add
        }
        overloadedSince = nil
        let load = shares.reduce(0) { $0 + $1.share }
        guard desired > minimum, load <= Double(desired - 1) * Self.spareShare else {
            spareSince = nil
            return .keep
        }
        let since = spareSince ?? at
        spareSince = since
        guard now - since >= idleAfter else { return .keep }
        spareSince = now
        return .remove
    }
}
