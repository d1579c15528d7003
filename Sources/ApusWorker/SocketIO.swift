#if canImport(Glibc)
import Glibc
#endif

/// Blocking-style I/O over a non-blocking socket, for the app side: waits with poll when
/// the socket is full or empty, up to a timeout. `waiting` runs around each wait: the app
/// side passes one that lets go of the GIL while it waits.
enum SocketIO {
    typealias Waiting = (_ wait: () -> Bool) -> Bool

    nonisolated(unsafe) static let justWait: Waiting = { $0() }

    /// Writes every byte, or returns false (peer gone, or no progress for `timeout` s).
    static func writeAll(_ fd: Int32, _ data: UnsafeRawBufferPointer, timeout: Double, waiting: Waiting = justWait) -> Bool {
        var off = 0
        while off < data.count {
            let n = send(fd, data.baseAddress! + off, data.count - off, Int32(MSG_NOSIGNAL))
            if n > 0 {
                off += n
                continue
            }
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) {
                if !waiting({ wait(fd, events: Int16(POLLOUT), timeout: timeout) }) { return false }
                continue
            }
            return false
        }
        return true
    }

    /// Reads some bytes into `into`; 0 at end of stream, -1 on error or timeout.
    static func readSome(_ fd: Int32, _ into: UnsafeMutableRawBufferPointer, timeout: Double) -> Int {
        while true {
            let n = recv(fd, into.baseAddress, into.count, 0)
            if n >= 0 { return n }
            if errno == EINTR { continue }
            if errno == EAGAIN || errno == EWOULDBLOCK {
                if !wait(fd, events: Int16(POLLIN), timeout: timeout) { return -1 }
                continue
            }
            return -1
        }
    }

    static func wait(_ fd: Int32, events: Int16, timeout: Double) -> Bool {
        var p = pollfd(fd: fd, events: events, revents: 0)
        while true {
            let r = poll(&p, 1, Int32(timeout * 1000))
            if r < 0 && errno == EINTR { continue }
            return r > 0 && (p.revents & (Int16(POLLERR) | Int16(POLLNVAL))) == 0
        }
    }
}
