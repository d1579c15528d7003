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

let apusVersion = "0.1.0"

func fail(_ message: String, status: Int32) -> Never {
    var line = "apus: \(message)\n"
    line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    exit(status)
}

let command: Command
do {
    command = try resolveCommand(arguments: Array(CommandLine.arguments.dropFirst()),
                                 environment: Environment.current(), fileSystem: RealFileSystem())
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
case let .run(config):
    let startDirectory = currentDirectory()
    // --python and --venv are paths from where Apus was started, as the options' checks
    // took them; --chdir is for the app.
    let python: PythonInstallation
    do {
        python = try PythonDiscovery.locate(python: config.python, venv: config.venv)
    } catch {
        fail(error.description, status: 2)
    }
    if let dir = config.chdir, chdir(dir) != 0 {
        fail("--chdir: cannot enter \(dir)", status: 2)
    }
    for warning in config.warnings { Log.warning(warning) }
    let master = Master(
        config: config, python: python, version: apusVersion,
        prepareZygote: { launch, commandFD in
            { WorkerEntry.runZygote(launch, commandFD: commandFD) }
        },
        reloadConfiguration: { rereadConfiguration(from: startDirectory) })
    exit(master.run())
}

/// For a graceful reload: the same command line, the environment as it is now and the ini
/// files as they are now, resolved from the directory Apus started in.
func rereadConfiguration(from startDirectory: String) -> Result<(Configuration, PythonInstallation), Master.ConfigurationFailure> {
    let here = currentDirectory()
    chdir(startDirectory)
    let resolved: Command
    do {
        resolved = try resolveCommand(arguments: Array(CommandLine.arguments.dropFirst()),
                                      environment: Environment.current(), fileSystem: RealFileSystem())
    } catch {
        chdir(here)
        return .failure(.init(error.message))
    }
    guard case let .run(config) = resolved else {
        chdir(here)
        return .failure(.init("the command line no longer runs a server"))
    }
    let python: PythonInstallation
    do {
        python = try PythonDiscovery.locate(python: config.python, venv: config.venv)
    } catch {
        chdir(here)
        return .failure(.init(error.description))
    }
    if let dir = config.chdir, chdir(dir) != 0 {
        chdir(here)
        return .failure(.init("--chdir: cannot enter \(dir)"))
    }
    for warning in config.warnings { Log.warning(warning) }
    return .success((config, python))
}

func currentDirectory() -> String {
    var buf = [CChar](repeating: 0, count: 4096)
    guard getcwd(&buf, buf.count) != nil else { return "." }
    return String(decoding: buf.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
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
