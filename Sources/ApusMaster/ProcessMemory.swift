#if canImport(Glibc)
import Glibc
#endif

/// A process's memory, from /proc/PID/statm (its first two fields, virtual and resident
/// size in pages): one small read, cheap enough for the master to do for every worker each
/// second.
enum ProcessMemory {
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Resident bytes of `pid`; nil when it is gone or /proc cannot be read.
    static func residentBytes(_ pid: pid_t) -> Int? {
        sizes(pid)?.resident
    }

    /// Virtual and resident bytes of `pid` (uWSGI's `vsz` and `rss`); nil when it is gone.
    static func sizes(_ pid: pid_t) -> (virtual: Int, resident: Int)? {
        let fd = open("/proc/\(pid)/statm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 128)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        guard let pages = parseStatmSizes(buf[0..<n]) else { return nil }
        return (pages.virtual * pageSize, pages.resident * pageSize)
    }

    /// The resident pages in a statm line ("size resident shared text lib data dt").
    static func parseStatm(_ bytes: ArraySlice<UInt8>) -> Int? {
        parseStatmSizes(bytes)?.resident
    }

    /// The virtual and resident pages in a statm line.
    static func parseStatmSizes(_ bytes: ArraySlice<UInt8>) -> (virtual: Int, resident: Int)? {
        let fields = bytes.split(separator: UInt8(ascii: " "))
        guard fields.count >= 2,
              let virtual = Int(String(decoding: fields[fields.startIndex], as: UTF8.self)),
              let resident = Int(String(decoding: fields[fields.startIndex + 1], as: UTF8.self)) else { return nil }
        return (virtual, resident)
    }
}
