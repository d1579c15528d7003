// apus: resolve the options, find Python, then hand over to the master. Everything that
// can be wrong with the command line is reported here, in one line, before anything starts.
#if canImport(Glibc)
import Glibc
#endif
import ApusConfig
import ApusMaster
import ApusObserve
import ApusIPC
import ApusWorker
import ApusRouter
import ApusTop
import ApusSys

// First of all: the arguments are read and the environment moved to the heap, so the
// process titles can later take over the area they were in (ProcessTitle).
ProcessTitle.prepare()

let apusVersion = "0.1.0"

func fail(_ message: String, status: Int32) -> Never {
    Sys.writeStderr("apus: \(message)\n")
    exit(status)
}

/// The sockets systemd passed (LISTEN_FDS), read once at start: the variables are then
/// removed from the environment, and every resolution, at start and at each graceful reload,
/// is given the same sockets, so they resolve to the same binds.
nonisolated(unsafe) var activatedSockets: [InheritedSocket] = []

/// Reads and removes systemd's LISTEN_* variables; each socket's local address is read so
/// that a `--http`/`--socket` at that address adopts it.
func takeActivatedSockets() throws(ConfigError) -> [InheritedSocket] {
    let sockets = try SocketActivation.parse(environment: Environment.current(), pid: getpid())
    for name in SocketActivation.variables { unsetenv(name) }
    return sockets.map { InheritedSocket(fd: $0.fd, name: $0.name, address: ListenSocket.localAddress($0.fd)) }
}

/// The sockets zerg servers handed over (`--zerg`), taken once at start (or handed on by
/// the previous image of an upgrade in place) and given to every resolution, like
/// `activatedSockets`.
nonisolated(unsafe) var zergSockets: [Int32] = []

/// The sockets the previous image of an upgrade in place handed on (`_APUS_ZERG_FDS`),
/// taken out of the environment at once so no child sees the variable.
let passedZergSockets: [Int32]? = {
    guard let passed = getenv(ZergAttach.environmentKey).map({ String(cString: $0) }) else { return nil }
    unsetenv(ZergAttach.environmentKey)
    return passed.split(separator: ",").compactMap { Int32($0) }
}()

/// Attaches to every `--zerg` server, or takes the sockets an upgrade in place handed on.
func takeZergSockets(_ config: Configuration) throws(ListenSocket.Failure) -> [Int32] {
    if let passed = passedZergSockets { return passed }
    var fds: [Int32] = []
    for path in config.zerg {
        let handed = try ZergAttach.attach(path)
        Log.info("zerg server \(path) handed \(handed.count) socket\(handed.count == 1 ? "" : "s"): \(handed.map { describeHanded($0) }.joined(separator: ", "))")
        fds += handed
    }
    return fds
}

/// "fd 7 (127.0.0.1:8000)" for a log line.
func describeHanded(_ fd: Int32) -> String {
    switch ListenSocket.localAddress(fd) {
    case let .tcp(host, port)?: return "fd \(fd) (\(host.contains(":") ? "[\(host)]" : host):\(port))"
    case let .unix(path)?: return "fd \(fd) (unix:\(path))"
    default: return "fd \(fd)"
    }
}

/// The command line (and ini files, and environment) as they are now, resolved from the
/// working directory.
func resolve() throws(ConfigError) -> Command {
    try resolveCommand(arguments: Array(CommandLine.arguments.dropFirst()),
                       environment: Environment.current(), fileSystem: RealFileSystem(),
                       inherited: activatedSockets, handed: zergSockets)
}

/// Inherited sockets are checked (a listening TCP or unix stream socket) and made
/// close-on-exec before anything else runs, so a bad `--fd` is one line and no start.
func adoptInheritedSockets(_ config: Configuration) throws(ListenSocket.Failure) {
    for bind in config.binds {
        if case let .fd(fd) = bind.address { try ListenSocket.adopt(fd, label: bind.description) }
    }
}

/// The binary's paths, taken once at start (before --chdir): as it was started, then as
/// /proc/self/exe names it. Without --python or --venv, a venv around either is used.
let binaryPaths = [executablePath(from: currentDirectory()), selfExecutable()].compactMap { $0 }

/// The one start-up step, at start and at each graceful reload: from the options to what
/// the master runs. Finds Python (--python and --venv are paths from where Apus was
/// started, as the options' checks took them; else the venv around the binary), enters
/// --chdir (the app's directory) and logs the options' warnings.
func prepare(_ config: Configuration) -> Result<(Configuration, PythonInstallation), Master.ConfigurationFailure> {
    let python: PythonInstallation
    let choice = PythonChoice.decide(python: config.python, venv: config.venv, executables: binaryPaths,
                                     fileSystem: RealFileSystem())
    do {
        python = try PythonDiscovery.locate(choice)
    } catch {
        return .failure(.init(error.description))
    }
    if case let .venv(dir, besideBinary: true) = choice {
        Log.info("venv \(dir): the apus binary is in its bin/ (--venv or --python choose another)")
    }
    if let dir = config.chdir, case .failed = Sys.call({ chdir(dir) }) {
        return .failure(.init("--chdir: cannot enter \(dir)"))
    }
    applyLogLevel(config)
    for warning in config.warnings { Log.warning(warning) }
    return .success((config, python))
}

/// For a graceful reload: the same command line, the environment as it is now and the ini
/// files as they are now, resolved from the directory Apus started in, then `prepare`.
/// When anything fails the working directory is left as it was.
func rereadConfiguration(from startDirectory: String) -> Result<(Configuration, PythonInstallation), Master.ConfigurationFailure> {
    let here = currentDirectory()
    let prepared = resolveAndPrepare(in: startDirectory)
    if case .failure = prepared, case let .failure(problem) = enter(here) {
        Log.warning("cannot go back to \(here): \(problem.message)")
    }
    return prepared
}

private func resolveAndPrepare(in directory: String) -> Result<(Configuration, PythonInstallation), Master.ConfigurationFailure> {
    if case let .failure(problem) = enter(directory) { return .failure(problem) }
    let command: Command
    do {
        command = try resolve()
    } catch {
        return .failure(.init(error.message))
    }
    guard case let .run(config) = command else { return .failure(.init("the command line no longer runs a server")) }
    switch decidePrivileges(config) {
    case let .failure(problem): return .failure(problem)
    case let .success(drop):
        if let refusal = drop.refusedOnReload { return .failure(.init(refusal)) }
    }
    return prepare(config)
}

/// `--uid`/`--gid` resolved and decided against what this process is: at start (before
/// anything is bound, so a bad name stops Apus before it listens), in an upgrade's check
/// and new image, and for each graceful reload.
func decidePrivileges(_ config: Configuration) -> Result<PrivilegeDrop, Master.ConfigurationFailure> {
    do {
        return .success(try PrivilegeDrop.decide(uid: config.uid, gid: config.gid))
    } catch {
        return .failure(.init(error.description))
    }
}

func enter(_ directory: String) -> Result<Void, Master.ConfigurationFailure> {
    if case let .failed(e) = Sys.call({ chdir(directory) }) {
        return .failure(.init("cannot enter \(directory): \(Sys.describe(e))"))
    }
    return .success(())
}

func currentDirectory() -> String { workingDirectory() ?? "." }

/// `--log-level`, for this process and the ones it forks from now on.
func applyLogLevel(_ config: Configuration) {
    Log.threshold = Log.Level(rawValue: config.logLevel.rawValue) ?? .info
}

/// `apus --from-gunicorn FILE`: the translation on stdout, then exit (1 when the file could
/// not be read or parsed).
func printGunicornTranslation(file: String, python: String?, venv: String?) -> Never {
    let settings: [GunicornSetting]
    do {
        settings = try GunicornConfigReader.read(file, python: python, venv: venv)
    } catch {
        fail(error.description, status: 1)
    }
    let cores = max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
    let translation = translateGunicornConfig(settings, file: file, cores: cores)
    var text = "# Apus options equivalent to \(file) (read, not run)\n\(translation.commandLine)\n\n"
    text += "# or as an ini file (apus --ini FILE):\n\(translation.iniSection)\n"
    if !translation.notes.isEmpty {
        text += "\n# not translated, or translated with a difference:\n"
        text += translation.notes.map { "# \($0)\n" }.joined()
    }
    print(text, terminator: "")
    exit(0)
}

/// With `--process-titles` (the default): takes over the arguments' area and shows `words`
/// there ("apus: master [app]"); the zygote and the workers write theirs after the fork.
func showTitle(_ config: Configuration, _ words: String) {
    guard config.processTitles else { return }
    ProcessTitle.enable()
    ProcessTitle.set(ProcessTitle.compose(prefix: config.processTitlePrefix, words))
}

enum Environment {
    static func current() -> [String: String] {
        var env: [String: String] = [:]
        var p = environ
        while let entry = p.pointee {
            let s = String(cString: entry)
            if let eq = s.firstIndex(of: "=") { env[String(s[..<eq])] = String(s[s.index(after: eq)...]) }
            p += 1
        }
        return env
    }
}

/// What the previous image handed over when this one was started by an upgrade in place
/// (nil otherwise). The variable is removed, so no child sees it.
func takeUpgradeState() -> UpgradeState? {
    guard let value = getenv(UpgradeState.environmentKey).map({ String(cString: $0) }) else { return nil }
    unsetenv(UpgradeState.environmentKey)
    guard let fd = Int32(value) else { fail("\(UpgradeState.environmentKey) is not a descriptor: \(value)", status: 1) }
    var bytes: [UInt8] = []
    var buf = [UInt8](repeating: 0, count: 65536)
    while true {
        let n = read(fd, &buf, buf.count)
        if n < 0 && errno == EINTR { continue }
        if n <= 0 { break }
        bytes += buf[0..<n]
    }
    Sys.close(fd)
    do {
        return try UpgradeState(decoding: String(decoding: bytes, as: UTF8.self))
    } catch {
        fail("upgrade in place: \(error.description)", status: 1)
    }
}

/// The binary as it was started: a path with a slash from the start directory, else the
/// first match on PATH, else /proc/self/exe. An upgrade in place runs this path again, so
/// it follows a file replaced on disk or a moved symlink.
func executablePath(from directory: String) -> String {
    let argv0 = CommandLine.arguments.first ?? ""
    if argv0.hasPrefix("/") { return argv0 }
    if argv0.contains("/") { return directory + "/" + argv0 }
    if !argv0.isEmpty, let path = getenv("PATH").map({ String(cString: $0) }) {
        for dir in path.split(separator: ":") where access("\(dir)/\(argv0)", X_OK) == 0 {
            return dir.hasPrefix("/") ? "\(dir)/\(argv0)" : "\(directory)/\(dir)/\(argv0)"
        }
    }
    return selfExecutable() ?? argv0
}

/// /proc/self/exe: the binary's path with symbolic links followed (nil if unreadable).
func selfExecutable() -> String? {
    var buf = [CChar](repeating: 0, count: 4096)
    let n = readlink("/proc/self/exe", &buf, buf.count - 1)
    return n > 0 ? String(decoding: buf[0..<n].map { UInt8(bitPattern: $0) }, as: UTF8.self) : nil
}

/// `--daemonize`: uWSGI's detach. The log file is opened first (a bad path is one line on
/// the terminal and status 1), then the process forks, the parent exits 0, the child starts a
/// new session and forks again so it can never get a controlling terminal; stdin becomes
/// /dev/null and stdout and stderr the log file. The umask is left as it is (--umask), unlike
/// uWSGI's, which sets 0.
func daemonize(logFile: String) {
    let log = open(logFile, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644)
    guard log >= 0 else { fail("--daemonize: cannot open \(logFile): \(Sys.describe(errno))", status: 1) }
    let devNull = open("/dev/null", O_RDONLY)
    guard devNull >= 0 else { fail("--daemonize: cannot open /dev/null: \(Sys.describe(errno))", status: 1) }
    for round in 0..<2 {
        switch fork() {
        case -1: fail("--daemonize: fork: \(Sys.describe(errno))", status: 1)
        case 0: break
        default: _exit(0)
        }
        if round == 0 && setsid() < 0 { fail("--daemonize: setsid: \(Sys.describe(errno))", status: 1) }
    }
    _ = dup2(devNull, 0)
    _ = dup2(log, 1)
    _ = dup2(log, 2)
    Sys.close(devNull)
    Sys.close(log)
}

let inherited = takeUpgradeState()
_ = passedZergSockets
if let inherited, case let .failure(problem) = enter(inherited.startDirectory) {
    fail("upgrade in place: \(problem.message)", status: 1)
}

let command: Command
do {
    activatedSockets = try takeActivatedSockets()
    command = try resolve()
} catch {
    fail(error.message, status: 2)
}

switch command {
case let .help(text):
    print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
    exit(0)
case .version:
    print("apus \(apusVersion)")
    exit(0)
case let .fromGunicorn(file, python, venv):
    printGunicornTranslation(file: file, python: python, venv: venv)
case let .printConfig(text):
    print(text, terminator: "")
    exit(0)
case let .router(config):
    applyLogLevel(config)
    showTitle(config, "router")
    exit(runRouter(config))
case let .top(address, interval):
    guard let stats = StatsAddress(address) else {
        fail("top: \(address) is not an address: HOST:PORT, :PORT, unix:PATH, a socket path or http://HOST:PORT/", status: 2)
    }
    exit(Top.run(stats, interval: interval))
case var .run(options):
    applyLogLevel(options)
    if let path = options.zergServer {
        // A zerg server has no application: resolving its options is the whole check.
        if options.check { exit(0) }
        if options.daemonize { daemonize(logFile: options.logFile ?? "/dev/null") }
        showTitle(options, "zerg server")
        exit(ZergServer(config: options, path: path).run())
    }
    let privileges: PrivilegeDrop
    switch decidePrivileges(options) {
    case let .success(drop): privileges = drop
    case let .failure(problem): fail(problem.message, status: 2)
    }
    // The check an upgrade in place runs refuses what the new image could not do.
    if options.check, getenv(UpgradeState.formatKey) != nil, let refusal = privileges.refusedOnReload {
        fail(refusal, status: 2)
    }
    // --check looks at the options, the Python and the app; the sockets are the master's.
    if !options.check {
        do {
            if !options.zerg.isEmpty {
                zergSockets = try takeZergSockets(options)
                guard case let .run(resolved) = try resolve() else { fail("the command line changed", status: 2) }
                options = resolved
            }
            try adoptInheritedSockets(options)
        } catch let error as ListenSocket.Failure {
            fail(error.description, status: 2)
        } catch let error as ConfigError {
            fail(error.message, status: 2)
        } catch {
            fail("\(error)", status: 2)
        }
    }
    let startDirectory = currentDirectory()
    if options.check, let format = getenv(UpgradeState.formatKey).map({ String(cString: $0) }),
       format != UpgradeState.format {
        fail("this binary cannot take over from a master that hands over \(format) (it reads \(UpgradeState.format))", status: 2)
    }
    let (config, python): (Configuration, PythonInstallation)
    switch prepare(options) {
    case let .success(ready): (config, python) = ready
    case let .failure(problem): fail(problem.message, status: 2)
    }
    if config.check { WorkerEntry.check(config, python) }
    // An upgraded image is already detached, and keeps the pid the pidfile holds.
    if config.daemonize && inherited == nil { daemonize(logFile: config.logFile ?? "/dev/null") }
    showTitle(config, "master [\(config.procName ?? config.app.description)]")
    let relaunch = Relaunch(executable: executablePath(from: startDirectory),
                            arguments: Array(CommandLine.arguments.dropFirst()), startDirectory: startDirectory,
                            environment: SocketActivation.environment(for: activatedSockets, pid: getpid())
                                + (zergSockets.isEmpty ? [] : ["\(ZergAttach.environmentKey)=" + zergSockets.map { String($0) }.joined(separator: ",")]),
                            descriptors: activatedSockets.map(\.fd) + zergSockets)
    let master = Master(
        config: config, python: python, version: apusVersion, relaunch: relaunch, inherited: inherited, privileges: privileges,
        prepareZygote: { launch, commandFD in
            { WorkerEntry.runZygote(launch, commandFD: commandFD) }
        },
        reloadConfiguration: { rereadConfiguration(from: startDirectory) })
    exit(master.run())
}
