/// Where the master looks for the CPython to embed. One rule, used at start, by `--check`
/// (so by the check an upgrade in place runs), and at each graceful reload; workers are
/// handed what the master found, so they never decide on their own.
public enum PythonChoice: Equatable, Sendable {
    /// `--python PATH`.
    case interpreter(String)
    /// A virtual environment: `--venv DIR` (`APUS_VENV`, an ini file), or, without either
    /// option, the venv whose `bin/` holds the apus binary (`besideBinary`).
    case venv(String, besideBinary: Bool)
    /// Neither option and no venv around the binary: `python3` on PATH.
    case searchPath

    /// - Parameters:
    ///   - python: `--python`, as the options resolved it.
    ///   - venv: `--venv`, as the options resolved it.
    ///   - executables: the binary's paths, most specific first: the path it was started as
    ///     (symbolic links not followed, as CPython finds a venv from its own `bin/python`),
    ///     then `/proc/self/exe` (links followed). A symlink such as /usr/local/bin/apus to
    ///     /srv/venv/bin/apus finds /srv/venv through the second one.
    public static func decide(python: String?, venv: String?, executables: [String],
                              fileSystem: FileSystem) -> PythonChoice {
        if let python { return .interpreter(python) }
        if let venv { return .venv(venv, besideBinary: false) }
        for executable in executables {
            if let dir = venvAround(executable), fileSystem.isFile(dir + "/pyvenv.cfg") {
                return .venv(dir, besideBinary: true)
            }
        }
        return .searchPath
    }

    /// DIR for an absolute DIR/bin/NAME (after removing `.` and `..` components), else nil.
    static func venvAround(_ executable: String) -> String? {
        guard executable.hasPrefix("/") else { return nil }
        var parts: [Substring] = []
        for part in executable.split(separator: "/") where part != "." {
            if part == ".." { _ = parts.popLast() } else { parts.append(part) }
        }
        guard parts.count >= 2, parts[parts.count - 2] == "bin" else { return nil }
        return "/" + parts.dropLast(2).joined(separator: "/")
    }
}
