/// The CPython that workers embed, found once by the master (by asking the interpreter
/// itself) and handed to every worker.
public struct PythonInstallation: Equatable, Sendable {
    /// What `sys.executable` will be: the venv's `bin/python` when a venv is used, so that
    /// CPython finds `pyvenv.cfg` and makes the venv's site-packages importable.
    public var programPath: String
    /// The shared `libpython3.X.so` to dlopen.
    public var libraryPath: String
    /// "3.12.1".
    public var version: String
    /// Libraries the standard library's hashing, TLS and compression modules load (paths):
    /// the master maps them with libpython, so workers inherit them loaded and relocated.
    public var sharedLibraries: [String]

    public init(programPath: String, libraryPath: String, version: String, sharedLibraries: [String] = []) {
        self.programPath = programPath
        self.libraryPath = libraryPath
        self.version = version
        self.sharedLibraries = sharedLibraries
    }
}
