#if canImport(Glibc)
import Glibc
#endif

/// The libpython of every live generation, mapped into the master but never called: the
/// master runs no Python. Workers (and preloaders) are forked with the library already
/// loaded and relocated, so each one skips reading its relocation and symbol tables (about
/// 0.8 MiB of RSS per worker for Python 3.11) and binding its imports; the `dlopen` a
/// worker does then finds it loaded. This is what uWSGI gets by linking libpython.
struct MappedLibraries {
    private var handles: [String: UnsafeMutableRawPointer] = [:]

    /// Maps the libraries in `paths` that are not mapped yet and unmaps those no longer in
    /// it. A library that fails to load is left to the worker, which reports why.
    mutating func keep(_ paths: Set<String>) {
        for path in paths where handles[path] == nil {
            // Local: the master never looks symbols up in it; the worker's RTLD_GLOBAL dlopen
            // makes them global there. Now: bound once here, not in every worker.
            if let handle = dlopen(path, RTLD_NOW | RTLD_LOCAL) { handles[path] = handle }
        }
        for (path, handle) in handles where !paths.contains(path) {
            // dlclose fails only for a handle dlopen did not return.
            let closed = dlclose(handle)
            precondition(closed == 0, "dlclose(\(path)) failed")
            handles[path] = nil
        }
    }
}
