#if canImport(Glibc)
import Glibc
#endif
import ApusConfig
import ApusIPC
import ApusObserve
import ApusSys

/// `--stats`: the workers' state as JSON in uWSGI's stats format (core/master_utils.c's
/// `uwsgi_stats_dump`: the fields uwsgitop reads, with uWSGI's names, types and units),
/// plus Apus's extras (`generation`, `state`, `last_rt`, `connections`, `in_progress` per
/// worker, `apus` at the top). docs/observability.md lists them. Built only when a client
/// asks: memory sizes and accept queues are read then, never on a loop turn.
extension Master {
    func statsDocument() -> [UInt8] {
        let now = Sys.now()
        let clock = StatsClock(monotonic: now, unix: Self.unixNow())
        let workers = observedWorkers()
        let sockets = statsSockets()
        let load = workers.reduce(0) { $0 + $1.busyThreads }
        var requests = 0
        for w in workers { requests += Int(clamping: w.slot?.requests ?? 0) }
        let document = JSON.object([
            ("version", .string("apus \(version)")),
            ("listen_queue", .int(sockets.reduce(0) { $0 + $1.queue })),
            ("listen_queue_errors", .int(0)),
            ("signal_queue", .int(0)),
            ("load", .int(load)),
            ("pid", .int(Int(getpid()))),
            ("uid", .int(Int(getuid()))),
            ("gid", .int(Int(getgid()))),
            ("cwd", .string(workingDirectory() ?? "")),
            ("locks", .array([])),
            ("sockets", .array(sockets.map(\.json))),
            ("workers", .array(workers.map { statsWorker($0, clock: clock) })),
            ("apus", .object([
                ("generation", .int(Int(plan.serving))),
                ("incoming", plan.incoming.map { .int(Int($0)) } ?? .null),
                ("reload", plan.runningKind.map { .string($0.name) } ?? .null),
                ("reloads", .int(counters.reloads(.done))),
                ("ready", .bool(isReady)),
                ("stopping", .bool(stopping || shutdownRequested)),
                ("workers_wanted", .int(table.desired)),
                ("requests", .int(requests)),
                ("started_on", .int(startedOn)),
            ])),
        ])
        return document.encoded() + [10]
    }

    private func statsWorker(_ w: ObservedWorker, clock: StatsClock) -> JSON {
        let record = w.record
        let slot = w.slot
        let requests = slot?.requests ?? 0
        let busy = slot?.busyMicros ?? 0
        let memory = ProcessMemory.sizes(record.pid)
        var cores: [JSON] = []
        var inProgress: [JSON] = []
        if let slot {
            for i in 0..<min(w.threads, Scoreboard.coresPerSlot) {
                guard let core = slot.core(i) else { break }
                let running = core.state != .idle
                var info: [(String, JSON)] = []
                if running {
                    info = [("request_start", .double(clock.unix(core.startedAt)))]
                    inProgress.append(.object([
                        ("core", .int(i)),
                        ("request", .bytes(StatsLine.bytes(of: core))),
                        ("seconds", .double(max(0, clock.monotonic - core.startedAt))),
                    ]))
                }
                cores.append(.object([
                    ("id", .int(i)), ("requests", .int(0)), ("static_requests", .int(0)),
                    ("routed_requests", .int(0)), ("offloaded_requests", .int(0)),
                    ("write_errors", .int(0)), ("read_errors", .int(0)),
                    ("in_request", .int(running ? 1 : 0)), ("vars", .array([])), ("req_info", .object(info)),
                ]))
            }
        }
        return .object([
            ("id", .int(Int(record.slot) + 1)),
            ("pid", .int(Int(record.pid))),
            ("accepting", .int(record.ready && !record.retiring ? 1 : 0)),
            ("requests", .int(Int(clamping: requests))),
            ("delta_requests", .int(0)),
            ("exceptions", .int(Int(clamping: slot?.counters.exceptions ?? 0))),
            ("harakiri_count", .int(counters.harakiriBySlot[record.slot] ?? 0)),
            ("signals", .int(0)),
            ("signal_queue", .int(0)),
            ("status", .string(w.busyThreads > 0 ? "busy" : "idle")),
            ("rss", .int(memory?.resident ?? 0)),
            ("vsz", .int(memory?.virtual ?? 0)),
            ("running_time", .int(Int(clamping: busy))),
            ("last_spawn", .int(Int(clock.unix(record.startedAt)))),
            ("respawn_count", .int(counters.respawnsBySlot[record.slot] ?? 0)),
            ("tx", .int(Int(clamping: slot?.counters.bodyBytes ?? 0))),
            ("avg_rt", .int(requests > 0 ? Int(clamping: busy / requests) : 0)),
            ("apps", .array([])),
            ("cores", .array(cores)),
            ("generation", .int(Int(record.generation))),
            ("state", .string(w.state.rawValue)),
            ("last_rt", .int(Int(clamping: slot?.counters.lastMicros ?? 0))),
            ("connections", .int(tally.count(Int(record.slot)))),
            ("in_progress", .array(inProgress)),
        ])
    }

    /// The app's listening sockets, in a stable order, with their accept queues.
    private func statsSockets() -> [StatsSocket] {
        sockets.sorted { $0.key.description < $1.key.description }.map { bind, fd in
            let name: String
            switch bind.address {
            case let .tcp(host, port): name = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            case let .unix(path): name = path
            case let .fd(n): name = "fd://\(n)"
            }
            let queue = ListenQueue.read(fd)
            return StatsSocket(name: name, proto: bind.proto.rawValue, queue: queue?.queue ?? 0,
                               maxQueue: queue?.max ?? config.listenBacklog)
        }
    }

    static func unixNow() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }
}

/// Monotonic times (the scoreboard's and the worker table's) as Unix times.
struct StatsClock {
    let monotonic: Double
    let unix: Double

    func unix(_ t: Double) -> Double { t > 0 ? unix - (monotonic - t) : 0 }
}

/// One listening socket in the stats (uWSGI's `sockets[]`).
struct StatsSocket {
    let name: String
    let proto: String
    let queue: Int
    let maxQueue: Int

    var json: JSON {
        .object([("name", .string(name)), ("proto", .string(proto)), ("queue", .int(queue)),
                 ("max_queue", .int(maxQueue)), ("shared", .int(0)), ("can_offload", .int(0))])
    }
}

/// A core's request line as the raw bytes the worker stored (hostile: the JSON writer
/// escapes them and replaces invalid UTF-8), without its newline.
enum StatsLine {
    static func bytes(of core: Scoreboard.Core) -> [UInt8] {
        let p = core.lineBytes
        var n = 0
        while n < Scoreboard.lineBytes - 1 && p[n] != 0 && p[n] != 10 { n += 1 }
        return Array(UnsafeBufferPointer(start: p, count: n))
    }
}

extension ReloadPlan {
    /// The kind of the reload in progress, nil when none runs.
    var runningKind: ReloadKind? {
        switch phase {
        case .idle: nil
        case let .replacingAll(_, kind, _, _): kind
        case .chaining: .chain
        }
    }
}
