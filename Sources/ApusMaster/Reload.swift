/// The reload methods, strongest last: when reloads are asked for while one runs, they are
/// coalesced into the strongest one asked for.
public enum ReloadKind: Int, Comparable, Sendable, CustomStringConvertible {
    /// One worker at a time: start one new, wait until it is ready, retire one old.
    case chain = 0
    /// All workers at once: start a whole new set, retire the old set when all are ready.
    case workers = 1
    /// Re-read the configuration, then as `workers` (sockets opened or closed as binds changed).
    case graceful = 2
    /// A new master image (binary, Python, options) adopted the old one's workers: as
    /// `workers`, started by the new image itself, never asked for while one runs.
    case upgrade = 3

    public static func < (a: ReloadKind, b: ReloadKind) -> Bool { a.rawValue < b.rawValue }

    /// One word for labels: uWSGI's names (chain, workers, graceful) and upgrade.
    public var name: String {
        switch self {
        case .chain: "chain"
        case .workers: "workers"
        case .graceful: "graceful"
        case .upgrade: "upgrade"
        }
    }

    public var description: String {
        switch self {
        case .chain: "chain reload"
        case .workers: "worker reload"
        case .graceful: "graceful reload"
        case .upgrade: "upgrade in place"
        }
    }
}

/// The reload sequencing, as a pure value: events in, actions out. The master owns the
/// processes and carries out the actions; this decides what happens next, so every path
/// (success, failure, timeout, a reload asked for during another) is tested without forking.
///
/// Invariant: the old generation keeps serving until the new one is ready. A new generation
/// that fails is abandoned and the old one keeps serving.
struct ReloadPlan: Equatable {
    enum Action: Equatable {
        /// Start `count` workers of `generation` (with --preload: after its preloader is ready).
        case spawn(generation: UInt32, count: Int)
        /// Stop `count` workers of generations older than `generation` (nil: all of them).
        case retireOld(before: UInt32, count: Int?)
        /// Stop every worker of `generation`: it failed.
        case abandon(generation: UInt32, reason: String)
        /// `generation` serves now (for graceful reloads: its configuration is the one in force).
        case commit(generation: UInt32, kind: ReloadKind)
        /// A reload starts: for graceful reloads the master re-reads its configuration first.
        case begin(generation: UInt32, kind: ReloadKind)
    }

    enum Phase: Equatable {
        case idle
        /// All new workers started at once; `ready` of `target` are ready.
        case replacingAll(generation: UInt32, kind: ReloadKind, ready: Int, target: Int)
        /// Chain: `replaced` old workers retired so far; one new worker is starting.
        case chaining(generation: UInt32, replaced: Int, target: Int)
    }

    private(set) var phase = Phase.idle
    private(set) var pending: ReloadKind?
    /// The generation that serves.
    private(set) var serving: UInt32
    private var lastGeneration: UInt32

    init(serving: UInt32) {
        self.serving = serving
        lastGeneration = serving
    }

    var isReloading: Bool { phase != .idle }

    /// The generation being brought up, if any.
    var incoming: UInt32? {
        switch phase {
        case .idle: nil
        case let .replacingAll(g, _, _, _): g
        case let .chaining(g, _, _): g
        }
    }

    /// A reload was asked for. `workers` is the number of workers the new generation has.
    mutating func request(_ kind: ReloadKind, workers: Int) -> [Action] {
        guard phase == .idle else {
            pending = max(pending ?? kind, kind)
            return []
        }
        lastGeneration += 1
        let g = lastGeneration
        if kind == .chain {
            phase = .chaining(generation: g, replaced: 0, target: workers)
            return [.begin(generation: g, kind: kind), .spawn(generation: g, count: 1)]
        }
        phase = .replacingAll(generation: g, kind: kind, ready: 0, target: workers)
        return [.begin(generation: g, kind: kind), .spawn(generation: g, count: workers)]
    }

    /// A worker of `generation` reported ready. `workers`: the size for a pending reload.
    mutating func ready(generation: UInt32, workers: Int) -> [Action] {
        switch phase {
        case let .replacingAll(g, kind, ready, target) where g == generation:
            if ready + 1 < target {
                phase = .replacingAll(generation: g, kind: kind, ready: ready + 1, target: target)
                return []
            }
            return finish(g, kind, workers: workers, [.retireOld(before: g, count: nil)])
        case let .chaining(g, replaced, target) where g == generation:
            let done = replaced + 1
            if done < target {
                phase = .chaining(generation: g, replaced: done, target: target)
                return [.retireOld(before: g, count: 1), .spawn(generation: g, count: 1)]
            }
            // The last step retires every remaining old worker (there may be more old than
            // new ones when the worker count shrank).
            return finish(g, .chain, workers: workers, [.retireOld(before: g, count: nil)])
        default:
            return []
        }
    }

    /// A worker of `generation` died before it was ready, or the reload timed out.
    mutating func failed(generation: UInt32, reason: String, workers: Int) -> [Action] {
        guard let g = incoming, g == generation else { return [] }
        phase = .idle
        var actions: [Action] = [.abandon(generation: g, reason: reason)]
        actions += startPending(workers: workers)
        return actions
    }

    private mutating func finish(_ g: UInt32, _ kind: ReloadKind, workers: Int, _ head: [Action]) -> [Action] {
        phase = .idle
        serving = g
        return head + [.commit(generation: g, kind: kind)] + startPending(workers: workers)
    }

    private mutating func startPending(workers: Int) -> [Action] {
        guard let next = pending else { return [] }
        pending = nil
        return request(next, workers: workers)
    }
}
