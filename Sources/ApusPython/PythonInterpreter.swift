#if canImport(Glibc)
import Glibc
#endif

/// One embedded CPython per process: loaded, initialised without Python's own signal
/// handlers, with the `_apus` helper module in place.
///
/// Threading rule: a thread calls into Python only between `acquireGIL` and `releaseGIL`.
/// After `start` the calling (main) thread holds the GIL.
public final class PythonInterpreter: @unchecked Sendable {
    public let api: CPythonAPI
    /// The `_apus` module's namespace (a dict, borrowed for the life of the process).
    let helpers: PyRef

    private init(api: CPythonAPI, helpers: PyRef) {
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
        if let wide = programPath.withCString({ api.Py_DecodeLocale($0, nil) }) {
            api.Py_SetProgramName(UnsafeRawPointer(wide))  // must outlive the interpreter: never freed
        }
        api.Py_InitializeEx(0)  // 0: no Python signal handlers; the worker owns signals
        guard let module = api.PyImport_AddModule(cstr("_apus")), let dict = api.PyModule_GetDict(module) else {
            throw PythonLoadError(message: "cannot create the _apus helper module")
        }
        if let builtins = api.PyImport_ImportModule(cstr("builtins")) {
            _ = api.PyDict_SetItemString(dict, cstr("__builtins__"), builtins)
            api.decref(builtins)
        }
        // Register it so `import _apus` works for anyone who wants it.
        if let modules = api.PySys_GetObject(cstr("modules")) {
            _ = api.PyDict_SetItemString(modules, cstr("_apus"), module)
        }
        let interp = PythonInterpreter(api: api, helpers: dict)
        guard interp.run(bootstrapSource) else {
            throw PythonLoadError(message: "the _apus bootstrap failed")
        }
        // threading must be imported on the main thread first, or it mistakes the first
        // thread that imports it for the main one.
        if let threading = api.PyImport_ImportModule(cstr("threading")) { api.decref(threading) } else { api.PyErr_Clear() }
        if let path = api.PySys_GetObject(cstr("path")) {
            for (i, entry) in sysPath.enumerated() {
                let s = api.string(entry)
                _ = api.PyList_Insert(path, i, s)
                api.decref(s)
            }
        }
        if !interp.run("import os as _os, sys as _sys\n_sys.path.insert(0, _os.getcwd())\ndel _os, _sys\n") {
            throw PythonLoadError(message: "cannot put the working directory on sys.path")
        }
        return interp
    }

    /// Runs Python statements in the `_apus` namespace; prints the traceback on failure.
    @discardableResult
    public func run(_ source: String) -> Bool {
        let fileInput: Int32 = 257  // Py_file_input
        guard let r = source.withCString({ api.PyRun_String($0, fileInput, helpers, helpers) }) else {
            api.PyErr_PrintEx(0)
            return false
        }
        api.decref(r)
        return true
    }

    /// A helper defined by the bootstrap (borrowed reference).
    func helper(_ name: StaticString) -> PyRef {
        guard let f = api.PyDict_GetItemString(helpers, cstr(name)) else { fatalError("_apus.\(name) missing") }
        return f
    }

    /// Calls `callable(*args)`; args are borrowed. Returns a new reference or nil with the
    /// Python error set.
    func call(_ callable: PyRef, _ args: [PyRef]) -> PyRef? {
        guard let tuple = api.PyTuple_New(args.count) else { return nil }
        for (i, a) in args.enumerated() {
            api.incref(a)
            _ = api.PyTuple_SetItem(tuple, i, a)
        }
        defer { api.decref(tuple) }
        return api.PyObject_Call(callable, tuple, nil)
    }

    /// Imports the WSGI callable. On failure the traceback goes to stderr and the error
    /// names the app.
    public func loadApp(module: String?, file: String?, callable: String?) throws(PythonLoadError) -> PyRef {
        let none = api.none
        let m = module.map { api.string($0) } ?? none
        let f = file.map { api.string($0) } ?? none
        let c = callable.map { api.string($0) } ?? none
        defer {
            if m != none { api.decref(m) }
            if f != none { api.decref(f) }
            if c != none { api.decref(c) }
        }
        guard let app = call(helper("load_app"), [m, f, c]) else {
            api.PyErr_PrintEx(0)
            throw PythonLoadError(message: "failed to load the application \(module ?? file ?? "?")")
        }
        return app
    }

    // MARK: GIL

    /// Releases the GIL held by this thread; returns the thread state to restore.
    @inline(__always) public func releaseGIL() -> UnsafeMutableRawPointer? { api.PyEval_SaveThread() }
    @inline(__always) public func acquireGIL(_ state: UnsafeMutableRawPointer?) { api.PyEval_RestoreThread(state) }

    /// For a thread Python did not create: makes a thread state (taking the GIL) and then
    /// releases the GIL, returning the state to use with `acquireGIL`.
    public func attachCurrentThread() -> UnsafeMutableRawPointer? {
        _ = api.PyGILState_Ensure()
        return api.PyEval_SaveThread()
    }

    // MARK: fork (called with the GIL held)

    public func beforeFork() { api.PyOS_BeforeFork() }
    public func afterForkChild() { api.PyOS_AfterFork_Child() }
    public func afterForkParent() { api.PyOS_AfterFork_Parent() }

    /// Prints the pending Python exception with its traceback to stderr and clears it.
    public func printPendingError() { api.PyErr_PrintEx(0) }
}
