#if canImport(Glibc)
import Glibc
#endif
import ApusProtocols

/// A raw `PyObject *`, only in this file: everything else holds a `PyOwned` or a
/// `PyBorrowed` (PythonObject.swift).
fileprivate typealias RawObject = UnsafeMutableRawPointer

/// The CPython C API functions Apus calls, resolved with `dlsym` from the `libpython3.X.so`
/// chosen at run time. Only real exported functions (never macros), so one binary works
/// with every CPython from 3.9 to 3.13 and needs no Python headers to build. Each symbol
/// here is one a libpython must export for a worker to start, so the table holds exactly
/// the ones called.
///
/// The function pointers are private to this file; the rest of ApusPython calls the typed
/// functions below, which say by their result whether a reference is new (`PyOwned`) or
/// borrowed (`PyBorrowed`). All of them need the GIL, except the thread-state ones.
struct CPythonAPI: @unchecked Sendable {
    // Life cycle, threads, fork.
    fileprivate let Py_InitializeEx: @convention(c) (Int32) -> Void
    fileprivate let Py_SetProgramName: @convention(c) (UnsafeRawPointer) -> Void
    fileprivate let Py_DecodeLocale: @convention(c) (UnsafePointer<CChar>, UnsafeMutablePointer<Int>?) -> UnsafeMutableRawPointer?
    fileprivate let PyEval_SaveThread: @convention(c) () -> UnsafeMutableRawPointer?
    fileprivate let PyEval_RestoreThread: @convention(c) (UnsafeMutableRawPointer?) -> Void
    fileprivate let PyGILState_Ensure: @convention(c) () -> Int32
    fileprivate let PyOS_BeforeFork: @convention(c) () -> Void
    fileprivate let PyOS_AfterFork_Child: @convention(c) () -> Void
    fileprivate let PyOS_AfterFork_Parent: @convention(c) () -> Void
    // Modules and attributes.
    fileprivate let PyImport_ImportModule: @convention(c) (UnsafePointer<CChar>) -> RawObject?
    fileprivate let PyImport_AddModule: @convention(c) (UnsafePointer<CChar>) -> RawObject?
    fileprivate let PyModule_GetDict: @convention(c) (RawObject) -> RawObject?
    fileprivate let PyObject_GetAttrString: @convention(c) (RawObject, UnsafePointer<CChar>) -> RawObject?
    fileprivate let PyObject_Call: @convention(c) (RawObject, RawObject, RawObject?) -> RawObject?
    fileprivate let PyObject_IsInstance: @convention(c) (RawObject, RawObject) -> Int32
    fileprivate let PyObject_GetIter: @convention(c) (RawObject) -> RawObject?
    fileprivate let PyIter_Next: @convention(c) (RawObject) -> RawObject?
    fileprivate let PyRun_String: @convention(c) (UnsafePointer<CChar>, Int32, RawObject, RawObject) -> RawObject?
    fileprivate let PyCFunction_NewEx: @convention(c) (UnsafeMutableRawPointer, RawObject?, RawObject?) -> RawObject?
    fileprivate let PySys_GetObject: @convention(c) (UnsafePointer<CChar>) -> RawObject?
    // Containers.
    fileprivate let PyTuple_New: @convention(c) (Int) -> RawObject?
    fileprivate let PyTuple_SetItem: @convention(c) (RawObject, Int, RawObject?) -> Int32
    fileprivate let PyTuple_GetItem: @convention(c) (RawObject, Int) -> RawObject?
    fileprivate let PyTuple_Size: @convention(c) (RawObject) -> Int
    fileprivate let PyList_Insert: @convention(c) (RawObject, Int, RawObject) -> Int32
    fileprivate let PyList_GetItem: @convention(c) (RawObject, Int) -> RawObject?
    fileprivate let PyList_Size: @convention(c) (RawObject) -> Int
    fileprivate let PyDict_New: @convention(c) () -> RawObject?
    fileprivate let PyDict_Copy: @convention(c) (RawObject) -> RawObject?
    fileprivate let PyDict_SetItem: @convention(c) (RawObject, RawObject, RawObject) -> Int32
    fileprivate let PyDict_SetItemString: @convention(c) (RawObject, UnsafePointer<CChar>, RawObject) -> Int32
    fileprivate let PyDict_GetItemString: @convention(c) (RawObject, UnsafePointer<CChar>) -> RawObject?
    fileprivate let PyDict_GetItem: @convention(c) (RawObject, RawObject) -> RawObject?
    fileprivate let PyDict_Size: @convention(c) (RawObject) -> Int
    fileprivate let PySequence_GetItem: @convention(c) (RawObject, Int) -> RawObject?
    fileprivate let PySequence_Size: @convention(c) (RawObject) -> Int
    // Scalars.
    fileprivate let PyUnicode_FromStringAndSize: @convention(c) (UnsafePointer<CChar>?, Int) -> RawObject?
    fileprivate let PyUnicode_DecodeLatin1: @convention(c) (UnsafePointer<CChar>?, Int, UnsafePointer<CChar>?) -> RawObject?
    fileprivate let PyUnicode_AsUTF8AndSize: @convention(c) (RawObject, UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>?
    fileprivate let PyUnicode_InternFromString: @convention(c) (UnsafePointer<CChar>) -> RawObject?
    fileprivate let PyBytes_FromStringAndSize: @convention(c) (UnsafePointer<CChar>?, Int) -> RawObject?
    fileprivate let PyBytes_AsStringAndSize: @convention(c) (RawObject, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>, UnsafeMutablePointer<Int>) -> Int32
    fileprivate let PyLong_FromLong: @convention(c) (Int) -> RawObject?
    fileprivate let PyLong_AsLong: @convention(c) (RawObject) -> Int
    fileprivate let PyCapsule_New: @convention(c) (UnsafeMutableRawPointer, UnsafePointer<CChar>?, UnsafeRawPointer?) -> RawObject?
    // Errors.
    fileprivate let PyErr_Occurred: @convention(c) () -> RawObject?
    fileprivate let PyErr_Restore: @convention(c) (RawObject?, RawObject?, RawObject?) -> Void
    fileprivate let PyErr_Clear: @convention(c) () -> Void
    fileprivate let PyErr_PrintEx: @convention(c) (Int32) -> Void
    fileprivate let PyErr_SetString: @convention(c) (RawObject, UnsafePointer<CChar>) -> Void
    // Data symbols: objects that live as long as the interpreter.
    let none: PyBorrowed
    let trueObject: PyBorrowed
    let falseObject: PyBorrowed
    fileprivate let bytesType: RawObject
    fileprivate let unicodeType: RawObject
    fileprivate let listType: RawObject
    fileprivate let tupleType: RawObject
    let excRuntimeError: PyBorrowed
    let excTypeError: PyBorrowed
    let excValueError: PyBorrowed
    let excAssertionError: PyBorrowed
    let excOSError: PyBorrowed

    /// Opens `libpython` and resolves every symbol. A missing one is a `PythonLoadError`
    /// naming it: nothing is half-loaded.
    init(libraryPath: String) throws(PythonLoadError) {
        guard let handle = libraryPath.withCString({ dlopen($0, RTLD_LAZY | RTLD_GLOBAL) }) else {
            let reason = dlerror().map { String(cString: $0) } ?? "unknown error"
            throw PythonLoadError(message: "cannot load \(libraryPath): \(reason)")
        }
        var missing: [String] = []
        func sym<T>(_ name: StaticString) -> T {
            guard let p = dlsym(handle, cstr(name)) else {
                missing.append("\(name)")
                return unsafeBitCast(Self.unresolved, to: T.self)
            }
            return unsafeBitCast(p, to: T.self)
        }
        func data(_ name: StaticString) -> UnsafeMutableRawPointer {
            guard let p = dlsym(handle, cstr(name)) else {
                missing.append("\(name)")
                return Self.unresolved
            }
            return p
        }
        func exc(_ name: StaticString) -> PyBorrowed {
            // PyExc_* are `PyObject *` variables: the symbol is the address of the pointer.
            let slot = data(name)
            if slot == Self.unresolved { return PyBorrowed(pointer: slot) }
            return PyBorrowed(pointer: slot.load(as: RawObject.self))
        }
        Py_InitializeEx = sym("Py_InitializeEx")
        Py_SetProgramName = sym("Py_SetProgramName")
        Py_DecodeLocale = sym("Py_DecodeLocale")
        PyEval_SaveThread = sym("PyEval_SaveThread")
        PyEval_RestoreThread = sym("PyEval_RestoreThread")
        PyGILState_Ensure = sym("PyGILState_Ensure")
        PyOS_BeforeFork = sym("PyOS_BeforeFork")
        PyOS_AfterFork_Child = sym("PyOS_AfterFork_Child")
        PyOS_AfterFork_Parent = sym("PyOS_AfterFork_Parent")
        PyImport_ImportModule = sym("PyImport_ImportModule")
        PyImport_AddModule = sym("PyImport_AddModule")
        PyModule_GetDict = sym("PyModule_GetDict")
        PyObject_GetAttrString = sym("PyObject_GetAttrString")
        PyObject_Call = sym("PyObject_Call")
        PyObject_IsInstance = sym("PyObject_IsInstance")
        PyObject_GetIter = sym("PyObject_GetIter")
        PyIter_Next = sym("PyIter_Next")
        PyRun_String = sym("PyRun_String")
        PyCFunction_NewEx = sym("PyCFunction_NewEx")
        PySys_GetObject = sym("PySys_GetObject")
        PyTuple_New = sym("PyTuple_New")
        PyTuple_SetItem = sym("PyTuple_SetItem")
        PyTuple_GetItem = sym("PyTuple_GetItem")
        PyTuple_Size = sym("PyTuple_Size")
        PyList_Insert = sym("PyList_Insert")
        PyList_GetItem = sym("PyList_GetItem")
        PyList_Size = sym("PyList_Size")
        PyDict_New = sym("PyDict_New")
        PyDict_Copy = sym("PyDict_Copy")
        PyDict_SetItem = sym("PyDict_SetItem")
        PyDict_SetItemString = sym("PyDict_SetItemString")
        PyDict_GetItemString = sym("PyDict_GetItemString")
        PyDict_GetItem = sym("PyDict_GetItem")
        PyDict_Size = sym("PyDict_Size")
        PySequence_GetItem = sym("PySequence_GetItem")
        PySequence_Size = sym("PySequence_Size")
        PyUnicode_FromStringAndSize = sym("PyUnicode_FromStringAndSize")
        PyUnicode_DecodeLatin1 = sym("PyUnicode_DecodeLatin1")
        PyUnicode_AsUTF8AndSize = sym("PyUnicode_AsUTF8AndSize")
        PyUnicode_InternFromString = sym("PyUnicode_InternFromString")
        PyBytes_FromStringAndSize = sym("PyBytes_FromStringAndSize")
        PyBytes_AsStringAndSize = sym("PyBytes_AsStringAndSize")
        PyLong_FromLong = sym("PyLong_FromLong")
        PyLong_AsLong = sym("PyLong_AsLong")
        PyCapsule_New = sym("PyCapsule_New")
        PyErr_Occurred = sym("PyErr_Occurred")
        PyErr_Restore = sym("PyErr_Restore")
        PyErr_Clear = sym("PyErr_Clear")
        PyErr_PrintEx = sym("PyErr_PrintEx")
        PyErr_SetString = sym("PyErr_SetString")
        let incRef = data("Py_IncRef"), decRef = data("Py_DecRef")
        none = PyBorrowed(pointer: data("_Py_NoneStruct"))
        trueObject = PyBorrowed(pointer: data("_Py_TrueStruct"))
        falseObject = PyBorrowed(pointer: data("_Py_FalseStruct"))
        bytesType = data("PyBytes_Type")
        unicodeType = data("PyUnicode_Type")
        listType = data("PyList_Type")
        tupleType = data("PyTuple_Type")
        excRuntimeError = exc("PyExc_RuntimeError")
        excTypeError = exc("PyExc_TypeError")
        excValueError = exc("PyExc_ValueError")
        excAssertionError = exc("PyExc_AssertionError")
        excOSError = exc("PyExc_OSError")
        if !missing.isEmpty {
            throw PythonLoadError(message: "\(libraryPath) lacks C API symbol(s): \(missing.joined(separator: ", "))")
        }
        refcounts.set(incRef: incRef, decRef: decRef)
    }

    nonisolated(unsafe) private static let unresolved = UnsafeMutableRawPointer(bitPattern: 0xdead)!
}

// MARK: - Typed calls
//
// A result of `PyOwned` is a new reference; `PyBorrowed` is borrowed from its argument or
// from the interpreter. Arguments are borrowed unless the parameter is `consuming`.

@inline(__always) private func owned(_ p: RawObject?) -> PyOwned? {
    guard let p else { return nil }
    return PyOwned(stealing: p)
}

@inline(__always) private func borrowed(_ p: RawObject?) -> PyBorrowed? {
    guard let p else { return nil }
    return PyBorrowed(pointer: p)
}

extension CPythonAPI {
    // MARK: Life cycle and threads (no GIL needed before `initialize`)

    /// Sets the program name, from which CPython derives `sys.prefix` (a venv's
    /// `bin/python` makes it read `pyvenv.cfg`).
    func setProgramName(_ path: String) {
        // The decoded name must outlive the interpreter: never freed.
        if let wide = path.withCString({ Py_DecodeLocale($0, nil) }) { Py_SetProgramName(UnsafeRawPointer(wide)) }
    }

    /// Starts the interpreter without Python's signal handlers (the worker owns signals).
    /// The calling thread then holds the GIL.
    func initialize() { Py_InitializeEx(0) }

    /// Releases the GIL held by this thread; returns its thread state.
    @inline(__always) func saveThread() -> UnsafeMutableRawPointer? { PyEval_SaveThread() }
    /// Takes the GIL for the thread whose state this is.
    @inline(__always) func restoreThread(_ state: UnsafeMutableRawPointer?) { PyEval_RestoreThread(state) }
    /// Gives the calling thread, which Python did not create, a thread state and the GIL.
    func ensureThreadState() { _ = PyGILState_Ensure() }

    func beforeFork() { PyOS_BeforeFork() }
    func afterForkChild() { PyOS_AfterFork_Child() }
    func afterForkParent() { PyOS_AfterFork_Parent() }

    // MARK: Modules, attributes, calls

    func importModule(_ name: StaticString) -> PyOwned? { owned(PyImport_ImportModule(cstr(name))) }
    /// The module named `name` in `sys.modules`, made empty if absent (borrowed).
    func addModule(_ name: StaticString) -> PyBorrowed? { borrowed(PyImport_AddModule(cstr(name))) }
    func moduleDict(_ module: borrowing some PyRef & ~Copyable) -> PyBorrowed? { borrowed(PyModule_GetDict(module.pointer)) }
    /// `sys.<name>` (borrowed), or nil without an exception set.
    func sysObject(_ name: StaticString) -> PyBorrowed? { borrowed(PySys_GetObject(cstr(name))) }
    func attribute(_ o: borrowing some PyRef & ~Copyable, _ name: StaticString) -> PyOwned? { owned(PyObject_GetAttrString(o.pointer, cstr(name))) }

    /// `callable(*args)`, nil with the error set.
    @inline(__always) func call(_ callable: borrowing some PyRef & ~Copyable, tuple args: borrowing some PyRef & ~Copyable) -> PyOwned? {
        owned(PyObject_Call(callable.pointer, args.pointer, nil))
    }

    /// `callable(arg)`, nil with the error set.
    func call(_ callable: borrowing some PyRef & ~Copyable, _ arg: borrowing some PyRef & ~Copyable) -> PyOwned? {
        guard let tuple = tuple(count: 1) else { return nil }
        setTupleItem(tuple, 0, PyOwned(retaining: PyBorrowed(pointer: arg.pointer)))
        return call(callable, tuple: tuple)
    }

    /// `callable(a, b, c)`, nil with the error set.
    func call(_ callable: borrowing some PyRef & ~Copyable, _ a: borrowing some PyRef & ~Copyable,
              _ b: borrowing some PyRef & ~Copyable, _ c: borrowing some PyRef & ~Copyable) -> PyOwned? {
        guard let tuple = tuple(count: 3) else { return nil }
        setTupleItem(tuple, 0, PyOwned(retaining: PyBorrowed(pointer: a.pointer)))
        setTupleItem(tuple, 1, PyOwned(retaining: PyBorrowed(pointer: b.pointer)))
        setTupleItem(tuple, 2, PyOwned(retaining: PyBorrowed(pointer: c.pointer)))
        return call(callable, tuple: tuple)
    }

    /// 1 when `o` is an instance of `type`, 0 when not, -1 with an error set.
    @inline(__always) func isInstance(_ o: borrowing some PyRef & ~Copyable, _ type: borrowing some PyRef & ~Copyable) -> Int32 {
        PyObject_IsInstance(o.pointer, type.pointer)
    }

    func iterator(_ o: borrowing some PyRef & ~Copyable) -> PyOwned? { owned(PyObject_GetIter(o.pointer)) }
    /// The next item, or nil at the end or with an error set (`errorOccurred` tells).
    @inline(__always) func next(_ iterator: borrowing some PyRef & ~Copyable) -> PyOwned? { owned(PyIter_Next(iterator.pointer)) }

    /// Runs Python statements (`Py_file_input`) with `namespace` as globals and locals.
    func run(_ source: String, in namespace: PyBorrowed) -> PyOwned? {
        let fileInput: Int32 = 257
        return owned(source.withCString { PyRun_String($0, fileInput, namespace.pointer, namespace.pointer) })
    }

    /// A builtin function object over a `PyMethodDef`, bound to `bound` (its `self`).
    func function(_ def: UnsafeMutableRawPointer, bound: borrowing some PyRef & ~Copyable) -> PyOwned? {
        owned(PyCFunction_NewEx(def, bound.pointer, nil))
    }

    /// A capsule holding `pointer` (no name, no destructor).
    func capsule(_ pointer: UnsafeMutableRawPointer) -> PyOwned? { owned(PyCapsule_New(pointer, nil, nil)) }

    // MARK: Containers

    func tuple(count: Int) -> PyOwned? { owned(PyTuple_New(count)) }
    /// Fills a slot of a tuple just made; the tuple takes the item over.
    @inline(__always) func setTupleItem(_ tuple: borrowing some PyRef & ~Copyable, _ i: Int, _ item: consuming PyOwned) {
        _ = PyTuple_SetItem(tuple.pointer, i, item.transfer())
    }
    @inline(__always) func tupleItem(_ t: borrowing some PyRef & ~Copyable, _ i: Int) -> PyBorrowed? { borrowed(PyTuple_GetItem(t.pointer, i)) }
    @inline(__always) func tupleSize(_ t: borrowing some PyRef & ~Copyable) -> Int { PyTuple_Size(t.pointer) }

    @inline(__always) func listItem(_ l: borrowing some PyRef & ~Copyable, _ i: Int) -> PyBorrowed? { borrowed(PyList_GetItem(l.pointer, i)) }
    @inline(__always) func listSize(_ l: borrowing some PyRef & ~Copyable) -> Int { PyList_Size(l.pointer) }
    func listInsert(_ l: borrowing some PyRef & ~Copyable, _ i: Int, _ item: borrowing some PyRef & ~Copyable) -> Bool { PyList_Insert(l.pointer, i, item.pointer) == 0 }

    @inline(__always) func sequenceItem(_ s: borrowing some PyRef & ~Copyable, _ i: Int) -> PyOwned? { owned(PySequence_GetItem(s.pointer, i)) }
    @inline(__always) func sequenceSize(_ s: borrowing some PyRef & ~Copyable) -> Int { PySequence_Size(s.pointer) }

    func dictionary() -> PyOwned? { owned(PyDict_New()) }
    @inline(__always) func copy(dictionary d: PyBorrowed) -> PyOwned? { owned(PyDict_Copy(d.pointer)) }
    /// `d[key] = value`; the dict keeps its own references. False with an error set.
    @discardableResult
    @inline(__always) func setItem(_ d: borrowing some PyRef & ~Copyable, _ key: borrowing some PyRef & ~Copyable, _ value: borrowing some PyRef & ~Copyable) -> Bool {
        PyDict_SetItem(d.pointer, key.pointer, value.pointer) == 0
    }
    @discardableResult
    func setItem(_ d: borrowing some PyRef & ~Copyable, _ key: StaticString, _ value: borrowing some PyRef & ~Copyable) -> Bool {
        PyDict_SetItemString(d.pointer, cstr(key), value.pointer) == 0
    }
    /// `d[key]` (borrowed), or nil without an exception set.
    @inline(__always) func item(_ d: borrowing some PyRef & ~Copyable, _ key: borrowing some PyRef & ~Copyable) -> PyBorrowed? { borrowed(PyDict_GetItem(d.pointer, key.pointer)) }
    @inline(__always) func item(_ d: borrowing some PyRef & ~Copyable, _ key: StaticString) -> PyBorrowed? { borrowed(PyDict_GetItemString(d.pointer, cstr(key))) }
    @inline(__always) func dictSize(_ d: borrowing some PyRef & ~Copyable) -> Int { PyDict_Size(d.pointer) }

    // MARK: Scalars

    /// A new `str` holding `s`.
    func string(_ s: String) -> PyOwned {
        var s = s
        let object = s.withUTF8 { b in
            b.withMemoryRebound(to: CChar.self) { PyUnicode_FromStringAndSize($0.baseAddress, $0.count)! }
        }
        return PyOwned(stealing: object)
    }

    /// A new `str` holding `s`, or a new reference to None.
    func stringOrNone(_ s: String?) -> PyOwned {
        guard let s else { return PyOwned(retaining: none) }
        return string(s)
    }

    /// A new `str` decoded as latin-1 from raw bytes (PEP 3333's "native string").
    @inline(__always) func latin1(_ b: UnsafeRawBufferPointer) -> PyOwned {
        PyOwned(stealing: latin1Object(b))
    }

    /// A new `str` decoded as latin-1 from the bytes of an array.
    @inline(__always) func latin1(_ b: [UInt8]) -> PyOwned {
        PyOwned(stealing: b.withUnsafeBytes { latin1Object($0) })
    }

    @inline(__always) private func latin1Object(_ b: UnsafeRawBufferPointer) -> RawObject {
        PyUnicode_DecodeLatin1(b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count, nil)!
    }

    /// A new `str` holding the decimal digits of `n` (n >= 0), without a Swift String.
    @inline(__always) func decimal(_ n: Int) -> PyOwned { PyOwned(stealing: withDecimalDigits(n) { latin1Object($0) }) }

    /// A port as a new `str` (REMOTE_PORT, SERVER_PORT): its digits, or "" for 0 (none).
    @inline(__always) func port(_ n: Int) -> PyOwned {
        n > 0 ? decimal(n) : latin1(UnsafeRawBufferPointer(start: nil, count: 0))
    }

    @inline(__always) func bytes(_ b: UnsafeRawBufferPointer) -> PyOwned {
        PyOwned(stealing: PyBytes_FromStringAndSize(b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count)!)
    }

    /// An interned `str` (one object per text across the process).
    func interned(_ s: StaticString) -> PyOwned { PyOwned(stealing: PyUnicode_InternFromString(cstr(s))!) }
    /// An interned `str` from the bytes of an array, which end with a NUL.
    func interned(nulTerminated s: [UInt8]) -> PyOwned {
        PyOwned(stealing: s.withUnsafeBytes { PyUnicode_InternFromString($0.baseAddress!.assumingMemoryBound(to: CChar.self))! })
    }

    func integer(_ n: Int) -> PyOwned { PyOwned(stealing: PyLong_FromLong(n)!) }
    /// The value of an `int`; -1 with an error set when it is not one or overflows.
    func integerValue(_ o: borrowing some PyRef & ~Copyable) -> Int { PyLong_AsLong(o.pointer) }

    /// The UTF-8 bytes of a `str` object (cached inside the object; valid while it lives).
    @inline(__always) func utf8(_ o: borrowing some PyRef & ~Copyable) -> UnsafeRawBufferPointer? {
        var n = 0
        guard let p = PyUnicode_AsUTF8AndSize(o.pointer, &n) else { return nil }
        return UnsafeRawBufferPointer(start: p, count: n)
    }

    /// The bytes of a `bytes` object (valid while it lives).
    @inline(__always) func bytesView(_ o: borrowing some PyRef & ~Copyable) -> UnsafeRawBufferPointer? {
        var p: UnsafeMutablePointer<CChar>? = nil
        var n = 0
        if PyBytes_AsStringAndSize(o.pointer, &p, &n) != 0 { return nil }
        return UnsafeRawBufferPointer(start: p, count: n)
    }

    // MARK: Types

    /// `Py_TYPE(o)`: the second word of every object header (refcount, then type) in the
    /// standard (non-debug, GIL) builds of 3.9-3.13.
    @inline(__always) private func objectType(_ o: borrowing some PyRef & ~Copyable) -> RawObject {
        o.pointer.load(fromByteOffset: MemoryLayout<Int>.size, as: RawObject.self)
    }
    @inline(__always) func isExactBytes(_ o: borrowing some PyRef & ~Copyable) -> Bool { objectType(o) == bytesType }
    @inline(__always) func isExactUnicode(_ o: borrowing some PyRef & ~Copyable) -> Bool { objectType(o) == unicodeType }
    @inline(__always) func isExactList(_ o: borrowing some PyRef & ~Copyable) -> Bool { objectType(o) == listType }
    @inline(__always) func isExactTuple(_ o: borrowing some PyRef & ~Copyable) -> Bool { objectType(o) == tupleType }
    /// `bytes` or a subclass of it (false and no error otherwise).
    @inline(__always) func isBytes(_ o: borrowing some PyRef & ~Copyable) -> Bool {
        if isExactBytes(o) { return true }
        if PyObject_IsInstance(o.pointer, bytesType) == 1 { return true }
        PyErr_Clear()
        return false
    }
    /// `str` or a subclass of it (false and no error otherwise).
    @inline(__always) func isUnicode(_ o: borrowing some PyRef & ~Copyable) -> Bool {
        if isExactUnicode(o) { return true }
        if PyObject_IsInstance(o.pointer, unicodeType) == 1 { return true }
        PyErr_Clear()
        return false
    }

    // MARK: Errors

    @inline(__always) func errorOccurred() -> Bool { PyErr_Occurred() != nil }
    @inline(__always) func clearError() { PyErr_Clear() }
    /// Prints the pending exception with its traceback to stderr and clears it.
    func printError() { PyErr_PrintEx(0) }
    func setError(_ type: borrowing some PyRef & ~Copyable, _ message: String) {
        message.withCString { PyErr_SetString(type.pointer, $0) }
    }
    /// Raises an exception again from its type, value and traceback (new references to
    /// them are handed to the interpreter).
    func restoreError(_ type: PyBorrowed?, _ value: PyBorrowed?, _ traceback: PyBorrowed?) {
        func retained(_ o: PyBorrowed?) -> RawObject? { o.map { PyOwned(retaining: $0).transfer() } }
        PyErr_Restore(retained(type), retained(value), retained(traceback))
    }
}

public struct PythonLoadError: Error, CustomStringConvertible {
    public let message: String
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// A literal as a NUL-terminated C string. Passing a `String` to a C function instead makes
/// a heap copy of a short one (15 bytes or less) on every call, through the standard
/// library's string code; a worker should run none of that (docs/architecture.md, "Memory
/// of a worker").
@inline(__always) func cstr(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}
