#if canImport(Glibc)
import Glibc
#endif

/// One line per request in the common log format, buffered per loop iteration and written
/// to stderr in one `write`.
final class AccessLog: @unchecked Sendable {
    private var pending: [UInt8] = []
    private var lock = pthread_mutex_t()
    private var second = -1
    private var stamp = ""

    init() { pthread_mutex_init(&lock, nil) }

    func record(conn: Connection, status: Int, bytes: Int, seconds: Double) {
        let head = conn.head
        let raw = UnsafeRawBufferPointer(start: conn.buffer + conn.start, count: conn.end - conn.start)
        let method = String(decoding: raw[head.method], as: UTF8.self)
        let target = String(decoding: raw[head.target], as: UTF8.self)
        let version = head.versionMinor == 0 ? "HTTP/1.0" : "HTTP/1.1"
        pthread_mutex_lock(&lock)
        let line = "\(conn.peerAddress.isEmpty ? "-" : conn.peerAddress) - - [\(timestamp())] \"\(method) \(target) \(version)\" \(status) \(bytes == 0 ? "-" : String(bytes))\n"
        pending.append(contentsOf: line.utf8)
        let big = pending.count > 32768
        pthread_mutex_unlock(&lock)
        if big { flush() }
    }

    func flush() {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if pending.isEmpty { return }
        _ = pending.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        pending.removeAll(keepingCapacity: true)
    }

    /// "26/Nov/2026:22:10:01 +0000"
    private func timestamp() -> String {
        var t = time(nil)
        if Int(t) == second { return stamp }
        second = Int(t)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        stamp = "\(two(tmv.tm_mday))/\(months[Int(tmv.tm_mon)])/\(tmv.tm_year + 1900):\(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec)) +0000"
        return stamp
    }
}
