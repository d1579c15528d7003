#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// Signals become bytes on a pipe (the self-pipe trick), so the master's loop handles them
/// one at a time in normal code, never inside a handler.
enum SignalQueue {
    nonisolated(unsafe) static var readFD: Int32 = -1
    nonisolated(unsafe) static var writeFD: Int32 = -1

    static let handled: [Int32] = [SIGCHLD, SIGTERM, SIGINT, SIGQUIT, SIGHUP, SIGTTIN, SIGTTOU, SIGUSR1, SIGUSR2]

    static func install() {
        var fds: [Int32] = [0, 0]
        _ = apus_pipe_cloexec(&fds, 1)
        readFD = fds[0]
        writeFD = fds[1]
        for sig in handled { _ = apus_signal(sig, onSignal) }
        _ = apus_signal_ignore(SIGPIPE)
    }

    static func drain() -> [Int32] {
        var out: [Int32] = []
        var buf = [UInt8](repeating: 0, count: 64)
        while true {
            let n = read(readFD, &buf, buf.count)
            if n <= 0 { break }
            out.append(contentsOf: buf[0..<n].map { Int32($0) })
        }
        return out
    }

    static func closeInChild() {
        close(readFD)
        close(writeFD)
    }
}

private let onSignal: @convention(c) (Int32) -> Void = { sig in
    var b = UInt8(truncatingIfNeeded: sig)
    let saved = errno
    _ = write(SignalQueue.writeFD, &b, 1)
    errno = saved
}
