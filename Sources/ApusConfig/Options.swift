import ApusProtocols
// The option table: every Apus setting is declared exactly once, in `OptionSpec.all` below.
//
// Why no dependency (swift-argument-parser or similar): one declaration here has to yield the
// command-line flag and its long and short aliases (uWSGI's and Gunicorn's spellings), the
// APUS_* environment variable, the uWSGI-style ini key, validation with one-line errors that
// name where a value came from (flag, variable or file:line), the grouped `--help` text and
// docs/options.md. Argument parsers cover only the first of these and impose their own error
// and help formats, so every other source would need a second declaration that could drift.
// The table plus a small resolver (Resolve.swift) is less code than that glue.

/// Where an option may be given.
public struct OptionSources: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let commandLine = OptionSources(rawValue: 1)
    public static let environment = OptionSources(rawValue: 2)
    public static let iniFile = OptionSources(rawValue: 4)
    public static let all: OptionSources = [.commandLine, .environment, .iniFile]
}

/// Groups of `--help` and docs/options.md, in display order.
public enum OptionSection: String, CaseIterable, Sendable {
    case application = "Application"
    case listening = "Listening"
    case workers = "Workers"
    case supervision = "Supervision"
    case privileges = "Privileges"
    case python = "Python"
    case limits = "Requests and limits"
    case reloading = "Reloading and control"
    case subscriptions = "Subscriptions and the router"
    case logging = "Logging"
    case observability = "Stats, metrics and health"
    case general = "Configuration and information"
    case uwsgi = "uWSGI options without effect or refused"
}

/// Which commands take an option: the server (`apus ...`), the router (`apus router ...`).
public struct OptionCommands: OptionSet, Sendable {
    public let rawValue: Int
    public init(rawValue: Int) { self.rawValue = rawValue }
    public static let server = OptionCommands(rawValue: 1)
    public static let router = OptionCommands(rawValue: 2)
}

/// The shape of an option's value.
public enum OptionKind: String, Sendable {
    /// No value on the command line (`--preload`); `=true|false|1|0|yes|no|on|off` elsewhere.
    case flag
    case int
    /// Bytes; plain or with a k, m or g suffix (powers of 1024).
    case size
    /// Seconds; fractions allowed.
    case duration
    case string
    /// A path checked against the file system.
    case path
    /// Repeatable; each occurrence adds one value.
    case list
    /// Repeatable `KEY=VALUE`.
    case keyValue
}

/// One option: everything about it, declared once.
public struct OptionSpec {
    /// Long name without dashes; also the ini key and the source of the environment variable.
    public let name: String
    /// Other long names (without dashes); also accepted as ini keys.
    public let aliases: [String]
    public let shortAliases: [Character]
    /// Long names that set a flag to the opposite value (`--no-access-log`, `--lazy-apps`).
    public let negations: [String]
    public let kind: OptionKind
    /// Placeholder for the value in help ("N", "ADDR"); empty for flags.
    public let valueName: String
    /// The default as shown to people; nil when there is nothing worth showing.
    public let defaultText: String?
    public let section: OptionSection
    public let help: String
    public let sources: OptionSources
    /// How the environment variable holds several values of a list option.
    public let environmentSeparator: Character?
    /// The commands that take it; `.server` unless the declaration says `router` or `routerOnly`.
    public var commands: OptionCommands = .server
    /// A uWSGI option Apus takes without effect, or refuses, and why (nil: a working option).
    public var note: UWSGINote?

    /// Options that choose what the run does rather than set a value of the server.
    enum Action { case help, version, ini, check, printConfig, fromGunicorn }
    let action: Action?
    /// Validates one raw value and applies it to the draft configuration.
    let set: Setter

    typealias Setter = (inout Draft, String, SetContext) throws(ConfigError) -> Void

    /// `APUS_` + the name in upper case with underscores: `shutdown-timeout` → `APUS_SHUTDOWN_TIMEOUT`.
    public var environmentVariable: String? {
        guard sources.contains(.environment) else { return nil }
        return "APUS_" + String(name.uppercased().map { $0 == "-" ? "_" : $0 })
    }

    /// Every long spelling: the name, the aliases, then the negations.
    public var longNames: [String] { [name] + aliases + negations }
    public var takesValue: Bool { kind != .flag }
    public var isRepeatable: Bool { kind == .list || kind == .keyValue }

    /// Taken by `apus router` too.
    var router: OptionSpec { var s = self; s.commands = [.server, .router]; return s }
    /// Taken by `apus router` only.
    var routerOnly: OptionSpec { var s = self; s.commands = .router; return s }
}

/// The bind used when no `--http` and no `--socket` is given anywhere and `PORT` is not set;
/// with `PORT`, the server listens on `portBindHost:$PORT`.
enum BindDefaults {
    static let bind = Bind(address: .tcp(host: "127.0.0.1", port: 8000), proto: .http)
    static let portBindHost = "0.0.0.0"
}

/// Why a uWSGI option does nothing in Apus, or why it stops Apus. Either way one line says so.
public enum UWSGINote: Equatable, Sendable {
    /// Accepted; the reason is logged as a warning at start.
    case noEffect(String)
    /// An error before anything starts: ignoring it would change what the server does.
    case refused(String)

    public var text: String {
        switch self {
        case let .noEffect(t), let .refused(t): t
        }
    }
}

extension OptionSpec {
    /// The table. Order within a section is the order of `--help` and the docs.
    public static var all: [OptionSpec] {
        [
            // MARK: Application
            .custom("module", aliases: ["wsgi", "app"], kind: .string, valueName: "MODULE[:CALLABLE]",
                    section: .application,
                    help: "The WSGI application to import, e.g. app.wsgi or hello:application; the same as the positional argument.") {
                d, raw, ctx throws(ConfigError) in
                _ = try parseAppSpec(raw, ctx)
                try d.setApp(AppChoice(kind: .module, value: raw, option: "module", layer: ctx.layer, origin: ctx.origin))
            },
            .custom("wsgi-file", aliases: ["file"], kind: .path, valueName: "FILE", section: .application,
                    help: "Load the application from a Python file instead of a module (relative to --chdir; must exist).") {
                d, raw, ctx throws(ConfigError) in
                guard !raw.isEmpty else { throw ctx.fail("expected a file name, got \"\"") }
                try d.setApp(AppChoice(kind: .file, value: raw, option: "wsgi-file", layer: ctx.layer, origin: ctx.origin))
            },
            .custom("callable", kind: .string, valueName: "NAME", defaultText: "application, then app",
                    section: .application,
                    help: "Name of the WSGI callable in the module or file.") {
                d, raw, ctx throws(ConfigError) in
                guard isDottedIdentifier(raw[...]) else {
                    throw ctx.fail("expected a Python name such as application, got \(quoted(raw))")
                }
                d.callable = NamedValue(value: raw, origin: ctx.origin, layer: ctx.layer)
            },
            .custom("mount", kind: .string, valueName: "PREFIX[=APP]", defaultText: "/",
                    section: .application,
                    help: "Serve the application under a URL prefix (SCRIPT_NAME), e.g. /api; uWSGI's PREFIX=APP form also names the application.") {
                d, raw, ctx throws(ConfigError) in
                let (prefix, app) = try parseMount(raw, ctx)
                d.config.scriptName = prefix
                d.mountApp = app
            },
            .custom("static-map", kind: .keyValue, valueName: "MOUNT=DIR", section: .application, separator: ",",
                    help: "Answer GET and HEAD requests under the URL prefix MOUNT with the files in DIR (must be a directory; relative to where apus starts), from the worker's event loop without calling Python; paths with no file there go to the app. Repeatable; the first mapping with the file wins. See docs/static.md.") {
                d, raw, ctx throws(ConfigError) in
                d.config.staticMaps.append(try parseStaticMap(raw, ctx))
            },
            .directory("chdir", valueName: "DIR", section: .application,
                       help: "Change to this directory before loading the application (must be a directory).",
                       into: \.config.chdir),

            // MARK: Listening
            .list("http", aliases: ["http-socket", "bind"], short: ["b"], valueName: "ADDR",
                  defaultText: "\(BindDefaults.bind.address.text), or \(BindDefaults.portBindHost):$PORT when PORT is set",
                  section: .listening, separator: ",",
                  help: "Listen for HTTP on HOST:PORT, :PORT, [IPV6]:PORT, unix:PATH, or fd://N (a listening socket inherited from the parent); repeatable.",
                  element: { raw, ctx throws(ConfigError) in try parseBind(raw, proto: .http, ctx) },
                  into: \.http).router,
            .list("socket", aliases: ["uwsgi-socket"], short: ["s"], valueName: "ADDR",
                  section: .listening, separator: ",",
                  help: "Listen for the uwsgi protocol (behind nginx uwsgi_pass) on HOST:PORT, unix:PATH, a socket path or fd://N; repeatable.",
                  element: { raw, ctx throws(ConfigError) in try parseBind(raw, proto: .uwsgi, ctx) },
                  into: \.sockets),
            .list("fd", valueName: "N", section: .listening, separator: ",",
                  help: "Serve HTTP on listening socket N inherited from the parent process (the same as --http fd://N); repeatable. Sockets passed by systemd (LISTEN_FDS) are served without it: see docs/deploying.md.",
                  element: { raw, ctx throws(ConfigError) in Bind(address: .fd(try parseFD(raw, ctx)), proto: .http) },
                  into: \.fds),
            .list("zerg", valueName: "PATH", section: .listening, separator: ",",
                  help: "Attach to the zerg server at this unix socket path (uWSGI's zerg mode; @NAME for the abstract namespace) at start and serve on every socket it hands over, next to any own binds; they are kept across reloads. They speak --protocol, or else each connection is told apart by its first byte; repeatable.",
                  element: { raw, ctx throws(ConfigError) in
                      guard !raw.isEmpty, !raw.contains("\0") else { throw ctx.fail("expected a socket path, got \(quoted(raw))") }
                      return raw
                  },
                  into: \.config.zerg),
            .file("zerg-server", valueName: "PATH", section: .listening,
                  help: "Run as a zerg server, not as a WSGI server: open the --http and --socket binds and hand all of them to every instance that connects to this unix socket (apus --zerg PATH or uwsgi --zerg PATH), until SIGTERM or SIGINT. Takes no application.",
                  into: \.config.zergServer),
            .custom("protocol", aliases: ["socket-protocol"], kind: .string, valueName: "PROTO",
                    defaultText: "by the first byte", section: .listening,
                    help: "What the sockets handed by a zerg server speak: http or uwsgi. Without it each connection is told apart by its first byte: 0 starts a uwsgi packet, anything else HTTP (see docs/reloading.md). uWSGI's option also applies to --socket; in Apus --socket always speaks uwsgi.") {
                d, raw, ctx throws(ConfigError) in
                switch raw.lowercased() {
                case "http": d.config.zergProtocol = .http
                case "uwsgi": d.config.zergProtocol = .uwsgi
                default: throw ctx.fail("expected http or uwsgi, got \(quoted(raw))")
                }
            },
            .int("backlog", aliases: ["listen"], range: 1...65535, section: .listening,
                 help: "Length of the listen queue of each socket.",
                 into: \.config.listenBacklog).router,
            .flag("reuse-port", section: .listening,
                  help: "Set SO_REUSEPORT on TCP binds, so a second instance can bind the same address; each socket starts listening only when a worker has the app loaded, and new connections then go to the newest instance (a reuse-port handover: start the new instance, then stop the old one with SIGTERM). Not for unix sockets.",
                  into: \.config.reusePort),
            .custom("chmod-socket", kind: .string, valueName: "MODE", section: .listening,
                    help: "Permissions of unix sockets, in octal (e.g. 660 or 666).") {
                d, raw, ctx throws(ConfigError) in
                guard (3...4).contains(raw.count), let mode = UInt32(raw, radix: 8), mode <= 0o7777 else {
                    throw ctx.fail("expected an octal mode such as 660, got \(quoted(raw))")
                }
                d.config.socketMode = mode
            },
            .custom("chown-socket", kind: .string, valueName: "USER[:GROUP]", section: .listening,
                    help: "Owner (and group) of unix sockets.") {
                d, raw, ctx throws(ConfigError) in
                let parts = raw.split(separator: ":", omittingEmptySubsequences: false)
                guard (1...2).contains(parts.count), !parts[0].isEmpty, parts.count == 1 || !parts[1].isEmpty else {
                    throw ctx.fail("expected USER or USER:GROUP, got \(quoted(raw))")
                }
                d.config.socketOwner = raw
            },
            .addresses("forwarded-allow-ips",
                       help: "Peers trusted to set X-Forwarded-* and Forwarded headers: addresses, CIDRs, * (any) and unix (unix-socket peers), comma-separated.",
                       into: \.config.trustedProxies),
            .flag("proxy-protocol", section: .listening,
                  help: "HTTP listeners expect a PROXY protocol v1 or v2 header (HAProxy, cloud load balancers) before each connection's first request.",
                  into: \.config.proxyProtocol),
            .addresses("proxy-allow-ips", aliases: ["proxy-allow-from"],
                       help: "Peers whose PROXY protocol header is believed (with --proxy-protocol): addresses, CIDRs and * (any), comma-separated; a connection from any other peer is refused. Unix-socket peers are always believed.",
                       into: \.config.proxyAllowed),

            // MARK: Workers
            .int("processes", aliases: ["workers"], short: ["w", "p"], range: 1...1024, section: .workers,
                 help: "Number of worker processes.",
                 into: \.config.processes),
            .int("threads", range: 1...1024, section: .workers,
                 help: "Threads per worker process: up to N requests in the app at once. The thread that runs the loop runs the app too; another takes over while an app call waits (database, sleep, slow client).",
                 into: \.config.threads),
            .custom("worker-class", short: ["k"], kind: .string, valueName: "CLASS", defaultText: "sync", section: .workers,
                    help: "Gunicorn's worker class: sync or gthread, both Apus's worker with --threads threads (sync: 1 unless --threads says more). Gunicorn's async and ASGI classes (gevent, eventlet, tornado, uvicorn's) are refused with what to use instead.") {
                d, raw, ctx throws(ConfigError) in
                d.config.workerClass = try parseWorkerClass(raw, ctx)
            },
            .flag("preload", aliases: ["preload-app"], negations: ["lazy-apps"], section: .workers,
                  help: "Import the application once, then fork the workers from that process (default: each worker imports it after the fork, as with uWSGI's --lazy-apps).",
                  into: \.config.preload),
            .int("max-connections", aliases: ["worker-connections"], range: 0...1_000_000, section: .workers,
                 help: "Most connections one worker holds open; at the cap it stops accepting and leaves new ones to the other workers (0 = derived from the open-files limit, which the master raises to its hard limit).",
                 into: \.config.maxConnections),
            .duration("shutdown-timeout", aliases: ["graceful-timeout"], allowZero: true, section: .workers,
                      help: "Seconds workers get to finish their requests on shutdown or reload before they are killed.",
                      into: \.config.shutdownTimeout).router,

            // MARK: Supervision
            .duration("harakiri", aliases: ["timeout"], short: ["t"], allowZero: true, section: .supervision,
                      help: "A request still in the app after this many seconds is cut: the worker logs the Python stack of every thread and the request line, its client gets 504 if nothing was sent yet, and the worker is replaced (the new one ready first) while its other requests get --reload-mercy (0 = off).",
                      into: \.config.harakiri),
            .flag("harakiri-verbose", section: .supervision,
                  help: "With --harakiri, also log the headers of the request that was cut.",
                  into: \.config.harakiriVerbose),
            .int("max-requests", range: 0...Int(Int32.max), section: .supervision,
                 help: "Recycle a worker after it served this many requests (0 = never): a replacement starts, and the old worker finishes what it has once the new one is ready.",
                 into: \.config.maxRequests),
            .int("max-requests-jitter", aliases: ["max-requests-delta"], range: 0...Int(Int32.max), section: .supervision,
                 help: "Add a random 0..N to each worker's --max-requests, so workers started together are not recycled together.",
                 into: \.config.maxRequestsJitter),
            .duration("max-worker-lifetime", allowZero: true, section: .supervision,
                      help: "Recycle a worker this many seconds after it started (0 = never), the replacement ready first.",
                      into: \.config.maxWorkerLifetime),
            .int("reload-on-rss", range: 0...(1 << 30), section: .supervision,
                 help: "Recycle a worker whose resident memory (RSS) is above this many MiB (0 = off), the replacement ready first.",
                 into: \.config.reloadOnRSS),
            .int("evil-reload-on-rss", range: 0...(1 << 30), section: .supervision,
                 help: "Kill a worker at once when its resident memory is above this many MiB (0 = off); only its requests in flight are lost.",
                 into: \.config.evilReloadOnRSS),
            .int("cheaper", range: 0...1024, section: .supervision,
                 help: "Adaptive workers: keep at least N workers, add workers up to --processes while all are busy, and retire idle ones after --cheaper-idle (0 = off: always --processes).",
                 into: \.config.cheaper),
            .duration("cheaper-idle", allowZero: false, section: .supervision,
                      help: "With --cheaper: seconds the workers must have had more than they needed before one is retired.",
                      into: \.config.cheaperIdle),
            .list("attach-daemon", valueName: "COMMAND", section: .supervision, separator: "\n",
                  help: "Run this shell command (/bin/sh -c) next to the workers, e.g. a celery worker; it must stay in the foreground. The master starts it in its own process group with stdin from /dev/null, restarts it when it exits (after a pause of up to 300 s when it keeps exiting within 3 s), keeps it across reloads, and at shutdown sends its group SIGTERM, then SIGKILL after --reload-mercy; it is killed if the master dies. Repeatable.",
                  element: { raw, ctx throws(ConfigError) in
                      guard !trimmed(raw[...]).isEmpty, !raw.contains("\0") else { throw ctx.fail("expected a command, got \(quoted(raw))") }
                      return raw
                  },
                  into: \.config.attachDaemons),

            // MARK: Privileges
            .custom("uid", aliases: ["user"], short: ["u"], kind: .string, valueName: "USER", section: .privileges,
                    help: "Run the master and the workers as this user (a name or a number) once the sockets are bound; needs root.") {
                d, raw, ctx throws(ConfigError) in
                guard !raw.isEmpty, !raw.contains(":"), !raw.contains("\0") else { throw ctx.fail("expected a user name or number, got \(quoted(raw))") }
                d.config.uid = raw
            },
            .custom("gid", aliases: ["group"], short: ["g"], kind: .string, valueName: "GROUP", section: .privileges,
                    help: "Run as this group (a name or a number) once the sockets are bound; supplementary groups are dropped (default with --uid: the user's group).") {
                d, raw, ctx throws(ConfigError) in
                guard !raw.isEmpty, !raw.contains(":"), !raw.contains("\0") else { throw ctx.fail("expected a group name or number, got \(quoted(raw))") }
                d.config.gid = raw
            },
            .custom("umask", short: ["m"], kind: .string, valueName: "MODE", section: .privileges,
                    help: "The file mode creation mask of the master and the workers, in octal (e.g. 022 or 0o027).") {
                d, raw, ctx throws(ConfigError) in
                var digits = Substring(raw)
                if digits.hasPrefix("0o") || digits.hasPrefix("0O") { digits = digits.dropFirst(2) }
                guard (1...4).contains(digits.count), let mode = UInt32(digits, radix: 8), mode <= 0o777 else {
                    throw ctx.fail("expected an octal mask such as 022, got \(quoted(raw))")
                }
                d.config.umask = mode
            },

            // MARK: Python
            .custom("python", kind: .path, valueName: "PATH", section: .python,
                    help: "Python interpreter whose libpython to load (must exist; relative to where apus starts, not --chdir).") {
                d, raw, ctx throws(ConfigError) in
                guard ctx.fileSystem.isFile(raw) else { throw ctx.fail("no such file \(quoted(raw))") }
                d.config.python = raw
            },
            .directory("venv", aliases: ["home", "virtualenv"], short: ["H"], valueName: "DIR", section: .python,
                       help: "Virtual environment to use (must be a directory; relative to where apus starts, not --chdir). Without it (and without --python), the venv whose bin/ holds the apus binary, as after pip install.",
                       into: \.config.venv),
            .custom("pythonpath", aliases: ["python-path"], kind: .list, valueName: "DIR[,DIR...]", section: .python, separator: ":",
                    help: "Add directories to sys.path: one, or several separated by commas as Gunicorn takes them; repeatable.") {
                d, raw, ctx throws(ConfigError) in
                let dirs = raw.split(separator: ",", omittingEmptySubsequences: false).map { trimmed($0) }
                guard !dirs.contains(where: \.isEmpty) else { throw ctx.fail("expected a directory, got \(quoted(raw))") }
                if ctx.firstInLayer { d.config.pythonPath = [] }
                d.config.pythonPath += dirs
            },
            .flag("uwsgi-module", negations: ["no-uwsgi-module"], section: .python,
                  help: "Make the apus module (worker_id(), numproc, opt, reload(), chain_reload(), ...) importable as uwsgi too, so code written for uWSGI runs unchanged, unless a real uwsgi module is importable; --no-uwsgi-module leaves only import apus.",
                  into: \.config.uwsgiModule),
            .custom("py-autoreload", kind: .int, valueName: "N", defaultText: "0", section: .python,
                    help: "Development: chain-reload when a source file of the app changes (inotify: seen at once); modules imported later are picked up every N seconds (0 = off). --reload is the same with N = 1.") {
                d, raw, ctx throws(ConfigError) in
                d.config.autoreload = Double(try parseInt(raw, range: 0...86400, ctx))
            },
            .custom("reload", kind: .flag, valueName: "", defaultText: "off", section: .python,
                    help: "Development (Gunicorn's flag): --py-autoreload 1.") {
                d, raw, ctx throws(ConfigError) in
                d.config.autoreload = try parseBool(raw, ctx) != ctx.negated ? 1 : 0
            },
            .custom("env", short: ["e"], kind: .keyValue, valueName: "KEY=VALUE", section: .python, separator: ",",
                    help: "Set an environment variable for the application; repeatable.") {
                d, raw, ctx throws(ConfigError) in
                guard let eq = raw.firstIndex(of: "=") else {
                    throw ctx.fail("expected KEY=VALUE, got \(quoted(raw))")
                }
                let key = String(raw[..<eq])
                guard !key.isEmpty else { throw ctx.fail("empty variable name in \(quoted(raw))") }
                guard !key.contains("\0") else { throw ctx.fail("invalid variable name in \(quoted(raw))") }
                d.config.env[key] = String(raw[raw.index(after: eq)...])
            },

            // MARK: Requests and limits
            .size("limit-request-line", range: 16...(1 << 20), section: .limits,
                  help: "Longest request line (method, target, version) accepted; longer ones get 414.",
                  into: \.config.limits.maxRequestLine).router,
            .size("limit-request-field-size", range: 0...(16 << 20), section: .limits,
                  help: "Longest header line accepted, in bytes, its CRLF included as Gunicorn counts it (0 = only --limit-request-headers-size applies); longer ones get 431.",
                  into: \.config.limits.maxFieldBytes).router,
            .int("limit-request-fields", range: 1...10000, section: .limits,
                 help: "Most header fields accepted in a request; more get 431.",
                 into: \.config.limits.maxHeaderCount).router,
            .size("limit-request-headers-size", aliases: ["buffer-size"], range: 256...(16 << 20), section: .limits,
                  help: "Largest header section accepted, in bytes; larger ones get 431.",
                  into: \.config.limits.maxHeaderBytes).router,
            .size("limit-request-body", aliases: ["limit-post"], range: 0...Int.max, section: .limits,
                  help: "Largest request body accepted, in bytes (0 = unlimited); larger ones get 413.",
                  into: \.config.limits.maxBodyBytes).router,
            .size("body-buffer-size", aliases: ["post-buffering"], range: 0...(1 << 30), section: .limits,
                  help: "Request bodies up to this size are kept in memory; larger ones go to a temporary file.",
                  into: \.config.limits.bodyMemoryBytes).router,
            .duration("header-timeout", allowZero: false, section: .limits,
                      help: "Seconds a client gets to send a whole request head once it started.",
                      into: \.config.limits.headTimeout).router,
            .custom("body-timeout", kind: .duration, valueName: "SECONDS", defaultText: "the header timeout", section: .limits,
                    help: "Seconds a client gets to send a whole request body once its head is in; slower ones are closed.") {
                d, raw, ctx throws(ConfigError) in
                d.config.limits.bodyTimeout = try parseSeconds(raw, allowZero: false, ctx)
            }.router,
            .duration("keep-alive", aliases: ["http-keepalive"], allowZero: true, section: .limits,
                      help: "Seconds an idle keep-alive connection stays open (0 = close after each response).",
                      into: \.config.limits.keepAliveTimeout).router,

            // MARK: Reloading and control
            .file("master-fifo", valueName: "PATH", section: .reloading,
                  help: "Create a FIFO that takes uWSGI's one-letter commands: r graceful reload, w worker reload, c chain reload, q graceful stop, Q immediate stop, + one worker more, - one worker less, s stats to the log, l reopen the log file.",
                  into: \.config.masterFIFO),
            .file("touch-reload", valueName: "FILE", section: .reloading,
                  help: "Graceful reload (configuration re-read) when this file's modification time changes.",
                  into: \.config.touchReload),
            .file("touch-workers-reload", valueName: "FILE", section: .reloading,
                  help: "Worker reload (all workers at once, new set ready first) when this file's modification time changes.",
                  into: \.config.touchWorkersReload),
            .file("touch-chain-reload", valueName: "FILE", section: .reloading,
                  help: "Chain reload (one worker at a time) when this file's modification time changes.",
                  into: \.config.touchChainReload),
            .file("pidfile", aliases: ["pid"], valueName: "FILE", section: .reloading,
                  help: "Write the master's pid to this file (removed at exit).",
                  into: \.config.pidfile).router,
            .custom("warmup", kind: .string, valueName: "PATH", section: .reloading,
                    help: "A new worker is ready only after a GET of this path, made in the worker itself, answered 2xx.") {
                d, raw, ctx throws(ConfigError) in
                guard raw.hasPrefix("/"), !raw.contains(" "), !raw.contains(where: { $0.isNewline }) else {
                    throw ctx.fail("expected a path such as /health, got \(quoted(raw))")
                }
                d.config.warmupPath = raw
            },
            .duration("reload-mercy", aliases: ["worker-reload-mercy"], allowZero: true, section: .reloading,
                      help: "Seconds an old worker gets to finish its requests after a reload before it is killed.",
                      into: \.config.reloadMercy),
            .duration("reload-timeout", allowZero: false, section: .reloading,
                      help: "Seconds a new generation gets to become ready before the reload is abandoned (the old one keeps serving).",
                      into: \.config.reloadTimeout),

            // MARK: Subscriptions and the router
            .custom("subscribe-to", aliases: ["st", "subscribe", "subscribe2"], kind: .list,
                    valueName: "ROUTER:KEY", section: .subscriptions, separator: " ",
                    help: "Announce this instance's uwsgi socket (the first --socket) to the subscription router at ROUTER (HOST:PORT, UDP) for requests whose Host is KEY: every --subscribe-freq seconds once a worker is ready, and an unsubscribe when the instance stops. uWSGI's forms: ADDRESS=ROUTER:KEY announces ADDRESS instead, KEY,MODIFIER1 asks for a modifier1, and server=ROUTER,key=KEY[,addr=ADDRESS][,weight=N] is --subscribe2's; repeatable.") {
                d, raw, ctx throws(ConfigError) in
                let value = try parseSubscription(raw, ctx)
                if ctx.firstInLayer { d.config.subscriptions = [] }
                d.config.subscriptions.append(value)
            },
            .duration("subscribe-freq", allowZero: false, section: .subscriptions,
                      help: "Seconds between two announcements to each --subscribe-to router (uWSGI's default, 10; a router drops a node after --subscription-tolerance).",
                      into: \.config.subscribeFrequency),
            .custom("subscription-server", aliases: ["http-subscription-server"], kind: .string, valueName: "ADDR",
                    section: .subscriptions,
                    help: "apus router: receive subscription packets (UDP) on HOST:PORT or a unix socket path. Anyone who can send to it can add nodes: bind it to a loopback or private address.") {
                d, raw, ctx throws(ConfigError) in
                d.config.router.subscriptionServer = try parseDatagramAddress(raw[...], ctx)
            }.routerOnly,
            .custom("subscription-algo", kind: .string, valueName: "ALGO", defaultText: "wrr", section: .subscriptions,
                    help: "apus router: how a node is picked among the live nodes of a key: wrr (round robin, weighted by each node's announced weight) or lrc (least requests in flight).") {
                d, raw, ctx throws(ConfigError) in
                guard let algo = RouterAlgorithm(rawValue: raw) else { throw ctx.fail("expected wrr or lrc, got \(quoted(raw))") }
                d.config.router.algorithm = algo
            }.routerOnly,
            .custom("subscription-tolerance", kind: .duration, valueName: "SECONDS", defaultText: "17", section: .subscriptions,
                    help: "apus router: a node that has not announced itself for this long is dropped (uWSGI's default).") {
                d, raw, ctx throws(ConfigError) in
                d.config.router.tolerance = try parseSeconds(raw, allowZero: false, ctx)
            }.routerOnly,

            // MARK: Logging
            .custom("log-file", aliases: ["logto", "error-logfile"], kind: .path, valueName: "FILE", section: .logging,
                    help: "Append the log to this file instead of stderr (- is stderr); SIGUSR1 reopens it (for logrotate).") {
                d, raw, ctx throws(ConfigError) in
                guard !raw.isEmpty, !raw.contains("\0") else { throw ctx.fail("expected a file name, got \(quoted(raw))") }
                d.config.logFile = raw == "-" ? nil : raw
            }.router,
            .custom("access-logfile", kind: .path, valueName: "FILE", defaultText: "with the log", section: .logging,
                    help: "Write the access lines to this file (- is stdout) instead of with the log; several workers append whole lines, and SIGUSR1 reopens it (for logrotate).") {
                d, raw, ctx throws(ConfigError) in
                guard !raw.isEmpty, !raw.contains("\0") else { throw ctx.fail("expected a file name or -, got \(quoted(raw))") }
                d.config.accessLogFile = raw
            },
            .custom("log-level", kind: .string, valueName: "LEVEL", defaultText: "info", section: .logging,
                    help: "Least severe of Apus's own log lines to write: debug, info, warning, error or critical (access lines and Python's output are not filtered).") {
                d, raw, ctx throws(ConfigError) in
                d.config.logLevel = try parseLogLevel(raw, ctx)
            }.router,
            .custom("log-format", aliases: ["logformat"], kind: .string, valueName: "FORMAT", defaultText: "common", section: .logging,
                    help: "The access line: a preset (common, combined, json: one JSON object a line) or a format with uWSGI's %(var) variables, %(req:Header) and %(resp:Header); see docs/observability.md.") {
                d, raw, ctx throws(ConfigError) in
                do throws(LogFormatError) { d.config.accessLogFormat = try LogFormat(compiling: raw) } catch { throw ctx.fail(error.message) }
            },
            .flag("log-x-forwarded-for", section: .logging,
                  help: "In access lines, the client address is the first address of the request's X-Forwarded-For header when it has one (any peer may set it: for logs only).",
                  into: \.config.logXForwardedFor),
            .flag("access-log", negations: ["no-access-log", "disable-logging"], section: .logging,
                  help: "Log one line per request (--no-access-log or uWSGI's --disable-logging turn it off).",
                  into: \.config.accessLog),
            .flag("process-titles", aliases: ["auto-procname"], negations: ["no-process-titles"], section: .logging,
                  help: "Rewrite the processes' titles as ps and /proc/PID/cmdline show them: apus: master [app], apus: zygote gen 7, apus: worker 3 gen 7 idle or busy GET /x (see docs/observability.md). --no-process-titles leaves the command line as it was given.",
                  into: \.config.processTitles).router,
            .custom("proc-name", kind: .string, valueName: "NAME", defaultText: "the application", section: .logging,
                    help: "Name shown in brackets in the master's process title (Gunicorn's proc_name): apus: master [NAME].") {
                d, raw, ctx throws(ConfigError) in
                d.config.procName = try titleText(raw, ctx)
            },
            .custom("procname-prefix", kind: .string, valueName: "TEXT", section: .logging,
                    help: "Text written before every process title, as given (uWSGI's): --procname-prefix web- gives web-apus: master.") {
                d, raw, ctx throws(ConfigError) in
                d.config.processTitlePrefix = try titleText(raw, ctx)
            }.router,
            .custom("procname-prefix-spaced", kind: .string, valueName: "TEXT", section: .logging,
                    help: "As --procname-prefix, with a space after TEXT (uWSGI's): --procname-prefix-spaced web gives web apus: master.") {
                d, raw, ctx throws(ConfigError) in
                d.config.processTitlePrefix = try titleText(raw, ctx) + " "
            }.router,
            .custom("daemonize", aliases: ["daemonize2"], short: ["d"], kind: .path, valueName: "LOGFILE", section: .logging,
                    help: "Detach from the terminal at start (the master forks, starts a new session, and --pidfile holds the detached master's pid) and append the log to LOGFILE unless --log-file names another file. Errors found later than the options, such as an application that does not import, are then only in the log.") {
                d, raw, ctx throws(ConfigError) in
                guard !raw.isEmpty, !raw.contains("\0") else { throw ctx.fail("expected a log file name, got \(quoted(raw))") }
                d.config.daemonize = true
                d.daemonizeLog = raw
            },
            .custom("logger", kind: .string, valueName: "file:PATH", section: .logging,
                    help: "uWSGI's logger: file:PATH (or file:logfile=PATH[,maxsize=BYTES]) is --log-file PATH [--log-maxsize BYTES]; stdio is stderr, the default. Other loggers (syslog, socket, ...) are refused: let journald, Docker or syslog's own agent read stderr or the file.") {
                d, raw, ctx throws(ConfigError) in
                let (file, maxSize) = try parseLogger(raw, ctx)
                d.config.logFile = file
                if let maxSize { d.config.logMaxSize = maxSize }
            },
            .size("log-maxsize", range: 0...Int.max, section: .logging,
                  help: "With --log-file: when the file reaches this size the master renames it to FILE.TIMESTAMP (seconds since the epoch) and every process reopens FILE (0 = never). Checked once a second, so a file may pass the size by what one second logs.",
                  into: \.config.logMaxSize),
            .flag("log-4xx", section: .logging,
                  help: "With the access log off, still log requests answered 400-499.",
                  into: \.config.accessLogAlso.status4xx),
            .flag("log-5xx", section: .logging,
                  help: "With the access log off, still log requests answered 500-599.",
                  into: \.config.accessLogAlso.status5xx),
            .flag("log-zero", section: .logging,
                  help: "With the access log off, still log requests answered without a body.",
                  into: \.config.accessLogAlso.zeroBody),
            .int("log-slow", range: 0...Int(Int32.max), section: .logging,
                 help: "With the access log off, still log requests that took at least this many milliseconds in the app (0 = off).",
                 into: \.config.accessLogAlso.slowMilliseconds),
            .size("log-big", range: 0...Int.max, section: .logging,
                  help: "With the access log off, still log requests whose response body was at least this many bytes (0 = off).",
                  into: \.config.accessLogAlso.bigBytes),

            // MARK: Stats, metrics and health
            .custom("stats", aliases: ["stats-server"], kind: .string, valueName: "ADDR", section: .observability,
                    help: "Serve the workers' stats as JSON in uWSGI's stats format (what uwsgitop and apus top read) on HOST:PORT, :PORT, unix:PATH or a socket path: each connection gets one document, then the socket closes. Served by the master; see docs/observability.md.") {
                d, raw, ctx throws(ConfigError) in
                d.config.statsBind = try parseObserverBind(raw, ctx)
            },
            .flag("stats-http", section: .observability,
                  help: "Speak HTTP on the --stats address: GET any path for the JSON, /healthz and /readyz for the probes.",
                  into: \.config.statsHTTP),
            .custom("metrics", kind: .string, valueName: "ADDR", section: .observability,
                    help: "Serve Prometheus metrics at /metrics, and the /healthz and /readyz probes, over HTTP on HOST:PORT, :PORT, unix:PATH or a socket path. Served by the master; see docs/observability.md.") {
                d, raw, ctx throws(ConfigError) in
                d.config.metricsBind = try parseObserverBind(raw, ctx)
            },
            .duration("shutdown-delay", allowZero: true, section: .observability,
                      help: "On SIGTERM, SIGINT or FIFO q, report not ready on /readyz at once but keep serving for this many seconds before the graceful shutdown begins, so a load balancer stops sending requests first (a second SIGTERM or SIGINT does not wait; 0 = shut down at once).",
                      into: \.config.shutdownDelay),

            // MARK: Configuration and information
            .custom("ini", kind: .list, valueName: "FILE", section: .general, separator: ",",
                    sources: [.commandLine, .environment], action: .ini,
                    help: "Read settings from a uWSGI-style ini file ([uwsgi] and [apus] sections; FILE:SECTION reads that section): see docs/configuration.md; repeatable. apus FILE.ini is the same as --ini FILE.ini.") {
                _, _, _ throws(ConfigError) in
                // Read by the resolver before any other setting is applied.
            }.router,
            .custom("config", short: ["c"], kind: .string, valueName: "FILE.ini", section: .general,
                    sources: .commandLine, action: .ini,
                    help: "Gunicorn's -c: an ini file here, the same as --ini. A gunicorn.conf.py is Python and is not run: translate it once with --from-gunicorn.") {
                _, _, _ throws(ConfigError) in
                // Read by the resolver as an ini file; other files are refused there.
            },
            .custom("from-gunicorn", kind: .path, valueName: "FILE", section: .general,
                    sources: .commandLine, action: .fromGunicorn,
                    help: "Read a gunicorn.conf.py without running it (literal settings only, parsed by python3's ast module), print the equivalent Apus options as a command line and an ini section, and a line for each setting that cannot be translated, then exit.") {
                _, _, _ throws(ConfigError) in
            },
            .custom("check", kind: .flag, valueName: "", section: .general, sources: .commandLine, action: .check,
                    help: "Check the setup and exit: resolve the options, find and start Python, import the application; exit 0 when all of that works, else print why and exit non-zero. The master runs it before an upgrade in place (SIGUSR2, FIFO f).") {
                d, raw, ctx throws(ConfigError) in
                d.config.check = try parseBool(raw, ctx) != ctx.negated
            },
            .custom("print-config", kind: .flag, valueName: "", section: .general, sources: .commandLine, action: .printConfig,
                    help: "Print every option's effective value and where it came from (default, file:line of an ini file, APUS_* variable, flag, application argument), then exit 0 without starting anything; a bad option is reported as at start.") {
                _, raw, ctx throws(ConfigError) in
                _ = try parseBool(raw, ctx)
            }.router,
            .custom("help", short: ["h"], kind: .flag, valueName: "", section: .general,
                    sources: .commandLine, action: .help,
                    help: "Show this help and exit.") { _, _, _ throws(ConfigError) in }.router,
            .custom("version", short: ["V"], kind: .flag, valueName: "", section: .general,
                    sources: .commandLine, action: .version,
                    help: "Show the version and exit.") { _, _, _ throws(ConfigError) in }.router,

            // MARK: uWSGI options without effect or refused
            .noEffect("master", note: "Apus always runs a master process that supervises the workers."),
            .noEffect("vacuum", note: "Apus always removes the unix sockets, pidfile and master FIFO it created when it stops."),
            .noEffect("die-on-term", note: "SIGTERM always stops Apus gracefully (accepted and queued requests are answered); SIGHUP reloads."),
            .noEffect("enable-threads", note: "Threads started by the app always run: a worker releases the GIL whenever it waits."),
            .noEffect("single-interpreter", note: "Each Apus worker runs one Python interpreter; there are no sub-interpreters."),
            .noEffect("strict", note: "Apus is always strict: an unknown option or ini key is an error naming it."),
            .noEffect("need-app", note: "Apus always exits (status 4) when the application cannot be imported at start."),
            .noEffect("thunder-lock", note: "Apus workers share no accept lock: each waits on the sockets with EPOLLEXCLUSIVE, which wakes one worker per connection."),
            .noEffect("plugins", aliases: ["plugin"], takesValue: true, note: "The Python WSGI support is built into Apus; there are no plugins to load."),
            .noEffect("no-orphans", note: "Apus workers always get SIGTERM when the master dies."),
            .noEffect("memory-report", note: "Apus does not log memory per request; --reload-on-rss and --evil-reload-on-rss watch each worker's memory."),
            .noEffect("ignore-sigpipe", note: "SIGPIPE is ignored in every Apus process; a client that went away is never reported."),
            .noEffect("ignore-write-errors", note: "Apus does not log writes to a client that went away."),
            .noEffect("disable-write-exception", note: "Apus stops iterating a response quietly when its client went away; only the write() callable raises OSError then, as the app must stop."),
            .noEffect("offload-threads", takesValue: true, note: "Apus has no offload threads: each worker's event loop writes responses (wsgi.file_wrapper files with sendfile) without holding an app thread."),
            .noEffect("log-date", note: "Apus's own log lines always start with the UTC date and time; access lines carry it as --log-format says (%(ltime), %(iso8601) or %(epoch)); a strftime format cannot be chosen."),
            .noEffect("log-master", note: "Apus's processes write each log line with one write() to the same stderr or log file, so lines never interleave; there is no log pipe through the master."),
            .noEffect("manage-script-name", note: "--mount PREFIX always moves PREFIX from PATH_INFO to SCRIPT_NAME."),
            .noEffect("http-timeout", takesValue: true, note: "Apus has no HTTP router process between the client and the workers, so nothing cuts a slow response; slow clients: --header-timeout and --body-timeout; slow apps: --harakiri."),
            .noEffect("socket-timeout", takesValue: true, note: "Apus bounds a whole request head (--header-timeout) and body (--body-timeout) rather than each read, and closes a client that stops reading its response for 30 s."),
            .custom("hook-master-start", kind: .string, valueName: "ACTION", section: .uwsgi,
                    sources: [.commandLine, .iniFile], help: "unix_signal:15 gracefully_kill_them_all is accepted without effect; any other hook is refused.") {
                d, raw, ctx throws(ConfigError) in
                guard raw.split(whereSeparator: { $0 == " " || $0 == "\t" }).joined(separator: " ") == "unix_signal:15 gracefully_kill_them_all" else {
                    throw ctx.fail("not supported in Apus (only unix_signal:15 gracefully_kill_them_all is accepted, and has no effect); run a command before Apus starts, or next to it with --attach-daemon")
                }
                d.config.warnings.append("\(ctx.origin): has no effect in Apus: SIGTERM always stops Apus gracefully.")
            }.noted(.noEffect("SIGTERM always stops Apus gracefully, which is what unix_signal:15 gracefully_kill_them_all asks for; any other hook is refused.")),
            .refused("route", aliases: ["route-host", "route-uri", "route-if", "route-run"],
                     reason: "uWSGI's internal routing is not in Apus, and ignoring a rule would change what clients get: do redirects, rewrites and access rules in the proxy in front (nginx) or in the app."),
            .refused("smart-attach-daemon", aliases: ["smart-attach-daemon2"],
                     reason: "Apus does not watch daemons through a pidfile: run the command in the foreground with --attach-daemon, or under systemd."),
        ]
    }
}

// MARK: - Builders: each kind brings its parser and validator.

extension OptionSpec {
    /// A uWSGI option accepted without effect: `note` says why, as a warning at start.
    static func noEffect(_ name: String, aliases: [String] = [], takesValue: Bool = false, note: String) -> OptionSpec {
        .custom(name, aliases: aliases, kind: takesValue ? .string : .flag, valueName: takesValue ? "VALUE" : "",
                section: .uwsgi, sources: [.commandLine, .iniFile], help: note) {
            d, _, ctx throws(ConfigError) in
            d.config.warnings.append("\(ctx.origin): has no effect in Apus: \(note)")
        }.noted(.noEffect(note))
    }

    /// A uWSGI option refused with an error that says why and what to do instead.
    static func refused(_ name: String, aliases: [String] = [], reason: String) -> OptionSpec {
        .custom(name, aliases: aliases, kind: .string, valueName: "VALUE", section: .uwsgi,
                sources: [.commandLine, .iniFile], help: reason) {
            _, _, ctx throws(ConfigError) in
            throw ctx.fail("not supported in Apus: \(reason)")
        }.noted(.refused(reason))
    }

    func noted(_ note: UWSGINote) -> OptionSpec { var s = self; s.note = note; return s }

    static func custom(_ name: String, aliases: [String] = [], short: [Character] = [],
                       negations: [String] = [], kind: OptionKind, valueName: String,
                       defaultText: String? = nil, section: OptionSection, separator: Character? = nil,
                       sources: OptionSources = .all, action: Action? = nil, help: String,
                       set: @escaping Setter) -> OptionSpec {
        OptionSpec(name: name, aliases: aliases, shortAliases: short, negations: negations, kind: kind,
                   valueName: valueName, defaultText: defaultText, section: section, help: help,
                   sources: sources, environmentSeparator: separator, action: action, set: set)
    }

    static func flag(_ name: String, aliases: [String] = [], negations: [String] = [],
                     section: OptionSection, help: String,
                     into keyPath: WritableKeyPath<Draft, Bool>) -> OptionSpec {
        .custom(name, aliases: aliases, negations: negations, kind: .flag, valueName: "",
                defaultText: Draft()[keyPath: keyPath] ? "on" : "off", section: section, help: help) {
            d, raw, ctx throws(ConfigError) in
            let value = try parseBool(raw, ctx)
            d[keyPath: keyPath] = ctx.negated ? !value : value
        }
    }

    static func int(_ name: String, aliases: [String] = [], short: [Character] = [],
                    range: ClosedRange<Int>, section: OptionSection, help: String,
                    into keyPath: WritableKeyPath<Draft, Int>) -> OptionSpec {
        .custom(name, aliases: aliases, short: short, kind: .int, valueName: "N",
                defaultText: String(Draft()[keyPath: keyPath]), section: section,
                help: help + rangeHelp(range, { String($0) })) {
            d, raw, ctx throws(ConfigError) in
            d[keyPath: keyPath] = try parseInt(raw, range: range, ctx)
        }
    }

    static func size(_ name: String, aliases: [String] = [], range: ClosedRange<Int>,
                     section: OptionSection, help: String,
                     into keyPath: WritableKeyPath<Draft, Int>) -> OptionSpec {
        .custom(name, aliases: aliases, kind: .size, valueName: "BYTES",
                defaultText: formatSize(Draft()[keyPath: keyPath]), section: section,
                help: help + rangeHelp(range, formatSize)) {
            d, raw, ctx throws(ConfigError) in
            d[keyPath: keyPath] = try parseSize(raw, range: range, ctx)
        }
    }

    static func duration(_ name: String, aliases: [String] = [], short: [Character] = [], allowZero: Bool,
                         section: OptionSection, help: String,
                         into keyPath: WritableKeyPath<Draft, Double>) -> OptionSpec {
        .custom(name, aliases: aliases, short: short, kind: .duration, valueName: "SECONDS",
                defaultText: formatSeconds(Draft()[keyPath: keyPath]), section: section, help: help) {
            d, raw, ctx throws(ConfigError) in
            d[keyPath: keyPath] = try parseSeconds(raw, allowZero: allowZero, ctx)
        }
    }

    /// A list of peers (`127.0.0.1,::1`, CIDRs, `*`, `unix`), default the local host.
    static func addresses(_ name: String, aliases: [String] = [], help: String,
                          into keyPath: WritableKeyPath<Draft, TrustedProxies>) -> OptionSpec {
        .custom(name, aliases: aliases, kind: .string, valueName: "LIST", defaultText: "127.0.0.1,::1", section: .listening, help: help) {
            d, raw, ctx throws(ConfigError) in
            do throws(TrustedProxiesError) {
                d[keyPath: keyPath] = try TrustedProxies(parsing: raw)
            } catch {
                throw ctx.fail("item \(quoted(error.item)): \(error.reason)")
            }
        }
    }

    /// A file path that need not exist yet (the server creates or watches it).
    static func file(_ name: String, aliases: [String] = [], valueName: String, section: OptionSection,
                     help: String, into keyPath: WritableKeyPath<Draft, String?>) -> OptionSpec {
        .custom(name, aliases: aliases, kind: .path, valueName: valueName, section: section, help: help) {
            d, raw, ctx throws(ConfigError) in
            guard !raw.isEmpty, !raw.contains("\0") else { throw ctx.fail("expected a file name, got \(quoted(raw))") }
            d[keyPath: keyPath] = raw
        }
    }

    static func directory(_ name: String, aliases: [String] = [], short: [Character] = [],
                          valueName: String, section: OptionSection, help: String,
                          into keyPath: WritableKeyPath<Draft, String?>) -> OptionSpec {
        .custom(name, aliases: aliases, short: short, kind: .path, valueName: valueName,
                section: section, help: help) {
            d, raw, ctx throws(ConfigError) in
            guard ctx.fileSystem.isDirectory(raw) else { throw ctx.fail("not a directory: \(quoted(raw))") }
            d[keyPath: keyPath] = raw
        }
    }

    /// Values of one source layer are appended; a layer that gives the option replaces what
    /// lower layers gave (`--http` on the command line replaces `http =` from an ini file).
    static func list<T>(_ name: String, aliases: [String] = [], short: [Character] = [],
                        valueName: String, defaultText: String? = nil, section: OptionSection,
                        separator: Character, help: String,
                        element: @escaping (String, SetContext) throws(ConfigError) -> T,
                        into keyPath: WritableKeyPath<Draft, [T]>) -> OptionSpec {
        .custom(name, aliases: aliases, short: short, kind: .list, valueName: valueName,
                defaultText: defaultText, section: section, separator: separator, help: help) {
            d, raw, ctx throws(ConfigError) in
            let value = try element(raw, ctx)
            if ctx.firstInLayer { d[keyPath: keyPath] = [] }
            d[keyPath: keyPath].append(value)
        }
    }
}

/// " (1..1024)" for help lines; nothing for open-ended ranges.
func rangeHelp(_ range: ClosedRange<Int>, _ format: (Int) -> String) -> String {
    if range.upperBound == Int.max { return "" }
    return " (\(format(range.lowerBound))..\(format(range.upperBound)))"
}

/// Text for a process title: printable, one line, at most 64 bytes.
func titleText(_ raw: String, _ ctx: SetContext) throws(ConfigError) -> String {
    guard !raw.isEmpty, raw.utf8.count <= 64, raw.unicodeScalars.allSatisfy({ $0.value >= 0x20 && $0.value != 0x7f }) else {
        throw ctx.fail("expected printable text of 1 to 64 bytes, got \(quoted(raw))")
    }
    return raw
}
