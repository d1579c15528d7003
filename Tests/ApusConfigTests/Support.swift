import Testing
@testable import ApusConfig

/// A file system made of values.
struct FakeFileSystem: FileSystem {
    var directories: Set<String> = []
    var files: [String: String] = [:]

    func isDirectory(_ path: String) -> Bool { directories.contains(path) }
    func isFile(_ path: String) -> Bool { files[path] != nil }
    func read(_ path: String) -> String? { files[path] }

    /// Directories /srv, /venv, /lib/py; files /usr/bin/python3, app.py, /srv/site.py.
    static let standard = FakeFileSystem(
        directories: ["/srv", "/venv", "/lib/py"],
        files: ["/usr/bin/python3": "", "app.py": "", "/srv/site.py": ""])

    func with(file path: String, _ contents: String) -> FakeFileSystem {
        var copy = self
        copy.files[path] = contents
        return copy
    }
}

func resolve(_ arguments: [String], env: [String: String] = [:],
             fs: FakeFileSystem = .standard) throws(ConfigError) -> Command {
    try resolveCommand(arguments: arguments, environment: env, fileSystem: fs, host: testHost)
}

/// What ini magic variables see in tests: 4 cores, host web1, working directory /srv.
let testHost = IniHost(cpus: 4, hostname: "web1", workingDirectory: "/srv")

/// The configuration `arguments` resolve to; records an issue when they do not.
func config(_ arguments: [String], env: [String: String] = [:], fs: FakeFileSystem = .standard,
            sourceLocation: SourceLocation = #_sourceLocation) -> Configuration? {
    do {
        switch try resolve(arguments, env: env, fs: fs) {
        case let .run(config), let .router(config): return config
        default:
            Issue.record("expected .run or .router for \(arguments)", sourceLocation: sourceLocation)
            return nil
        }
    } catch {
        Issue.record("unexpected error: \(error.message)", sourceLocation: sourceLocation)
        return nil
    }
}

/// The error message `arguments` resolve to, or nil when they resolve.
func failure(_ arguments: [String], env: [String: String] = [:], fs: FakeFileSystem = .standard) -> String? {
    do {
        _ = try resolve(arguments, env: env, fs: fs)
        return nil
    } catch {
        return error.message
    }
}

/// Configuration() with the application "app" and the default bind: what `apus app` gives.
func baseline() -> Configuration {
    var c = Configuration()
    c.app = AppSpec(module: "app")
    c.binds = [Bind(address: .tcp(host: "127.0.0.1", port: 8000), proto: .http)]
    return c
}

/// What `apus router --subscription-server 127.0.0.1:7000` gives.
func routerBaseline() -> Configuration {
    var c = Configuration()
    c.binds = [Bind(address: .tcp(host: "127.0.0.1", port: 8000), proto: .http)]
    c.router.subscriptionServer = .inet(host: "127.0.0.1", port: 7000)
    return c
}

func tcp(_ host: String, _ port: Int, _ proto: Bind.Kind = .http) -> Bind {
    Bind(address: .tcp(host: host, port: port), proto: proto)
}

func unix(_ path: String, _ proto: Bind.Kind = .http) -> Bind {
    Bind(address: .unix(path: path), proto: proto)
}
