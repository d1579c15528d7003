// A stats document as `apus top` uses it: uWSGI's stats format (what `uwsgi --stats` and
// `apus --stats` write) read from JSON, with the Apus extras when they are there. Every
// field is optional or has a neutral default: a uWSGI server has none of the extras, and a
// field of the wrong type is taken as absent rather than refusing the whole document.

/// One request a worker is running, from Apus's `in_progress` or uWSGI's cores.
public struct InProgress: Equatable, Sendable {
    /// "GET /x" (Apus), nil when the server does not say (uWSGI).
    public var request: String?
    /// How long it has been running, when known.
    public var seconds: Double?

    public init(request: String?, seconds: Double?) {
        self.request = request
        self.seconds = seconds
    }
}

public struct WorkerStats: Equatable, Sendable {
    public var id = 0
    public var pid = 0
    public var accepting: Bool?
    public var requests = 0
    /// "idle", "busy", "cheap", ...
    public var status = ""
    public var rss = 0
    /// Average request time, µs.
    public var avgRT: Int?
    /// Apus: the last finished request's time, µs.
    public var lastRT: Int?
    /// Apus: the generation the worker belongs to.
    public var generation: Int?
    /// Apus: "starting", "ready", "retiring", "recycling".
    public var state: String?
    public var inProgress: [InProgress] = []

    public init() {}
}

/// The top-level `apus` object.
public struct ApusExtras: Equatable, Sendable {
    public var generation: Int?
    public var incoming: Int?
    public var reload: String?
    public var reloads: Int?
    public var ready: Bool?
    public var stopping: Bool?
    public var workersWanted: Int?
    public var requests: Int?

    public init() {}
}

public struct StatsSnapshot: Equatable, Sendable {
    public var version: String?
    /// The master's pid.
    public var pid: Int?
    public var listenQueue: Int?
    public var workers: [WorkerStats] = []
    public var apus: ApusExtras?

    public init() {}

    public struct NotStats: Error, Equatable, CustomStringConvertible {
        public let description: String
    }

    /// Reads a parsed document. `now` is the wall clock (unix seconds), to turn uWSGI's
    /// request start times into durations. A document that is not an object with a
    /// `workers` array is not a stats document.
    public init(_ json: JSON, now: Double) throws(NotStats) {
        guard case .object = json, let workers = json["workers"]?.array else {
            throw NotStats(description: "not a stats document (no \"workers\" array)")
        }
        version = json["version"]?.string
        pid = json["pid"]?.int
        listenQueue = json["listen_queue"]?.int
        self.workers = workers.compactMap { WorkerStats($0, now: now) }
        if let a = json["apus"], case .object = a {
            var extras = ApusExtras()
            extras.generation = a["generation"]?.int
            extras.incoming = a["incoming"]?.int
            extras.reload = a["reload"]?.string
            extras.reloads = a["reloads"]?.int
            extras.ready = a["ready"]?.bool
            extras.stopping = a["stopping"]?.bool
            extras.workersWanted = a["workers_wanted"]?.int
            extras.requests = a["requests"]?.int
            apus = extras
        }
    }
}

extension WorkerStats {
    /// nil for anything that is not an object.
    init?(_ json: JSON, now: Double) {
        guard case .object = json else { return nil }
        self.init()
        id = json["id"]?.int ?? 0
        pid = json["pid"]?.int ?? 0
        accepting = json["accepting"]?.int.map { $0 != 0 }
        requests = json["requests"]?.int ?? 0
        status = json["status"]?.string ?? ""
        rss = json["rss"]?.int ?? 0
        avgRT = json["avg_rt"]?.int
        lastRT = json["last_rt"]?.int
        generation = json["generation"]?.int
        state = json["state"]?.string
        if let list = json["in_progress"]?.array {
            inProgress = list.map { InProgress(request: $0["request"]?.string, seconds: $0["seconds"]?.double) }
        } else if let cores = json["cores"]?.array {
            // uWSGI: a core in a request, since when (unix seconds, req_info) and which one
            // (the request's variables, "REQUEST_METHOD=GET", in `vars`).
            inProgress = cores.filter { $0["in_request"]?.int == 1 }.map { core in
                let start = core["req_info"]?["request_start"]?.double
                return InProgress(request: WorkerStats.requestLine(core["vars"]?.array ?? []),
                                  seconds: start.map { max(0, now - $0) })
            }
        }
    }

    /// "GET /x" from uWSGI's `vars` of a core, nil when they do not name both.
    static func requestLine(_ vars: [JSON]) -> String? {
        var method: String?
        var uri: String?
        for v in vars {
            guard let text = v.string else { continue }
            if text.hasPrefix("REQUEST_METHOD=") { method = String(text.dropFirst(15)) }
            if text.hasPrefix("REQUEST_URI=") { uri = String(text.dropFirst(12)) }
        }
        guard let method, let uri else { return nil }
        return method + " " + uri
    }
}
