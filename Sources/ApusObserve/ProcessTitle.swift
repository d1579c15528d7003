#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// Process titles as `ps -o args` and /proc/PID/cmdline show them ("apus: master [app]",
/// "apus: worker 3 gen 7 busy GET /x"), written over the process's own argument strings:
/// Linux shows whatever bytes lie there. The argument strings and the environment strings
/// after them are one contiguous area; `prepare` measures it and moves the environment to
/// the heap first (so getenv, setenv and an upgrade's execve keep working), `enable` blanks
/// it, then each title is written into it (uWSGI's uwsgi_set_processname and the
/// setproctitle package do the same). Without `enable` the command line is left as it was.
public enum ProcessTitle {
    /// The area once `enable` ran; an empty area (titles off) takes every write as a no-op.
    nonisolated(unsafe) public private(set) static var area = TitleArea(base: nil, capacity: 0)
    nonisolated(unsafe) private static var measured: (UnsafeMutablePointer<UInt8>, Int)? = nil

    /// At start, before anything else: reads the arguments once (`CommandLine.arguments`
    /// keeps its copy), measures the area, and copies every environment string to the heap
    /// with a new `environ` array pointing at the copies. Nothing is overwritten yet.
    public static func prepare() {
        _ = CommandLine.arguments
        let argc = Int(CommandLine.argc)
        let argv = CommandLine.unsafeArgv
        guard argc > 0, let first = argv[0] else { return }
        var end = first + strlen(first) + 1
        for i in 1..<argc {
            guard let arg = argv[i], arg == end else { break }
            end = arg + strlen(arg) + 1
        }
        var count = 0
        while environ[count] != nil { count += 1 }  // the kernel always passes an array
        let copy = UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>.allocate(capacity: count + 1)
        for i in 0..<count {
            let entry = environ[i]!
            if entry == end { end = entry + strlen(entry) + 1 }
            copy[i] = strdup(entry)
        }
        copy[count] = nil
        apus_set_environ(copy)
        measured = (UnsafeMutableRawPointer(first).assumingMemoryBound(to: UInt8.self), end - first)
    }

    /// Titles on: the area is blanked (NULs) and taken over. Only after `prepare`.
    public static func enable() {
        guard let (base, capacity) = measured, area.base == nil else { return }
        base.initialize(repeating: 0, count: capacity)
        area = TitleArea(base: base, capacity: capacity)
    }

    /// Sets the whole title (not for the request path: it takes a String).
    public static func set(_ title: String) {
        var bytes = Array(title.utf8)
        bytes.withUnsafeMutableBytes { area.end(at: area.put(UnsafeRawBufferPointer($0), at: 0)) }
    }

    /// "PREFIXapus: " then `words`: the start every Apus title shares (`prefix` is
    /// `--procname-prefix`, written as given, as uWSGI does).
    public static func compose(prefix: String, _ words: String) -> String {
        prefix + "apus: " + words
    }
}

/// A title's bytes: `capacity` bytes at `base`, the last always NUL. Writes are plain
/// stores, clipped to the area (a longer title is cut), so the request path can update a
/// title without a system call or an allocation. One writer at a time.
public struct TitleArea {
    public let base: UnsafeMutablePointer<UInt8>?
    public let capacity: Int
    /// The length of the title written last, so a shorter one can blank the rest.
    private let written: UnsafeMutablePointer<Int>

    public init(base: UnsafeMutablePointer<UInt8>?, capacity: Int) {
        self.base = base
        self.capacity = base == nil ? 0 : capacity
        written = .allocate(capacity: 1)
        written.initialize(to: 0)
    }

    /// Bytes a title can hold (one is kept for the final NUL).
    @inlinable public var room: Int { max(0, capacity - 1) }

    /// Writes `bytes` at `offset`, as many as fit; returns the offset after them.
    @inline(__always)
    public func put(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Int {
        guard let base else { return offset }
        var n = offset
        for b in bytes where n < room {
            base[n] = b
            n += 1
        }
        return n
    }

    /// Writes one byte at `offset` if it fits; returns the offset after it.
    @inline(__always)
    public func put(_ byte: UInt8, at offset: Int) -> Int {
        guard let base, offset < room else { return offset }
        base[offset] = byte
        return offset + 1
    }

    /// Writes `value` in decimal at `offset`; returns the offset after it.
    public func putDecimal(_ value: Int, at offset: Int) -> Int {
        var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
        return withUnsafeMutableBytes(of: &digits) { buf in
            var v = value.magnitude
            var i = buf.count
            repeat {
                i -= 1
                buf[i] = UInt8(ascii: "0") + UInt8(v % 10)
                v /= 10
            } while v > 0
            var n = offset
            if value < 0 { n = put(UInt8(ascii: "-"), at: n) }
            return put(UnsafeRawBufferPointer(rebasing: buf[i...]), at: n)
        }
    }

    /// The title ends at `offset`: NULs from there over what the last title had beyond it.
    @inline(__always)
    public func end(at offset: Int) {
        guard let base else { return }
        let last = written.pointee
        var n = offset
        while n < last {
            base[n] = 0
            n += 1
        }
        if offset < capacity { base[offset] = 0 }
        written.pointee = offset
    }

    /// The title as it stands (for tests and logs).
    public var text: String {
        guard let base else { return "" }
        return String(decoding: UnsafeBufferPointer(start: base, count: written.pointee), as: UTF8.self)
    }
}
