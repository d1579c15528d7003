#if canImport(Glibc)
import Glibc
#endif

/// The outcome of one system call. `call` is the one place that applies Apus's retry
/// policy: an interrupted call (EINTR) is made again, a call that would block on a
/// non-blocking descriptor (EAGAIN, EWOULDBLOCK) is `.wouldBlock`, and any other failure is
/// `.failed` with its errno. Callers handle each case; none is discarded silently.
public enum SysResult: Equatable {
    case done(Int)
    case wouldBlock
    case failed(Int32)

    /// The count or descriptor, if the call succeeded.
    @inlinable public var value: Int? {
        if case let .done(n) = self { return n }
        return nil
    }
}

public enum Sys {
    /// Makes a call returning -1 and errno on failure (read, send, accept4, epoll_ctl, ...).
    @inlinable @inline(__always)
    public static func call(_ body: () -> Int) -> SysResult {
        while true {
            let r = body()
            if r >= 0 { return .done(r) }
            let e = errno
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            return .failed(e)
        }
    }

    @inlinable @inline(__always)
    public static func call(_ body: () -> Int32) -> SysResult {
        call { Int(body()) }
    }

    /// A call that fails only when the program itself is wrong (a bad descriptor or
    /// argument, a signal that cannot be handled): stop with the call's name and reason.
    public static func check(_ what: StaticString, _ body: () -> Int32) {
        if case let .failed(e) = call(body) {
            fatalError("\(what) failed: \(String(cString: strerror(e)))")
        }
    }

    /// Closes a descriptor. Linux releases it even when close reports an error (EINTR, or
    /// EIO from a file system), and retrying could close a descriptor another thread was
    /// just given: so there is nothing to retry or handle, and the result is not looked at.
    @inline(__always)
    public static func close(_ fd: Int32) {
        if fd >= 0 { Glibc.close(fd) }
    }

    /// Adds one to an eventfd (async-signal-safe: signal handlers use it). EAGAIN means
    /// the counter is already at its maximum, which still wakes the reader.
    @inline(__always)
    public static func wake(_ eventFD: Int32) {
        var one: UInt64 = 1
        _ = write(eventFD, &one, 8)  // see above: every outcome wakes, or the fd is gone
    }

    /// Resets an eventfd to zero. EAGAIN means it was already zero.
    @inline(__always)
    public static func drain(_ eventFD: Int32) {
        var value: UInt64 = 0
        _ = read(eventFD, &value, 8)  // see above
    }

    /// Seconds on the monotonic clock: the one clock for deadlines and durations.
    @inline(__always)
    public static func now() -> Double {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Double(ts.tv_sec) + Double(ts.tv_nsec) / 1e9
    }

    /// errno as text, for log lines.
    public static func describe(_ error: Int32) -> String {
        String(cString: strerror(error))
    }

    /// Sends `sig` to the process `pid`. `pid` must be positive: 0 and negative pids
    /// signal whole process groups, which no caller means. ESRCH (the process is gone)
    /// is returned like any other failure, for the caller to weigh.
    public static func kill(_ pid: pid_t, _ sig: Int32) -> SysResult {
        precondition(pid > 0, "kill(\(pid)) would signal a process group")
        return call { Glibc.kill(pid, sig) }
    }

    /// Signals every process of the group `pgid` (a child that called setsid leads one).
    public static func killGroup(_ pgid: pid_t, _ sig: Int32) -> SysResult {
        precondition(pgid > 1, "killpg(\(pgid)) would signal our own group or every process")
        return call { Glibc.killpg(pgid, sig) }
    }

    /// Writes `text` to stderr, for a message before exiting. The outcome is not looked at:
    /// a program that cannot write to stderr has nowhere left to report it.
    public static func writeStderr(_ text: String) {
        var text = text
        text.withUTF8 { writeStderr(UnsafeRawBufferPointer($0)) }
    }

    /// Writes `bytes` to stderr (async-signal-safe: write(2) only), with the same rule.
    public static func writeStderr(_ bytes: UnsafeRawBufferPointer) {
        if case .failed = writeAll(2, bytes) { /* see above */ }
    }

    /// Writes all of `bytes` to `fd` (a blocking descriptor), after short writes and EINTR.
    /// `.done` with the count written, or the failure that stopped it.
    public static func writeAll(_ fd: Int32, _ bytes: UnsafeRawBufferPointer) -> SysResult {
        var written = 0
        while written < bytes.count {
            switch call({ write(fd, bytes.baseAddress! + written, bytes.count - written) }) {
            case let .done(n): written += n
            case let other: return other
            }
        }
        return .done(written)
    }
}
