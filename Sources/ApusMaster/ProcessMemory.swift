#if canImport(Glibc)
import Glibc
#endif

/// A process's resident memory, from /proc/PID/statm (its second field, in pages): one
/// small read, cheap enough for the master to do for every worker each second.
enum ProcessMemory {
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// Resident bytes of `pid`; nil when it is gone or /proc cannot be read.
    static func residentBytes(_ pid: pid_t) -> Int? {
        let fd = open("/proc/\(pid)/statm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var buf = [UInt8](repeating: 0, count: 128)
        let n = buf.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return nil }
        return parseStatm(buf[0..<n]).map { $0 * pageSize }
    }

    /// The resident pages in a statm line ("size resident shared text lib data dt").
    static func parseStatm(_ bytes: ArraySlice<UInt8>) -> Int? {
        let fields = bytes.split(separator: UInt8(ascii: " "))
        guard fields.count >= 2 else { return nil }
        return Int(String(decoding: fields[fields.startIndex + 1], as: UTF8.self))
    }
}
