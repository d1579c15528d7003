#if canImport(Glibc)
import Glibc
#endif
import ApusConfig
import ApusSys
import CApusSys

/// Finds the CPython to embed by asking the interpreter itself (a child process; the
/// master never loads Python): the interpreter `PythonChoice` names, a venv's `bin/python`,
/// or `python3` on PATH. The venv's `pyvenv.cfg` is what makes its site-packages importable.
public enum PythonDiscovery {
    public struct Failure: Error, CustomStringConvertible {
        public let description: String
    }

    public static func locate(_ choice: PythonChoice) throws(Failure) -> PythonInstallation {
        let program = try interpreter(choice)
        guard let out = run(program, ["-c", discoveryScript]) else {
            throw Failure(description: "cannot run \(program) to find its libpython")
        }
        let lines = out.split(separator: "\n").map(String.init)
        guard lines.count >= 4 else { throw Failure(description: "unexpected answer from \(program): \(out)") }
        var library = lines[1]
        if !library.hasSuffix(".so") && !library.contains(".so.") {
            // Static build: LDLIBRARY is libpython3.X.a; a shared one may still sit beside it.
            let shared = library.replacingSuffix(".a", with: ".so")
            if access(shared, R_OK) == 0 { library = shared } else {
                throw Failure(description: "\(program) (Python \(lines[0])) was built without a shared libpython; Apus needs one (pyenv: PYTHON_CONFIGURE_OPTS=--enable-shared)")
            }
        }
        guard access(library, R_OK) == 0 else {
            throw Failure(description: "\(program): its libpython \(library) does not exist (Debian and Ubuntu install it with the libpython3.X-dev package)")
        }
        let parts = lines[0].split(separator: ".").compactMap { Int($0) }
        if parts.count >= 2 && (parts[0] != 3 || parts[1] < 9) {
            throw Failure(description: "\(program) is Python \(lines[0]); Apus needs 3.9 or newer")
        }
        // sys.executable, not the path we ran: a pyenv shim or a symlink would give CPython
        // the wrong prefix.
        return PythonInstallation(programPath: lines[3], libraryPath: library, version: lines[0],
                                  sharedLibraries: lines.dropFirst(4).filter { $0.hasPrefix("/") })
    }

    /// The interpreter's path: `--python`, else the venv's `bin/python`, else python3 on PATH.
    static func interpreter(_ choice: PythonChoice) throws(Failure) -> String {
        var program: String
        switch choice {
        case let .interpreter(python):
            program = python
        case let .venv(venv, besideBinary):
            let cfg = venv + "/pyvenv.cfg"
            let label = besideBinary ? "the venv around the apus binary" : "--venv"
            guard access(cfg, R_OK) == 0 else { throw Failure(description: "\(label): \(venv) has no pyvenv.cfg (not a virtual environment)") }
            program = venv + "/bin/python"
            if access(program, X_OK) != 0 { program = venv + "/bin/python3" }
            if besideBinary, access(program, X_OK) != 0 {
                throw Failure(description: "\(label): \(venv) has no bin/python; pass --venv DIR or --python PATH")
            }
        case .searchPath:
            guard let found = searchPath("python3") else {
                throw Failure(description: "no python3 on PATH: pass --python PATH or --venv DIR")
            }
            program = found
        }
        guard access(program, X_OK) == 0 else { throw Failure(description: "--python: \(program) is not an executable") }
        return program
    }

    /// Prints the version, the libpython path, Py_ENABLE_SHARED and sys.executable, one per
    /// line, then the shared libraries that loading the standard library's hashing, TLS and
    /// compression modules maps (libcrypto, libssl, libz, ...): what Django and Flask load
    /// while they are imported, and what uWSGI links into its binary.
    static let discoveryScript = """
        import importlib.machinery, os, sys, sysconfig
        v = sysconfig.get_config_var
        print(sys.version.split()[0])
        print(os.path.join(v('LIBDIR') or '', v('LDLIBRARY') or ''))
        print(v('Py_ENABLE_SHARED'))
        print(sys.executable)
        def mapped():
            with open('/proc/self/maps') as f:
                return {p[5].strip() for p in (l.split(None, 5) for l in f) if len(p) == 6 and p[5].startswith('/')}
        before = mapped()
        for name in ('_hashlib', '_ssl', 'zlib', '_lzma', '_bz2'):
            try:
                __import__(name)
            except Exception:
                pass
        extension = tuple(importlib.machinery.EXTENSION_SUFFIXES)
        for path in sorted(mapped() - before):
            if not path.endswith(extension) and '\\n' not in path and os.path.isfile(path):
                print(path)
        """

    static func searchPath(_ name: String) -> String? {
        guard let path = getenv("PATH") else { return nil }
        for dir in String(cString: path).split(separator: ":") {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return candidate }
        }
        return nil
    }

    /// Runs a program and returns its stdout (nil if it failed).
    static func run(_ program: String, _ args: [String]) -> String? {
        var fds: [Int32] = [0, 0]
        guard Sys.call({ apus_pipe_cloexec(&fds, 0) }).value != nil else { return nil }
        var actions = posix_spawn_file_actions_t()
        // These return an error number (ENOMEM) rather than setting errno.
        guard posix_spawn_file_actions_init(&actions) == 0 else {
            Sys.close(fds[0])
            Sys.close(fds[1])
            return nil
        }
        defer { posix_spawn_file_actions_destroy(&actions) }
        guard posix_spawn_file_actions_adddup2(&actions, fds[1], 1) == 0,
              posix_spawn_file_actions_addclose(&actions, fds[0]) == 0 else {
            Sys.close(fds[0])
            Sys.close(fds[1])
            return nil
        }
        let argv = ([program] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, program, &actions, nil, argv, environ)
        Sys.close(fds[1])
        guard rc == 0 else { Sys.close(fds[0]); return nil }
        var data = [UInt8]()
        var buf = [UInt8](repeating: 0, count: 4096)
        while case let .done(n) = Sys.call({ read(fds[0], &buf, buf.count) }), n > 0 {
            data += buf[0..<n]
        }
        Sys.close(fds[0])
        var status: Int32 = 0
        guard Sys.call({ waitpid(pid, &status, 0) }).value != nil, status == 0 else { return nil }
        return String(decoding: data, as: UTF8.self)
    }
}

extension String {
    func replacingSuffix(_ suffix: String, with other: String) -> String {
        hasSuffix(suffix) ? String(dropLast(suffix.count)) + other : self
    }
}
