#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusObserve
import ApusSys

// The ways to steer a running master other than signals: the master FIFO, the touch-reload
// files, the pidfile and the log file. Each opens, reads or writes its file and reports
// what it found; what that means (which reload, which command) is decided in Master.swift.

/// uWSGI's master FIFO: a named pipe whose every byte is a command.
struct MasterFIFO {
    let path: String
    let fd: Int32

    /// Creates the FIFO if there is none and opens it. Throws a line for the log.
    init(path: String) throws(ControlFailure) {
        var st = stat()
        let exists = lstat(path, &st) == 0
        if exists && (st.st_mode & S_IFMT) != S_IFIFO {
            throw ControlFailure("--master-fifo: \(path) exists and is not a FIFO")
        }
        if !exists, case let .failed(e) = Sys.call({ mkfifo(path, 0o600) }) {
            throw ControlFailure("--master-fifo: cannot create \(path): \(Sys.describe(e))")
        }
        // Read-write, so the FIFO never reports end-of-file when a writer goes away.
        switch Sys.call({ open(path, O_RDWR | O_NONBLOCK | O_CLOEXEC) }) {
        case let .done(fd): self.fd = Int32(fd)
        case let .failed(e): throw ControlFailure("--master-fifo: cannot open \(path): \(Sys.describe(e))")
        case .wouldBlock: throw ControlFailure("--master-fifo: cannot open \(path): \(Sys.describe(EAGAIN))")
        }
        self.path = path
    }

    /// The FIFO a master image that upgraded in place was handed (close-on-exec again).
    init(adopting fd: Int32, path: String) {
        _ = apus_set_cloexec(fd, 1)
        self.fd = fd
        self.path = path
    }

    /// The command bytes written since the last call.
    func commands() -> [UInt8] {
        var out: [UInt8] = []
        var buf = [UInt8](repeating: 0, count: 256)
        while case let .done(n) = Sys.call({ read(fd, &buf, buf.count) }), n > 0 {
            out += buf[0..<n]
        }
        return out
    }

    /// Closes the FIFO and removes it.
    func remove() {
        Sys.close(fd)
        removeFile(path)
    }
}

/// The touch-reload files: a file whose modification time changed (or that appeared)
/// asks for its reload. Looked at once a second.
struct TouchFiles {
    /// Modification time of each file when last looked at (nil: it did not exist).
    private var times: [String: timespec?] = [:]
    private var lastCheck = 0.0

    init(_ files: [String]) {
        for file in files { times[file] = modificationTime(file) }
    }

    /// Of `files` (each with what touching it asks for), those touched since the last
    /// look; nothing when no file was watched at start or the last look is under a second old.
    mutating func touched<Kind>(_ files: [(String?, Kind)], now: Double) -> [(String, Kind)] {
        guard !times.isEmpty, now - lastCheck >= 1 else { return [] }
        lastCheck = now
        var out: [(String, Kind)] = []
        for case let (file?, kind) in files {
            let m = modificationTime(file)
            let known = times[file] ?? nil
            guard !sameTime(known, m) else { continue }
            times[file] = m
            if m != nil { out.append((file, kind)) }
        }
        return out
    }
}

/// The file holding the master's pid, for scripts and service managers.
enum Pidfile {
    /// Writes this process's pid. A file that already holds it is left alone: the image an
    /// upgrade in place starts has the same pid, and after `--uid` may no longer be
    /// allowed to write a file root made.
    static func write(_ path: String) throws(ControlFailure) {
        if holdsOwnPid(path) { return }
        guard let f = fopen(path, "w") else {
            throw ControlFailure("--pidfile: cannot write \(path): \(Sys.describe(errno))")
        }
        let written = fputs("\(getpid())\n", f) >= 0
        let closed = fclose(f) == 0
        if !written || !closed {
            throw ControlFailure("--pidfile: cannot write \(path): \(Sys.describe(errno))")
        }
    }

    static func remove(_ path: String) { removeFile(path) }

    private static func holdsOwnPid(_ path: String) -> Bool {
        guard case let .done(n) = Sys.call({ open(path, O_RDONLY | O_CLOEXEC) }) else { return false }
        let fd = Int32(n)
        defer { Sys.close(fd) }
        var buf = [UInt8](repeating: 0, count: 32)
        guard case let .done(count) = Sys.call({ read(fd, &buf, buf.count) }) else { return false }
        return buf.prefix(count).elementsEqual("\(getpid())\n".utf8)
    }
}

/// --log-file: the master's stderr, which the workers inherit.
enum LogFile {
    /// Opens (or creates) `path` for appending and makes it stderr. Returns errno on failure.
    static func reopen(_ path: String) -> Int32? {
        let fd: Int32
        switch Sys.call({ open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644) }) {
        case let .done(n): fd = Int32(n)
        case let .failed(e): return e
        case .wouldBlock: return EAGAIN
        }
        defer { Sys.close(fd) }
        if case let .failed(e) = Sys.call({ dup2(fd, 2) }) { return e }
        return nil
    }
}

extension LogFile {
    /// Makes sure `path` ("-" is stdout) can be opened for appending, creating it, before
    /// the workers open it themselves. Returns errno on failure.
    static func create(_ path: String) -> Int32? {
        if path == AccessLogDestination.stdout { return nil }
        switch Sys.call({ open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0o644) }) {
        case let .done(n): Sys.close(Int32(n)); return nil
        case let .failed(e): return e
        case .wouldBlock: return EAGAIN
        }
    }
}

struct ControlFailure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}

/// Removes a file the master made (FIFO, pidfile, unix socket). A file already gone is
/// fine; any other failure is logged and leaves it behind.
func removeFile(_ path: String) {
    switch Sys.call({ unlink(path) }) {
    case .done, .wouldBlock, .failed(ENOENT): break
    case let .failed(e): Log.warning("cannot remove \(path): \(Sys.describe(e))")
    }
}

private func modificationTime(_ path: String) -> timespec? {
    var st = stat()
    guard stat(path, &st) == 0 else { return nil }
    return st.st_mtim
}

private func sameTime(_ a: timespec?, _ b: timespec?) -> Bool {
    switch (a, b) {
    case (nil, nil): return true
    case let (x?, y?): return x.tv_sec == y.tv_sec && x.tv_nsec == y.tv_nsec
    default: return false
    }
}
