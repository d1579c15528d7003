// Resolution: command line, APUS_* environment and ini files → Command.
// Precedence, lowest first: defaults < ini files < APUS_* environment < APUS_CMD_ARGS <
// command line (APUS_CMD_ARGS sits where Gunicorn puts GUNICORN_CMD_ARGS: above its config
// file and its per-setting variables, below the real command line).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the `apus` executable should do.
public enum Command: Equatable, Sendable {
    case run(Configuration)
    /// `apus router ...`: the subscription router (no application).
    case router(Configuration)
    case help(String)
    case version
    /// `apus --from-gunicorn FILE`: translate a gunicorn.conf.py (with the --python or --venv
    /// given, to find the python3 that parses it).
    case fromGunicorn(file: String, python: String?, venv: String?)
    /// `--print-config`: every effective value and where it came from, as text to print.
    case printConfig(String)
    /// `apus top ADDR [--interval S]`: the live view of a stats server at ADDR (as given;
    /// ApusTop reads it), polled every `interval` seconds.
    case top(address: String, interval: Double)
}

/// A configuration mistake, as one line naming the option (or file and line) and what is wrong.
public struct ConfigError: Error, Equatable, Sendable, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// The file-system questions resolution asks; tests pass a fake.
public protocol FileSystem {
    func isDirectory(_ path: String) -> Bool
    func isFile(_ path: String) -> Bool
    /// The contents of a UTF-8 text file, or nil when it cannot be read.
    func read(_ path: String) -> String?
}

public struct RealFileSystem: FileSystem {
    public init() {}

    public func isDirectory(_ path: String) -> Bool { kind(of: path) == true }

    public func isFile(_ path: String) -> Bool { kind(of: path) == false }

    /// nil: nothing there; true: a directory; false: anything else. Follows symbolic links.
    /// Plain `stat`, not Foundation: the binary stays free of Foundation (smaller workers).
    private func kind(of path: String) -> Bool? {
        var st = stat()
        guard stat(path, &st) == 0 else { return nil }
        return (st.st_mode & S_IFMT) == S_IFDIR
    }

    public func read(_ path: String) -> String? {
        guard isFile(path), let file = fopen(path, "rb") else { return nil }
        defer { fclose(file) }
        var data: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = fread(&chunk, 1, chunk.count, file)
            if n <= 0 { break }
            data.append(contentsOf: chunk[0..<n])
        }
        return String(decoding: data, as: UTF8.self)
    }
}

/// This process's working directory, or nil when getcwd fails (the directory was removed).
public func workingDirectory() -> String? {
    var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
    guard getcwd(&buffer, buffer.count) != nil else { return nil }
    return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

// MARK: - Draft: the configuration while sources are applied

/// The application as one source gave it.
struct AppChoice: Equatable {
    enum Kind: Equatable { case module, file }
    var kind: Kind
    /// `MODULE[:CALLABLE]` or a file path.
    var value: String
    /// Which option gave it ("module", "wsgi-file", "mount", "positional"): two different
    /// options in one layer disagreeing is an error, the same one repeated is not.
    var option: String
    var layer: Layer
    var origin: String

    func sameApp(as other: AppChoice) -> Bool { kind == other.kind && value == other.value }
}

struct NamedValue: Equatable {
    var value: String
    var origin: String
    var layer: Layer
}

/// Configuration plus what can only be settled once every source is applied.
struct Draft {
    var config = Configuration()
    var app: AppChoice?
    var mountApp: AppChoice?
    var callable: NamedValue?
    var http: [Bind] = []
    var sockets: [Bind] = []
    /// `--fd N`: HTTP on an inherited listening socket.
    var fds: [Bind] = []
    /// The values applied, per option (for `--print-config`).
    var applied = AppliedValues()
    /// `--daemonize LOGFILE`: the log file unless `--log-file` names one.
    var daemonizeLog: String?

    mutating func setApp(_ new: AppChoice) throws(ConfigError) {
        if let old = app, old.layer == new.layer, old.option != new.option, !old.sameApp(as: new) {
            throw ConfigError("\(new.origin): \(quoted(new.value)) conflicts with \(quoted(old.value)) given by \(old.origin)")
        }
        app = new
    }
}

// MARK: - Lookup

struct OptionIndex {
    let specs: [OptionSpec]
    /// Every long spelling → (spec, is a negation).
    let long: [String: (spec: OptionSpec, negated: Bool)]
    let short: [Character: OptionSpec]

    init(_ specs: [OptionSpec] = OptionSpec.all, for command: OptionCommands = .server) {
        let specs = specs.filter { $0.commands.contains(command) }
        self.specs = specs
        var long: [String: (spec: OptionSpec, negated: Bool)] = [:]
        var short: [Character: OptionSpec] = [:]
        for spec in specs {
            for name in [spec.name] + spec.aliases { long[name] = (spec, false) }
            for name in spec.negations { long[name] = (spec, true) }
            for c in spec.shortAliases { short[c] = spec }
        }
        self.long = long
        self.short = short
    }
}

extension OptionIndex {
    /// " (did you mean --processes?)" when one long name is within two edits of `name`.
    func suggestion(for name: String, prefix: String) -> String {
        let candidates = long.keys.filter { long[$0]!.spec.action == nil }
            .map { (name: $0, distance: editDistance(Array(name), Array($0))) }
            .filter { $0.distance <= 2 && $0.distance < name.count }
            .sorted { ($0.distance, $0.name) < ($1.distance, $1.name) }
        return candidates.first.map { " (did you mean \(prefix)\($0.name)?)" } ?? ""
    }
}

/// Levenshtein distance.
func editDistance(_ a: [Character], _ b: [Character]) -> Int {
    var previous = Array(0...b.count)
    for (i, x) in a.enumerated() {
        var current = [i + 1]
        for (j, y) in b.enumerated() {
            current.append(Swift.min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1)))
        }
        previous = current
    }
    return previous[b.count]
}

/// One raw value from one source.
struct Entry {
    let spec: OptionSpec
    let raw: String
    let origin: String
    let negated: Bool
}

// MARK: - Resolution

/// Resolves `arguments` (without argv[0]), the process environment and any ini files into a Command.
/// `inherited`: the sockets systemd passed (`SocketActivation.parse`, read once at start).
/// `handed`: the sockets a zerg server handed over (`--zerg`), taken once at start.
/// `host`: what ini magic variables such as `%k` show (default: this machine).
/// `router` as the first argument resolves `apus router`'s options instead (a module named
/// `router` is then given as `--module router`). `top` as the first argument is `apus top`,
/// which takes only its own arguments (TopCommand.swift).
public func resolveCommand(arguments: [String], environment: [String: String],
                           fileSystem: any FileSystem, inherited: [InheritedSocket] = [],
                           handed: [Int32] = [], host: IniHost? = nil) throws(ConfigError) -> Command {
    if arguments.first == "top" { return try parseTopArguments(Array(arguments.dropFirst()), fileSystem: fileSystem) }
    let isRouter = arguments.first == "router"
    let arguments = isRouter ? Array(arguments.dropFirst()) : arguments
    let index = OptionIndex(for: isRouter ? .router : .server)

    // 1. The command line (also decides --help and --version).
    var cli: ParsedCommandLine
    switch try parseCommandLine(arguments, index, router: isRouter) {
    case .help: return .help(helpText())
    case .version: return .version
    case let .options(parsed): cli = parsed
    }

    if let translate = cli.entries.last(where: { $0.spec.action == .fromGunicorn }) {
        let python = cli.entries.last { $0.spec.name == "python" }?.raw
        let venv = cli.entries.last { $0.spec.name == "venv" }?.raw
        return .fromGunicorn(file: translate.raw, python: python, venv: venv)
    }

    // 2. The environment, and the arguments in APUS_CMD_ARGS.
    let env = environmentEntries(environment, index)
    let cmdArgs = try commandArgumentEntries(environment, index, router: isRouter)

    // 3. Ini files: --ini or -c on the command line (or `apus FILE.ini`) replaces those of
    // APUS_CMD_ARGS, which replace APUS_INI.
    if let positional = cli.positional, isIniArgument(positional, fileSystem),
       let iniSpec = index.long["ini"]?.spec {
        let entry = Entry(spec: iniSpec, raw: positional, origin: "the ini file argument", negated: false)
        cli.entries.insert(entry, at: cli.positionalIndex)
        cli.positional = nil
    }
    let cliIni = cli.entries.filter { $0.spec.action == .ini }
    let cmdIni = cmdArgs.entries.filter { $0.spec.action == .ini }
    let iniSources = !cliIni.isEmpty ? cliIni : !cmdIni.isEmpty ? cmdIni : env.filter { $0.spec.action == .ini }
    for source in iniSources where source.spec.name == "config" && !source.raw.hasSuffix(".ini") {
        throw ConfigError("\(source.origin): \(quoted(source.raw)) is not an ini file; a gunicorn.conf.py is Python, which Apus does not run: translate it once with apus --from-gunicorn FILE")
    }
    var ini = IniReader(fileSystem: fileSystem, environment: environment, host: host ?? .current(), index: index)
    for source in iniSources {
        try ini.read(source.raw, origin: source.origin)
    }
    let (iniEntries, iniWarnings) = try ini.entries()
    var warnings = iniWarnings
    if iniSources.isEmpty, !isRouter, fileSystem.isFile("gunicorn.conf.py") {
        warnings.append("./gunicorn.conf.py is not read by Apus (Gunicorn would run it): apus --from-gunicorn gunicorn.conf.py prints the equivalent options")
    }

    // 4. Apply the layers in increasing precedence.
    var draft = Draft()
    let layers: [(Layer, [Entry])] = [(.iniFile, iniEntries), (.environment, env),
                                      (.commandArguments, cmdArgs.entries), (.commandLine, cli.entries)]
    for (layer, entries) in layers {
        let positional = layer == .commandLine ? cli.positional : layer == .commandArguments ? cmdArgs.positional : nil
        if let app = positional {
            let origin = layer == .commandLine ? "application argument" : "\(commandArgumentsVariable): application argument"
            let ctx = SetContext(origin: origin, layer: layer, firstInLayer: true,
                                 negated: false, fileSystem: fileSystem)
            _ = try parseAppSpec(app, ctx)
            try draft.setApp(AppChoice(kind: .module, value: app, option: "positional", layer: layer,
                                       origin: layer == .commandLine ? "the application argument" : "the application in \(commandArgumentsVariable)"))
            draft.applied.record(Entry(spec: index.long["module"]!.spec, raw: app, origin: origin,
                                       negated: false), layer: layer, first: true)
            draft.config.givenOptions.entries.append(GivenOptions.Entry(name: "module", value: app))
        }
        var seen = Set<String>()
        for entry in entries {
            let first = seen.insert(entry.spec.name).inserted
            let ctx = SetContext(origin: entry.origin, layer: layer, firstInLayer: first,
                                 negated: entry.negated, fileSystem: fileSystem)
            do throws(ConfigError) {
                try entry.spec.set(&draft, entry.raw, ctx)
            } catch {
                throw withGunicornHint(error, entry)
            }
            draft.applied.record(entry, layer: layer, first: first)
            if entry.spec.action == nil { draft.config.givenOptions.entries.append(givenOption(entry)) }
        }
    }
    draft.config.configFiles = iniSources.map(\.raw)
    draft.config.warnings = warnings + draft.config.warnings
    if let log = draft.daemonizeLog, draft.config.logFile == nil { draft.config.logFile = log }
    let printing = cli.entries.contains { $0.spec.action == .printConfig }
    let config = isRouter
        ? try finishRouter(draft, environment: environment)
        : try finish(draft, environment: environment, fileSystem: fileSystem, inherited: inherited, handed: handed)
    if printing {
        return .printConfig(describeConfiguration(draft.applied, config, index: index, environment: environment))
    }
    return isRouter ? .router(config) : .run(config)
}

/// How an entry shows in `apus.opt`: a flag set is nil (True), a flag turned off is "false"
/// under its own name, a negation that turns it off shows under the negation.
private func givenOption(_ entry: Entry) -> GivenOptions.Entry {
    guard entry.spec.kind == .flag else { return GivenOptions.Entry(name: entry.spec.name, value: entry.raw) }
    let on = ["true", "1", "yes", "on"].contains(entry.raw.lowercased())
    if entry.negated, on, let negation = entry.spec.negations.first { return GivenOptions.Entry(name: negation, value: nil) }
    return GivenOptions.Entry(name: entry.spec.name, value: on != entry.negated ? nil : "false")
}

/// Settles what depends on several options: the application and the binds.
func finish(_ draft: Draft, environment: [String: String], fileSystem: any FileSystem,
            inherited: [InheritedSocket] = [], handed: [Int32] = []) throws(ConfigError) -> Configuration {
    var config = draft.config
    if config.zergServer != nil {
        // A zerg server only owns sockets: no app, and nothing to attach to.
        if let app = draft.app ?? draft.mountApp {
            throw ConfigError("\(app.origin): --zerg-server runs no application (instances attach with --zerg PATH)")
        }
        if !config.zerg.isEmpty { throw ConfigError("--zerg-server: cannot also attach to a zerg server (--zerg)") }
        if config.reusePort { throw ConfigError("--zerg-server: --reuse-port has no use here (the zerg server's sockets listen at once)") }
        if !config.attachDaemons.isEmpty { throw ConfigError("--zerg-server: --attach-daemon runs next to workers, and a zerg server has none") }
        if config.logMaxSize > 0 { throw ConfigError("--zerg-server: --log-maxsize is not supported here (SIGUSR1 reopens --log-file)") }
        config.binds = try settleBinds(draft, config, environment: environment, inherited: inherited, handed: [])
        return config
    }

    var app = draft.app
    if let mounted = draft.mountApp {
        if let given = app, !given.sameApp(as: mounted) {
            throw ConfigError("\(mounted.origin): application \(quoted(mounted.value)) conflicts with \(quoted(given.value)) given by \(given.origin)")
        }
        app = app ?? mounted
    }
    guard let app else {
        throw ConfigError("no application given: apus MODULE[:CALLABLE] or --wsgi-file FILE")
    }
    var callable = draft.callable?.value
    switch app.kind {
    case .module:
        let parts = app.value.split(separator: ":", maxSplits: 1)
        config.app.module = String(parts[0])
        if parts.count == 2 {
            // MODULE:CALLABLE against --callable: the higher source wins; one source giving both must agree.
            let inSpec = String(parts[1])
            if let given = draft.callable, given.layer == app.layer, given.value != inSpec {
                throw ConfigError("\(given.origin): \(quoted(given.value)) conflicts with the callable in \(quoted(app.value)) given by \(app.origin)")
            }
            if draft.callable.map({ $0.layer <= app.layer }) ?? true { callable = inSpec }
        }
    case .file:
        let path = app.value.hasPrefix("/") ? app.value : config.chdir.map { "\($0)/\(app.value)" } ?? app.value
        guard fileSystem.isFile(path) else {
            let within = config.chdir != nil && path != app.value ? " in \(quoted(config.chdir!))" : ""
            throw ConfigError("\(app.origin): no such file \(quoted(app.value))\(within)")
        }
        config.app.wsgiFile = app.value
    }
    config.app.callable = callable
    if config.logMaxSize > 0 && config.logFile == nil {
        throw ConfigError("--log-maxsize: needs a log file to rotate (--log-file, --daemonize or --logger file:PATH)")
    }

    if config.cheaper > 0 && config.cheaper >= config.processes {
        throw ConfigError("--cheaper \(config.cheaper): must be less than --processes (\(config.processes)), the most workers it may add up to")
    }
    config.binds = try settleBinds(draft, config, environment: environment, inherited: inherited, handed: handed)
    config.zergSockets = handed
    config.subscriptions = try resolveSubscriptions(config.subscriptions, binds: config.binds)
    return config
}

/// The binds: the configured ones, the inherited sockets adopted, the sockets a zerg server
/// handed (speaking `--protocol`, else told apart per connection), or else the default.
func settleBinds(_ draft: Draft, _ config: Configuration, environment: [String: String],
                 inherited: [InheritedSocket], handed: [Int32]) throws(ConfigError) -> [Bind] {
    var binds: [Bind] = []
    for bind in draft.http + draft.sockets + draft.fds where !binds.contains(bind) { binds.append(bind) }
    binds = adopt(inherited, into: binds)
    for fd in handed where !binds.contains(where: { $0.address == .fd(fd) }) {
        binds.append(Bind(address: .fd(fd), proto: config.zergProtocol ?? .auto))
    }
    if binds.isEmpty {
        if let port = environment["PORT"], !port.isEmpty {
            guard let number = parsePort(port[...]) else {
                throw ConfigError("PORT: expected a port number between 1 and 65535, got \(quoted(port))")
            }
            binds = [Bind(address: .tcp(host: BindDefaults.portBindHost, port: number), proto: .http)]
        } else {
            binds = [BindDefaults.bind]
        }
    }
    if config.reusePort, let unix = binds.first(where: { if case .unix = $0.address { true } else { false } }) {
        // A second instance cannot bind a unix path another one listens on, and Linux refuses
        // SO_REUSEPORT on unix sockets: the handover cannot work there.
        throw ConfigError("--reuse-port: \(unix) is a unix socket; SO_REUSEPORT and the handover work only on TCP binds")
    }
    return binds
}

/// Each `--subscribe-to` without an ADDRESS= announces the first uwsgi bind.
func resolveSubscriptions(_ subscriptions: [Subscription], binds: [Bind]) throws(ConfigError) -> [Subscription] {
    guard subscriptions.contains(where: { $0.address == nil }) else { return subscriptions }
    guard let socket = binds.first(where: { $0.proto == .uwsgi }) else {
        throw ConfigError("--subscribe-to: a router reaches this instance through its uwsgi socket, and there is none: add --socket ADDR (or announce another address with ADDRESS=ROUTER:KEY)")
    }
    guard let address = announcedAddress(of: socket) else {
        throw ConfigError("--subscribe-to: cannot announce \(socket), an inherited socket: give its address with ADDRESS=ROUTER:KEY")
    }
    return subscriptions.map { var s = $0; s.address = s.address ?? address; return s }
}

/// `apus router`: HTTP binds and a subscription server, no application.
func finishRouter(_ draft: Draft, environment: [String: String]) throws(ConfigError) -> Configuration {
    var config = draft.config
    guard config.router.subscriptionServer != nil else {
        throw ConfigError("apus router: --subscription-server ADDR is required (where instances send their subscriptions)")
    }
    var binds: [Bind] = []
    for bind in draft.http where !binds.contains(bind) { binds.append(bind) }
    if binds.isEmpty { binds = [BindDefaults.bind] }
    if let fd = binds.first(where: { if case .fd = $0.address { true } else { false } }) {
        throw ConfigError("apus router: \(fd) is an inherited socket; the router opens its own")
    }
    config.binds = binds
    return config
}

// MARK: - Command line

struct ParsedCommandLine {
    var entries: [Entry] = []
    var positional: String?
    /// How many entries came before the positional argument.
    var positionalIndex = 0
}

enum CommandLineResult {
    case help, version, options(ParsedCommandLine)
}

/// `--opt value`, `--opt=value`, `-w 4`, `-w4`; flags take no separate value; `--` ends options.
func parseCommandLine(_ arguments: [String], _ index: OptionIndex, router: Bool = false) throws(ConfigError) -> CommandLineResult {
    var result = ParsedCommandLine()
    var i = 0
    var optionsEnded = false

    func takePositional(_ arg: String) throws(ConfigError) {
        if router { throw ConfigError("apus router takes no application, got \(quoted(arg))") }
        if let first = result.positional {
            throw ConfigError("unexpected argument \(quoted(arg)): the application is already given as \(quoted(first))")
        }
        result.positional = arg
        result.positionalIndex = result.entries.count
    }

    /// The next argument as the value of `spelling`, unless it is missing or looks like an option.
    func nextValue(for spelling: String, _ spec: OptionSpec) throws(ConfigError) -> String {
        let missing = ConfigError("\(spelling): missing value (expected \(spec.valueName))")
        guard i < arguments.count else { throw missing }
        let next = arguments[i]
        if next.hasPrefix("-") && next.count > 1 && !isASCIIDigits(next.dropFirst()) { throw missing }
        i += 1
        return next
    }

    while i < arguments.count {
        let arg = arguments[i]
        i += 1
        if optionsEnded || arg == "-" || !arg.hasPrefix("-") {
            try takePositional(arg)
            continue
        }
        if arg == "--" {
            optionsEnded = true
            continue
        }
        let spec: OptionSpec
        let spelling: String
        var negated = false
        var raw: String
        if arg.hasPrefix("--") {
            let body = arg.dropFirst(2)
            let name = body.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)[0]
            spelling = "--" + name
            guard let found = index.long[String(name)], found.spec.sources.contains(.commandLine) else {
                if OptionIndex(for: router ? .server : .router).long[String(name)] != nil {
                    throw ConfigError(router ? "\(spelling) is not an option of apus router" : "\(spelling) is an option of apus router only")
                }
                throw ConfigError("unknown option \(spelling)" + index.suggestion(for: String(name), prefix: "--"))
            }
            spec = found.spec
            negated = found.negated
            let inline = body.count > name.count ? String(body.dropFirst(name.count + 1)) : nil
            if let inline {
                raw = inline
            } else if spec.takesValue {
                raw = try nextValue(for: spelling, spec)
            } else {
                raw = "true"
            }
        } else {
            let letter = arg[arg.index(after: arg.startIndex)]
            spelling = "-" + String(letter)
            guard let found = index.short[letter] else { throw ConfigError("unknown option \(spelling)") }
            spec = found
            let rest = arg.dropFirst(2)
            if !spec.takesValue {
                guard rest.isEmpty else { throw ConfigError("unknown option \(arg)") }
                raw = "true"
            } else if rest.isEmpty {
                raw = try nextValue(for: spelling, spec)
            } else {
                raw = String(rest.hasPrefix("=") ? rest.dropFirst() : rest)
            }
        }
        switch spec.action {
        case .help: return .help
        case .version: return .version
        default: break
        }
        result.entries.append(Entry(spec: spec, raw: raw, origin: spelling, negated: negated))
    }
    return .options(result)
}

// MARK: - Environment

/// APUS_CMD_ARGS split as a shell would (Python's shlex.split, as Gunicorn splits
/// GUNICORN_CMD_ARGS) and parsed as command-line arguments; every origin and error names
/// the variable.
func commandArgumentEntries(_ environment: [String: String], _ index: OptionIndex,
                            router: Bool) throws(ConfigError) -> ParsedCommandLine {
    guard let text = environment[commandArgumentsVariable], !text.isEmpty else { return ParsedCommandLine() }
    let name = commandArgumentsVariable
    let parsed: CommandLineResult
    do throws(ConfigError) {
        parsed = try parseCommandLine(try shellWords(text), index, router: router)
    } catch {
        throw ConfigError("\(name): \(error.message)")
    }
    guard case var .options(result) = parsed else {
        throw ConfigError("\(name): --help and --version belong on the command line")
    }
    if let translate = result.entries.first(where: { $0.spec.action == .fromGunicorn }) {
        throw ConfigError("\(name): \(translate.origin) belongs on the command line")
    }
    result.entries = result.entries.map {
        Entry(spec: $0.spec, raw: $0.raw, origin: "\(name): \($0.origin)", negated: $0.negated)
    }
    return result
}

/// APUS_* variables that are set and not empty; list options split on their separator.
func environmentEntries(_ environment: [String: String], _ index: OptionIndex) -> [Entry] {
    var entries: [Entry] = []
    for spec in index.specs {
        guard let variable = spec.environmentVariable, let value = environment[variable], !value.isEmpty else { continue }
        let values: [String]
        if let separator = spec.environmentSeparator {
            values = value.split(separator: separator).map { trimmed($0) }.filter { !$0.isEmpty }
        } else {
            values = [value]
        }
        entries += values.map { Entry(spec: spec, raw: $0, origin: variable, negated: false) }
    }
    return entries
}
