#if canImport(Glibc)
import Glibc
#endif

/// One embedded CPython per process: loaded, initialised without Python's own signal
/// handlers, with the `_apus` helper module in place.
///
/// Threading rule: a thread calls into Python only while it holds the GIL, which a
/// `PythonThread` takes and releases. After `start` the calling (main) thread holds it.
public final class PythonInterpreter: @unchecked Sendable {
    let api: CPythonAPI
    /// The `_apus` module's namespace (a dict, kept by `sys.modules` for the process).
    let helpers: PyBorrowed

    private init(api: CPythonAPI, helpers: PyBorrowed) {
        self.api = api
        self.helpers = helpers
    }

    /// Loads libpython, initialises the interpreter and puts the working directory, then
    /// `sysPath`, first on `sys.path` (the working directory asked of Python: a worker makes
    /// no path String of its own).
    public static func start(libraryPath: String, programPath: String, sysPath: [String]) throws(PythonLoadError) -> PythonInterpreter {
        let api = try CPythonAPI(libraryPath: libraryPath)
        // The program name decides sys.prefix: a venv's bin/python makes CPython read
        // pyvenv.cfg. Deprecated since 3.11 but still honoured through 3.13, and unlike
        // PyConfig its signature is the same in every version.
        api.setProgramName(programPath)
        api.initialize()
        guard let module = api.addModule("_apus"), let dict = api.moduleDict(module) else {
            throw PythonLoadError(message: "cannot create the _apus helper module")
        }
        if let builtins = api.importModule("builtins") {
            api.setItem(dict, "__builtins__", builtins)
        }
        // Register it so `import _apus` works for anyone who wants it.
        if let modules = api.sysObject("modules") {
            api.setItem(modules, "_apus", module)
        }
        let interp = PythonInterpreter(api: api, helpers: dict)
        guard interp.run(bootstrapSource) else {
            throw PythonLoadError(message: "the _apus bootstrap failed")
        }
        // threading must be imported on the main thread first, or it mistakes the first
        // thread that imports it for the main one.
        if api.importModule("threading") == nil { api.clearError() }
        if let path = api.sysObject("path") {
            for (i, entry) in sysPath.enumerated() where !api.listInsert(path, i, api.string(entry)) {
                throw PythonLoadError(message: "cannot put \(entry) on sys.path")
            }
        }
        if !interp.run("import os as _os, sys as _sys\n_sys.path.insert(0, _os.getcwd())\ndel _os, _sys\n") {
            throw PythonLoadError(message: "cannot put the working directory on sys.path")
        }
        return interp
    }

    /// Runs Python statements in the `_apus` namespace; prints the traceback on failure.
    @discardableResult
    func run(_ source: String) -> Bool {
        guard api.run(source, in: helpers) != nil else {
            api.printError()
            return false
        }
        return true
    }

    /// A helper defined by the bootstrap (borrowed from `_apus`, which lives as long as the
    /// process).
    func helper(_ name: StaticString) -> PyBorrowed {
        guard let f = api.item(helpers, name) else { fatalError("_apus.\(name) missing") }
        return f
    }

    /// Imports the WSGI callable. On failure the traceback goes to stderr and the error
    /// names the app. GIL held.
    public func loadApp(module: String?, file: String?, callable: String?) throws(PythonLoadError) -> WSGICallable {
        guard let app = api.call(helper("load_app"), api.stringOrNone(module), api.stringOrNone(file), api.stringOrNone(callable)) else {
            api.printError()
            throw PythonLoadError(message: "failed to load the application \(module ?? file ?? "?")")
        }
        return WSGICallable(object: app.keepForever())
    }

    /// The calling thread, which holds the GIL: the one that started the interpreter, or
    /// the child of a fork made by it.
    public func currentThread() -> PythonThread { PythonThread(api: api, holdingGIL: true) }

    /// Registers the calling thread, which Python did not create, with the interpreter;
    /// returns it without the GIL.
    public func attachCurrentThread() -> PythonThread {
        api.ensureThreadState()
        let thread = PythonThread(api: api, holdingGIL: true)
        thread.releaseGIL()
        return thread
    }

    // MARK: fork (called with the GIL held)

    public func beforeFork() { api.beforeFork() }
    public func afterForkChild() { api.afterForkChild() }
    public func afterForkParent() { api.afterForkParent() }
}

/// The WSGI callable of the app, kept until the process exits.
public struct WSGICallable: @unchecked Sendable {
    let object: PyBorrowed
}

/// One thread's hold on the GIL: takes it, releases it, and knows which it has, so a call
/// into Python without it stops the worker instead of corrupting the interpreter. Each
/// thread that runs Python has its own; it is used only on that thread.
public final class PythonThread: @unchecked Sendable {
    private let api: CPythonAPI
    // Used by one thread only: no run-time exclusivity check.
    /// Python's state for this thread while it does not hold the GIL.
    @exclusivity(unchecked) private var state: UnsafeMutableRawPointer?
    @exclusivity(unchecked) public private(set) var holdsGIL: Bool

    init(api: CPythonAPI, holdingGIL: Bool) {
        self.api = api
        holdsGIL = holdingGIL
    }

    @inline(__always) public func acquireGIL() {
        precondition(!holdsGIL, "the GIL taken twice by one thread")
        api.restoreThread(state)
        holdsGIL = true
    }

    @inline(__always) public func releaseGIL() {
        precondition(holdsGIL, "the GIL released by a thread that does not hold it")
        holdsGIL = false
        state = api.saveThread()
    }

    /// Runs `body` without the GIL (a wait for a socket), then takes it back.
    @inline(__always) public func withoutGIL<R>(_ body: () -> R) -> R {
        releaseGIL()
        defer { acquireGIL() }
        return body()
    }
}
