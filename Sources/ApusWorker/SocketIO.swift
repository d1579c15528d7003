#if canImport(Glibc)
import Glibc
#endif
import ApusSys

/// Blocking-style I/O over a non-blocking socket, for the app side: waits with poll when
/// the socket is full, up to a timeout. `waiting` runs around each wait: the app
/// side passes one that lets go of the GIL while it waits.
enum SocketIO {
    typealias Waiting = (_ wait: () -> Bool) -> Bool

    nonisolated(unsafe) static let justWait: Waiting = { $0() }

    /// Writes every byte, or returns false (peer gone, or no progress for `timeout` s).
    static func writeAll(_ fd: Int32, _ data: UnsafeRawBufferPointer, timeout: Double, waiting: Waiting = justWait) -> Bool {
        var off = 0
        while off < data.count {
            switch Sys.call({ send(fd, data.baseAddress! + off, data.count - off, Int32(MSG_NOSIGNAL)) }) {
            case let .done(n) where n > 0:
                off += n
            case .wouldBlock:
                if !waiting({ wait(fd, events: Int16(POLLOUT), timeout: timeout) }) { return false }
            case .done, .failed:
                return false
            }
        }
        return true
    }

    /// Waits until the socket is ready for `events`; false on timeout or a socket error.
    static func wait(_ fd: Int32, events: Int16, timeout: Double) -> Bool {
        var p = pollfd(fd: fd, events: events, revents: 0)
        guard let ready = Sys.call({ poll(&p, 1, Int32(timeout * 1000)) }).value else { return false }
        return ready > 0 && (p.revents & (Int16(POLLERR) | Int16(POLLNVAL))) == 0
    }
}
