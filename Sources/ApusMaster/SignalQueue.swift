#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusSys

/// Signals become bytes on a pipe (the self-pipe trick), so the master's loop handles them
/// one at a time in normal code, never inside a handler.
public enum SignalQueue {
    nonisolated(unsafe) public static var readFD: Int32 = -1
    nonisolated(unsafe) static var writeFD: Int32 = -1

    /// The master's signals (`apus router` handles only the stopping ones).
    public static let handled: [Int32] = [SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2]

    /// Makes the pipe and installs the handlers; a failure here is a bug (a bad signal
    /// number) or a process out of descriptors at start, and stops the master.
    public static func install(_ signals: [Int32] = handled) {
        var fds: [Int32] = [0, 0]
        Sys.check("pipe2 for the signal queue") { apus_pipe_cloexec(&fds, 1) }
        readFD = fds[0]
        writeFD = fds[1]
        for sig in signals { Sys.check("sigaction") { apus_signal(sig, onSignal) } }
        Sys.check("sigaction(SIGPIPE, SIG_IGN)") { apus_signal_ignore(SIGPIPE) }
        // An image started by an upgrade in place inherits the mask the old one blocked
        // everything with before execve; what arrived meanwhile is pending and comes now.
        Sys.check("sigprocmask") { apus_unblock_all_signals() }
    }

    /// The signals received since the last call, in order.
    public static func drain() -> [Int32] {
        var out: [Int32] = []
        var buf = [UInt8](repeating: 0, count: 64)
        while case let .done(n) = Sys.call({ read(readFD, &buf, buf.count) }), n > 0 {
            out += buf[0..<n].map { Int32($0) }
        }
        return out
    }

    static func closeInChild() {
        Sys.close(readFD)
        Sys.close(writeFD)
    }
}

/// Runs inside the signal handler: one write, errno kept for the code it interrupted. The
/// write can only fail when the pipe is full (EAGAIN, 64 KiB of signals not yet handled):
/// then the loop is already woken and the byte is dropped, as a signal arriving while the
/// same one is pending would be by the kernel.
private let onSignal: @convention(c) (Int32) -> Void = { sig in
    var b = UInt8(truncatingIfNeeded: sig)
    let saved = errno
    if write(SignalQueue.writeFD, &b, 1) < 0 { /* see above */ }
    errno = saved
}
