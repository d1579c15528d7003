import ApusProtocols
/// Where the server listens and which protocol it speaks there.
public struct Bind: Equatable, Hashable, Sendable, CustomStringConvertible {
    public enum Address: Equatable, Hashable, Sendable {
        /// `host` is an IPv4 or IPv6 literal or a name ("" or "0.0.0.0" means every IPv4 address).
        case tcp(host: String, port: Int)
        case unix(path: String)
        /// A listening socket inherited from the parent (`--fd N`, `fd://N`, systemd's
        /// LISTEN_FDS): adopted as it is, never opened, bound or unlinked by Apus.
        case fd(Int32)
    }
    public enum Kind: String, Equatable, Hashable, Sendable {
        case http
        case uwsgi
        /// Decided per connection by its first byte: 0 (a uwsgi packet's modifier1) is
        /// uwsgi, anything else HTTP. Sockets handed by a zerg server without `--protocol`.
        case auto
    }
    public var address: Address
    public var proto: Kind

    public init(address: Address, proto: Kind) {
        self.address = address
        self.proto = proto
    }

    public var description: String {
        switch address {
        case let .tcp(host, port):
            let h = host.contains(":") ? "[\(host)]" : host
            return "\(proto.rawValue)://\(h):\(port)"
        case let .unix(path):
            return "\(proto.rawValue)://unix:\(path)"
        case let .fd(n):
            return "\(proto.rawValue)://fd:\(n)"
        }
    }
}

/// What to import and call: `module[:callable]` or a file with `--wsgi-file`.
public struct AppSpec: Equatable, Sendable {
    public var module: String?
    public var wsgiFile: String?
    /// nil: try `application`, then `app`.
    public var callable: String?

    public init(module: String? = nil, wsgiFile: String? = nil, callable: String? = nil) {
        self.module = module
        self.wsgiFile = wsgiFile
        self.callable = callable
    }

    public var description: String {
        let target = module ?? wsgiFile ?? "?"
        return callable.map { "\(target):\($0)" } ?? target
    }
}

/// Limits on what a client may send; each breach has its own status code.
public struct RequestLimits: Equatable, Sendable {
    /// Request line length (method, target, version) → 414.
    public var maxRequestLine = 8190
    /// Bytes of the whole header section → 431.
    public var maxHeaderBytes = 65536
    /// Number of header fields → 431.
    public var maxHeaderCount = 100
    /// Request body bytes → 413. 0 means no limit.
    public var maxBodyBytes = 1 << 30
    /// Bodies up to this size are kept in memory; larger ones go to a temporary file.
    public var bodyMemoryBytes = 1 << 20
    /// Longest header line, its CRLF included → 431. 0 means only `maxHeaderBytes` applies.
    public var maxFieldBytes = 8190
    /// Seconds to receive a whole request head once its first byte arrived.
    public var headTimeout = 30.0
    /// Seconds to receive a whole request body once its head is in (nil: `headTimeout`).
    public var bodyTimeout: Double? = nil
    /// Seconds a keep-alive connection may stay idle between requests.
    public var keepAliveTimeout = 5.0

    public init() {}
}

/// One `--static-map MOUNT=DIR`.
public struct StaticMap: Equatable, Sendable {
    /// The URL prefix, `/static` (no trailing slash; `/` for the whole site).
    public var mount: String
    /// The directory, absolute (a relative one is taken from where apus starts).
    public var directory: String
    public init(mount: String, directory: String) {
        self.mount = mount
        self.directory = directory
    }
}

/// The resolved configuration: every option already validated, with defaults applied.
public struct Configuration: Equatable, Sendable {
    public var app = AppSpec()
    public var binds: [Bind] = []
    public var processes = 1
    public var threads = 1
    public var chdir: String?
    public var pythonPath: [String] = []
    public var env: [String: String] = [:]
    public var preload = false
    /// `--check`: start Python, import the app, exit (0 when it worked).
    public var check = false
    public var shutdownTimeout = 30.0
    /// Path of a Python interpreter (`--python`).
    public var python: String?
    /// A virtual environment (`--venv`, `--home`, `--virtualenv`).
    public var venv: String?
    /// SCRIPT_NAME prefix the app is mounted under ("" = root).
    public var scriptName = ""
    /// `--static-map`: URL prefixes answered from directories by the worker, in order.
    public var staticMaps: [StaticMap] = []
    public var limits = RequestLimits()
    public var accessLog = true
    /// `--process-titles` (on unless `--no-process-titles`): the processes rewrite their
    /// titles ("apus: master [app]", "apus: worker 3 gen 7 idle"); see docs/observability.md.
    public var processTitles = true
    /// `--proc-name` (Gunicorn's proc_name): the name in the master's title; nil: the app.
    public var procName: String?
    /// `--procname-prefix` (uWSGI's): written before "apus: " in every title.
    public var processTitlePrefix = ""
    public var listenBacklog = 1024
    /// `--reuse-port`: SO_REUSEPORT on TCP binds; the master binds, a worker listens once
    /// its app is loaded (see ReusePort in ApusWorker).
    public var reusePort = false
    /// `--zerg`: zerg servers whose sockets are taken at start and served (as `fd://N`).
    public var zerg: [String] = []
    /// `--zerg-server`: run as a zerg server on this unix socket path (no app, no workers).
    public var zergServer: String?
    /// `--protocol`: what the sockets handed by a zerg server speak (nil: `.auto`).
    public var zergProtocol: Bind.Kind?
    /// The descriptors a zerg server handed (served as `fd://N` binds). Their queue is the
    /// zerg server's: a worker that stops leaves it to the other instances.
    public var zergSockets: [Int32] = []
    /// `--chmod-socket`: mode of unix sockets (nil: as the umask leaves it).
    public var socketMode: UInt32?
    /// `--chown-socket`: "user" or "user:group" for unix sockets.
    public var socketOwner: String?
    /// `--forwarded-allow-ips`: who may set X-Forwarded-* / Forwarded (parsed once, here,
    /// not in every worker).
    public var trustedProxies = TrustedProxies.default
    /// `--proxy-protocol`: HTTP listeners expect a PROXY header first.
    public var proxyProtocol = false
    /// `--proxy-allow-ips`: the socket peers whose PROXY header is believed.
    public var proxyAllowed = TrustedProxies.default
    /// `--max-connections`: open connections per worker (0: derived from RLIMIT_NOFILE).
    public var maxConnections = 0
    /// `--stats`: where the master serves the workers' stats (uWSGI's JSON).
    public var statsBind: Bind?
    /// `--stats-http`: the stats address speaks HTTP (and answers the probes).
    public var statsHTTP = false
    /// `--metrics`: where the master serves Prometheus metrics and the probes over HTTP.
    public var metricsBind: Bind?
    /// `--shutdown-delay`: seconds between SIGTERM (not ready from then on) and the drain.
    public var shutdownDelay = 0.0
    /// `--master-fifo`: the control FIFO's path.
    public var masterFIFO: String?
    public var touchReload: String?
    public var touchWorkersReload: String?
    public var touchChainReload: String?
    public var pidfile: String?
    /// `--warmup`: path a new worker GETs in-process before it reports ready.
    public var warmupPath: String?
    public var reloadMercy = 30.0
    public var reloadTimeout = 60.0
    /// `--harakiri`: seconds a request may stay in the app (0: no limit).
    public var harakiri = 0.0
    public var harakiriVerbose = false
    /// `--max-requests`: requests after which a worker is recycled (0: never).
    public var maxRequests = 0
    /// `--max-requests-jitter`: a random 0...N added to each worker's `maxRequests`.
    public var maxRequestsJitter = 0
    /// `--max-worker-lifetime`: seconds after which a worker is recycled (0: never).
    public var maxWorkerLifetime = 0.0
    /// `--reload-on-rss`: MiB of RSS above which a worker is recycled (0: off).
    public var reloadOnRSS = 0
    /// `--evil-reload-on-rss`: MiB of RSS above which a worker is killed at once (0: off).
    public var evilReloadOnRSS = 0
    /// `--cheaper`: the fewest workers kept (0: adaptive workers off).
    public var cheaper = 0
    /// `--cheaper-idle`: seconds of spare workers before one is retired.
    public var cheaperIdle = 10.0
    /// `--uid`, `--gid`: who to run as once the sockets are bound (names or numbers).
    public var uid: String?
    public var gid: String?
    /// `--umask`.
    public var umask: UInt32?
    /// `--log-file`: where stderr goes (reopened on SIGUSR1).
    public var logFile: String?
    /// `--access-logfile`: where the access lines go (nil: with the log on stderr;
    /// `AccessLogDestination.stdout` for "-"; a file is reopened on SIGUSR1).
    public var accessLogFile: String?
    /// `--log-format`: the access line, compiled once here (see docs/observability.md).
    public var accessLogFormat = LogFormat.common
    /// `--log-x-forwarded-for`: access lines show X-Forwarded-For's first address.
    public var logXForwardedFor = false
    /// `--log-level`: the least severe of Apus's own log lines that is written.
    public var logLevel = LogLevel.info
    /// `--worker-class`: Gunicorn's sync or gthread (both are Apus's threaded worker).
    public var workerClass = WorkerClass.sync
    /// `--daemonize`: detach from the terminal at start, logging to `logFile`.
    public var daemonize = false
    /// `--log-maxsize`: bytes after which the master renames the log file and reopens it (0: never).
    public var logMaxSize = 0
    /// `--log-4xx`, `--log-5xx`, ...: requests logged even with the access log off.
    public var accessLogAlso = AccessLogAlso()
    /// `--attach-daemon`: shell commands the master runs and respawns.
    public var attachDaemons: [String] = []
    /// `--subscribe-to`: routers this instance announces its uwsgi socket to (addresses resolved).
    public var subscriptions: [Subscription] = []
    /// `--subscribe-freq`: seconds between two announcements.
    public var subscribeFrequency = 10.0
    /// `apus router`'s own settings.
    public var router = RouterSettings()
    /// Files given with `--ini` (re-read on graceful reload).
    public var configFiles: [String] = []
    /// Things worth logging at start-up that are not errors, such as uWSGI ini keys
    /// that have no effect in Apus. One line each.
    public var warnings: [String] = []
    /// `--uwsgi-module` (on unless `--no-uwsgi-module`): the `apus` module is also
    /// importable as `uwsgi` when no real `uwsgi` module is.
    public var uwsgiModule = true
    /// `--py-autoreload N` / `--reload`: seconds between two looks for modules imported
    /// since the last one; file changes themselves are seen at once (0 = off).
    public var autoreload = 0.0
    /// The options as they were given, for the `apus` module's `opt` (uWSGI's `uwsgi.opt`).
    public var givenOptions = GivenOptions()

    public init() {}
}

/// Severity of Apus's own log lines, least severe first (Gunicorn's --log-level names).
public enum LogLevel: Int, Comparable, Sendable, CaseIterable {
    case debug, info, warning, error, critical
    public static func < (a: LogLevel, b: LogLevel) -> Bool { a.rawValue < b.rawValue }
    public var name: String { String(describing: self) }
}

/// Gunicorn's worker classes Apus takes. Both run the app on `--threads` threads in each
/// worker process: sync with the default of one thread, as Gunicorn's sync worker (which
/// Gunicorn itself turns into gthread when --threads is above 1).
public enum WorkerClass: String, Sendable {
    case sync, gthread
}

/// `--access-logfile -`: the access log on stdout.
public enum AccessLogDestination {
    public static let stdout = "-"
}

/// uWSGI's conditional request logging: with the access log off (`--disable-logging`), a
/// request is still logged when any of these holds.
public struct AccessLogAlso: Equatable, Sendable {
    /// `--log-4xx`, `--log-5xx`: the status is 400-499, 500-599.
    public var status4xx = false
    public var status5xx = false
    /// `--log-zero`: no body bytes were sent.
    public var zeroBody = false
    /// `--log-slow`: the request took at least this many milliseconds (0: off).
    public var slowMilliseconds = 0
    /// `--log-big`: the body sent was at least this many bytes (0: off).
    public var bigBytes = 0

    public init() {}

    public var isEmpty: Bool { self == AccessLogAlso() }

    /// Whether a request the access log would otherwise skip is logged.
    public func wants(status: Int, bodyBytes: Int, seconds: Double) -> Bool {
        (status4xx && (400...499).contains(status)) || (status5xx && (500...599).contains(status))
            || (zeroBody && bodyBytes == 0) || (slowMilliseconds > 0 && seconds * 1000 >= Double(slowMilliseconds))
            || (bigBytes > 0 && bodyBytes >= bigBytes)
    }
}

/// The options as they were given (ini file, environment, command line, in that order), for
/// the app's `apus.opt`. Not part of a configuration's identity: two configurations with
/// the same settings are equal however they were spelled.
public struct GivenOptions: Equatable, Sendable {
    public struct Entry: Equatable, Sendable {
        /// The option's name (its negation's for a negated flag: `no-access-log`).
        public var name: String
        /// The value as given; nil for a flag that was set.
        public var value: String?
    }
    public var entries: [Entry] = []
    public init() {}
    public static func == (a: GivenOptions, b: GivenOptions) -> Bool { true }
}
