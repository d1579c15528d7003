// The two kinds of Python object reference, and the only place in Apus that changes a
// reference count.
//
// Ownership rules:
// - A C API function that returns a new reference gives a `PyOwned`; one that returns a
//   borrowed reference gives a `PyBorrowed` (see the typed functions in CPython.swift).
// - A `PyOwned` releases its reference when it goes away (its `deinit`), or hands it over
//   with `transfer()` (to a C function that steals it, or as the result of a function
//   Python calls) or `keepForever()` (objects kept until the process exits).
// - Releasing needs the GIL. A `PyOwned` therefore lives only in local variables of code
//   that runs with the GIL held, and in `WSGICaller`'s per-request fields, which `call`
//   empties before it returns. Whatever outlives a call, or sits in an object that may be
//   freed without the GIL (a listener, a worker), is a `PyBorrowed` made with
//   `keepForever()`: it is never released, so nothing is ever released without the GIL.
// - A `PyBorrowed` is valid while its owner keeps the object: a container it was read from,
//   the caller of a function Python called, or the process (`keepForever()`).
// - Both types are internal to ApusPython: no other target sees a Python object.

/// An owned or a borrowed reference: what the typed C API functions take. They take it
/// `borrowing`, so an owned temporary passed to one lives until the call returns.
protocol PyRef: ~Copyable {
    /// The `PyObject *`, read only by the typed C API functions (CPython.swift).
    var pointer: UnsafeMutableRawPointer { get }
}

/// A `PyObject *` not owned here: never released through this value.
struct PyBorrowed: PyRef, Equatable {
    let pointer: UnsafeMutableRawPointer
}

/// A strong reference to a Python object, released when it goes away. Noncopyable, so it is
/// released exactly once and costs no allocation or ARC traffic.
struct PyOwned: PyRef, ~Copyable {
    let pointer: UnsafeMutableRawPointer

    /// Takes over a new reference returned by the C API (only CPython.swift makes these).
    @inline(__always) init(stealing pointer: UnsafeMutableRawPointer) {
        self.pointer = pointer
    }

    /// A reference of our own to a borrowed object.
    @inline(__always) init(retaining object: PyBorrowed) {
        refcounts.increment(object.pointer)
        pointer = object.pointer
    }

    /// The object, borrowed from this owner: valid while this value lives. Only on a named
    /// value: a temporary is released at the end of its own expression, before the borrowed
    /// reference is used (pass the temporary itself to a function taking `PyRef` instead).
    @inline(__always) var borrow: PyBorrowed { PyBorrowed(pointer: pointer) }

    /// Hands the reference to C code that takes it over (a stealing call, or the result of
    /// a C function called by Python).
    @inline(__always) consuming func transfer() -> UnsafeMutableRawPointer {
        let p = pointer
        discard self
        return p
    }

    /// Keeps the object until the process exits: the reference is never released.
    @inline(__always) consuming func keepForever() -> PyBorrowed {
        let p = pointer
        discard self
        return PyBorrowed(pointer: p)
    }

    @inline(__always) deinit { refcounts.decrement(pointer) }
}

/// `Py_IncRef` and `Py_DecRef` of the loaded library, set once by `CPythonAPI.init` before
/// any object exists. Raw pointers with a zero initial value: reading them costs a load,
/// not a lazy-initialisation check.
nonisolated(unsafe) var refcounts = RefcountFunctions()

struct RefcountFunctions {
    fileprivate(set) var incRef: UnsafeRawPointer? = nil
    fileprivate(set) var decRef: UnsafeRawPointer? = nil

    typealias Fn = @convention(c) (UnsafeMutableRawPointer?) -> Void

    mutating func set(incRef: UnsafeRawPointer, decRef: UnsafeRawPointer) {
        self.incRef = incRef
        self.decRef = decRef
    }

    @inline(__always) func increment(_ p: UnsafeMutableRawPointer) {
        unsafeBitCast(incRef.unsafelyUnwrapped, to: Fn.self)(p)
    }

    @inline(__always) func decrement(_ p: UnsafeMutableRawPointer) {
        unsafeBitCast(decRef.unsafelyUnwrapped, to: Fn.self)(p)
    }
}
