#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// An epoll instance. The payload of each registration is a `UInt64` chosen by the owner
/// (the worker encodes a named `EventToken` in it).
public struct Epoll {
    public let fd: Int32

    public static let readable = UInt32(APUS_EPOLLIN)
    public static let writable = UInt32(APUS_EPOLLOUT)
    public static let peerClosed = UInt32(APUS_EPOLLRDHUP)
    public static let hangup = UInt32(APUS_EPOLLHUP)
    public static let error = UInt32(APUS_EPOLLERR)
    public static let edgeTriggered = UInt32(APUS_EPOLLET)
    /// Only one of the processes waiting on a shared listener is woken per connection.
    public static let exclusive = UInt32(APUS_EPOLLEXCLUSIVE)

    public init() {
        let fd = apus_epoll_create()
        precondition(fd >= 0, "epoll_create1 failed: \(Sys.describe(errno))")
        self.fd = fd
    }

    /// Registers `target`. Fails with ENOMEM or ENOSPC (fs.epoll.max_user_watches) under
    /// memory pressure: the caller decides (close a connection, or stop at start-up).
    public func add(_ target: Int32, _ events: UInt32, _ data: UInt64) -> SysResult {
        Sys.call { apus_epoll_add(fd, target, events, data) }
    }

    public func modify(_ target: Int32, _ events: UInt32, _ data: UInt64) -> SysResult {
        Sys.call { apus_epoll_mod(fd, target, events, data) }
    }

    public func remove(_ target: Int32) -> SysResult {
        Sys.call { apus_epoll_del(fd, target) }
    }

    /// Waits up to `timeoutMS` for events; 0 on timeout or when a signal interrupted the
    /// wait (the caller's loop looks at its flags and waits again).
    public func wait(into events: inout [apus_event], timeoutMS: Int32) -> Int {
        let n = events.withUnsafeMutableBufferPointer { apus_epoll_wait(fd, $0.baseAddress, Int32($0.count), timeoutMS) }
        if n >= 0 { return Int(n) }
        let e = errno
        precondition(e == EINTR, "epoll_wait failed: \(Sys.describe(e))")
        return 0
    }
}
