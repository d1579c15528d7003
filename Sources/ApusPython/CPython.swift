#if canImport(Glibc)
import Glibc
#endif

/// A `PyObject *`. Ownership is tracked by hand, as in C: every function that returns a new
/// reference says so, and every owner calls `py.decref` once.
public typealias PyRef = UnsafeMutableRawPointer

/// The CPython C API functions Apus uses, resolved with `dlsym` from the `libpython3.X.so`
/// chosen at run time. Only real exported functions (never macros), so one binary works
/// with every CPython from 3.9 to 3.13 and needs no Python headers to build.
public struct CPythonAPI: @unchecked Sendable {
    typealias Fn<T> = T
    // Life cycle, threads, fork.
    let Py_InitializeEx: @convention(c) (Int32) -> Void
    let Py_SetProgramName: @convention(c) (UnsafeRawPointer) -> Void
    let Py_DecodeLocale: @convention(c) (UnsafePointer<CChar>, UnsafeMutablePointer<Int>?) -> UnsafeMutableRawPointer?
    let PyEval_SaveThread: @convention(c) () -> UnsafeMutableRawPointer?
    let PyEval_RestoreThread: @convention(c) (UnsafeMutableRawPointer?) -> Void
    let PyGILState_Ensure: @convention(c) () -> Int32
    let PyGILState_Release: @convention(c) (Int32) -> Void
    let PyOS_BeforeFork: @convention(c) () -> Void
    let PyOS_AfterFork_Child: @convention(c) () -> Void
    let PyOS_AfterFork_Parent: @convention(c) () -> Void
    // Modules and attributes.
    let PyImport_ImportModule: @convention(c) (UnsafePointer<CChar>) -> PyRef?
    let PyImport_AddModule: @convention(c) (UnsafePointer<CChar>) -> PyRef?
    let PyModule_GetDict: @convention(c) (PyRef) -> PyRef?
    let PyObject_GetAttrString: @convention(c) (PyRef, UnsafePointer<CChar>) -> PyRef?
    let PyObject_SetAttrString: @convention(c) (PyRef, UnsafePointer<CChar>, PyRef?) -> Int32
    let PyObject_Call: @convention(c) (PyRef, PyRef, PyRef?) -> PyRef?
    let PyObject_IsTrue: @convention(c) (PyRef) -> Int32
    let PyObject_IsInstance: @convention(c) (PyRef, PyRef) -> Int32
    let PyObject_Str: @convention(c) (PyRef) -> PyRef?
    let PyObject_GetIter: @convention(c) (PyRef) -> PyRef?
    let PyIter_Next: @convention(c) (PyRef) -> PyRef?
    let PyRun_String: @convention(c) (UnsafePointer<CChar>, Int32, PyRef, PyRef) -> PyRef?
    let PyCFunction_NewEx: @convention(c) (UnsafeMutableRawPointer, PyRef?, PyRef?) -> PyRef?
    let Py_IncRef: @convention(c) (PyRef?) -> Void
    let Py_DecRef: @convention(c) (PyRef?) -> Void
    let PySys_GetObject: @convention(c) (UnsafePointer<CChar>) -> PyRef?
    // Containers.
    let PyTuple_New: @convention(c) (Int) -> PyRef?
    let PyTuple_SetItem: @convention(c) (PyRef, Int, PyRef?) -> Int32
    let PyTuple_GetItem: @convention(c) (PyRef, Int) -> PyRef?
    let PyTuple_Size: @convention(c) (PyRef) -> Int
    let PyList_New: @convention(c) (Int) -> PyRef?
    let PyList_Append: @convention(c) (PyRef, PyRef) -> Int32
    let PyList_Insert: @convention(c) (PyRef, Int, PyRef) -> Int32
    let PyList_GetItem: @convention(c) (PyRef, Int) -> PyRef?
    let PyList_Size: @convention(c) (PyRef) -> Int
    let PyDict_New: @convention(c) () -> PyRef?
    let PyDict_Copy: @convention(c) (PyRef) -> PyRef?
    let PyDict_SetItem: @convention(c) (PyRef, PyRef, PyRef) -> Int32
    let PyDict_SetItemString: @convention(c) (PyRef, UnsafePointer<CChar>, PyRef) -> Int32
    let PyDict_GetItemString: @convention(c) (PyRef, UnsafePointer<CChar>) -> PyRef?
    let PyDict_GetItem: @convention(c) (PyRef, PyRef) -> PyRef?
    let PyDict_Size: @convention(c) (PyRef) -> Int
    let PySequence_GetItem: @convention(c) (PyRef, Int) -> PyRef?
    let PySequence_Size: @convention(c) (PyRef) -> Int
    // Scalars.
    let PyUnicode_FromStringAndSize: @convention(c) (UnsafePointer<CChar>?, Int) -> PyRef?
    let PyUnicode_DecodeLatin1: @convention(c) (UnsafePointer<CChar>?, Int, UnsafePointer<CChar>?) -> PyRef?
    let PyUnicode_AsUTF8AndSize: @convention(c) (PyRef, UnsafeMutablePointer<Int>?) -> UnsafePointer<CChar>?
    let PyUnicode_InternFromString: @convention(c) (UnsafePointer<CChar>) -> PyRef?
    let PyBytes_FromStringAndSize: @convention(c) (UnsafePointer<CChar>?, Int) -> PyRef?
    let PyBytes_AsStringAndSize: @convention(c) (PyRef, UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>, UnsafeMutablePointer<Int>) -> Int32
    let PyLong_FromLong: @convention(c) (Int) -> PyRef?
    let PyLong_AsLong: @convention(c) (PyRef) -> Int
    let PyBool_FromLong: @convention(c) (Int) -> PyRef?
    let PyCapsule_New: @convention(c) (UnsafeMutableRawPointer, UnsafePointer<CChar>?, UnsafeRawPointer?) -> PyRef?
    let PyCapsule_GetPointer: @convention(c) (PyRef, UnsafePointer<CChar>?) -> UnsafeMutableRawPointer?
    // Errors.
    let PyErr_Occurred: @convention(c) () -> PyRef?
    let PyErr_Fetch: @convention(c) (UnsafeMutablePointer<PyRef?>, UnsafeMutablePointer<PyRef?>, UnsafeMutablePointer<PyRef?>) -> Void
    let PyErr_Restore: @convention(c) (PyRef?, PyRef?, PyRef?) -> Void
    let PyErr_Clear: @convention(c) () -> Void
    let PyErr_PrintEx: @convention(c) (Int32) -> Void
    let PyErr_SetString: @convention(c) (PyRef, UnsafePointer<CChar>) -> Void
    let PyErr_ExceptionMatches: @convention(c) (PyRef) -> Int32
    // Data symbols.
    public let none: PyRef
    public let trueObject: PyRef
    public let falseObject: PyRef
    let bytesType: UnsafeMutableRawPointer
    let unicodeType: UnsafeMutableRawPointer
    let listType: UnsafeMutableRawPointer
    let tupleType: UnsafeMutableRawPointer
    let excRuntimeError: PyRef
    let excTypeError: PyRef
    let excValueError: PyRef
    let excAssertionError: PyRef
    let excOSError: PyRef

    /// Opens `libpython` and resolves every symbol. A missing one is a `PythonLoadError`
    /// naming it: nothing is half-loaded.
    public init(libraryPath: String) throws(PythonLoadError) {
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
        func exc(_ name: StaticString) -> PyRef {
            // PyExc_* are `PyObject *` variables: the symbol is the address of the pointer.
            let slot = data(name)
            if slot == Self.unresolved { return slot }
            return slot.load(as: PyRef.self)
        }
        Py_InitializeEx = sym("Py_InitializeEx")
        Py_SetProgramName = sym("Py_SetProgramName")
        Py_DecodeLocale = sym("Py_DecodeLocale")
        PyEval_SaveThread = sym("PyEval_SaveThread")
        PyEval_RestoreThread = sym("PyEval_RestoreThread")
        PyGILState_Ensure = sym("PyGILState_Ensure")
        PyGILState_Release = sym("PyGILState_Release")
        PyOS_BeforeFork = sym("PyOS_BeforeFork")
        PyOS_AfterFork_Child = sym("PyOS_AfterFork_Child")
        PyOS_AfterFork_Parent = sym("PyOS_AfterFork_Parent")
        PyImport_ImportModule = sym("PyImport_ImportModule")
        PyImport_AddModule = sym("PyImport_AddModule")
        PyModule_GetDict = sym("PyModule_GetDict")
        PyObject_GetAttrString = sym("PyObject_GetAttrString")
        PyObject_SetAttrString = sym("PyObject_SetAttrString")
        PyObject_Call = sym("PyObject_Call")
        PyObject_IsTrue = sym("PyObject_IsTrue")
        PyObject_IsInstance = sym("PyObject_IsInstance")
        PyObject_Str = sym("PyObject_Str")
        PyObject_GetIter = sym("PyObject_GetIter")
        PyIter_Next = sym("PyIter_Next")
        PyRun_String = sym("PyRun_String")
        PyCFunction_NewEx = sym("PyCFunction_NewEx")
        Py_IncRef = sym("Py_IncRef")
        Py_DecRef = sym("Py_DecRef")
        PySys_GetObject = sym("PySys_GetObject")
        PyTuple_New = sym("PyTuple_New")
        PyTuple_SetItem = sym("PyTuple_SetItem")
        PyTuple_GetItem = sym("PyTuple_GetItem")
        PyTuple_Size = sym("PyTuple_Size")
        PyList_New = sym("PyList_New")
        PyList_Append = sym("PyList_Append")
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
        PyBool_FromLong = sym("PyBool_FromLong")
        PyCapsule_New = sym("PyCapsule_New")
        PyCapsule_GetPointer = sym("PyCapsule_GetPointer")
        PyErr_Occurred = sym("PyErr_Occurred")
        PyErr_Fetch = sym("PyErr_Fetch")
        PyErr_Restore = sym("PyErr_Restore")
        PyErr_Clear = sym("PyErr_Clear")
        PyErr_PrintEx = sym("PyErr_PrintEx")
        PyErr_SetString = sym("PyErr_SetString")
        PyErr_ExceptionMatches = sym("PyErr_ExceptionMatches")
        none = data("_Py_NoneStruct")
        trueObject = data("_Py_TrueStruct")
        falseObject = data("_Py_FalseStruct")
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
    }

    nonisolated(unsafe) private static let unresolved = UnsafeMutableRawPointer(bitPattern: 0xdead)!

    // MARK: Small helpers over the table

    @inline(__always) public func incref(_ o: PyRef?) { Py_IncRef(o) }
    @inline(__always) public func decref(_ o: PyRef?) { Py_DecRef(o) }

    /// `Py_TYPE(o)`: the second word of every object header (refcount, then type) in the
    /// standard (non-debug, GIL) builds of 3.9-3.13.
    @inline(__always) func type(of o: PyRef) -> UnsafeMutableRawPointer {
        o.load(fromByteOffset: MemoryLayout<Int>.size, as: UnsafeMutableRawPointer.self)
    }
    @inline(__always) func isExactBytes(_ o: PyRef) -> Bool { type(of: o) == bytesType }
    @inline(__always) func isExactUnicode(_ o: PyRef) -> Bool { type(of: o) == unicodeType }
    @inline(__always) func isExactList(_ o: PyRef) -> Bool { type(of: o) == listType }
    @inline(__always) func isExactTuple(_ o: PyRef) -> Bool { type(of: o) == tupleType }

    /// A new `str` reference holding `s`.
    public func string(_ s: String) -> PyRef {
        var s = s
        return s.withUTF8 { b in
            b.withMemoryRebound(to: CChar.self) { PyUnicode_FromStringAndSize($0.baseAddress, $0.count)! }
        }
    }

    /// A new `str` decoded as latin-1 from raw bytes (PEP 3333's "native string").
    @inline(__always) public func latin1(_ b: UnsafeRawBufferPointer) -> PyRef {
        PyUnicode_DecodeLatin1(b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count, nil)!
    }

    @inline(__always) public func bytes(_ b: UnsafeRawBufferPointer) -> PyRef {
        PyBytes_FromStringAndSize(b.baseAddress?.assumingMemoryBound(to: CChar.self), b.count)!
    }

    /// An interned `str` that lives for the whole process (environ keys).
    public func interned(_ s: StaticString) -> PyRef { PyUnicode_InternFromString(cstr(s))! }

    /// The UTF-8 bytes of a `str` object (cached inside the object; valid while it lives).
    @inline(__always) func utf8(_ o: PyRef) -> UnsafeRawBufferPointer? {
        var n = 0
        guard let p = PyUnicode_AsUTF8AndSize(o, &n) else { return nil }
        return UnsafeRawBufferPointer(start: p, count: n)
    }

    /// The bytes of a `bytes` object (valid while it lives).
    @inline(__always) func bytesView(_ o: PyRef) -> UnsafeRawBufferPointer? {
        var p: UnsafeMutablePointer<CChar>? = nil
        var n = 0
        if PyBytes_AsStringAndSize(o, &p, &n) != 0 { return nil }
        return UnsafeRawBufferPointer(start: p, count: n)
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
@inline(__always) public func cstr(_ s: StaticString) -> UnsafePointer<CChar> {
    UnsafeRawPointer(s.utf8Start).assumingMemoryBound(to: CChar.self)
}
