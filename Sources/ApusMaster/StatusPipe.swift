#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusIPC
import ApusSys

/// The pipe every worker and zygote writes its `WorkerMessage`s to. The master reads it
/// without blocking; each writer's end blocks, so a message is never dropped (and, at 16
/// bytes, always written whole).
struct StatusPipe {
    let readFD: Int32
    let writeFD: Int32
    private var buffer: [UInt8] = []

    /// No pipe yet (before `open`).
    static let none = StatusPipe(readFD: -1, writeFD: -1)

    private init(readFD: Int32, writeFD: Int32) {
        self.readFD = readFD
        self.writeFD = writeFD
    }

    static func open() throws(ControlFailure) -> StatusPipe {
        var fds: [Int32] = [0, 0]
        if case let .failed(e) = Sys.call({ apus_pipe_cloexec(&fds, 1) }) {
            throw ControlFailure("cannot make the status pipe: \(Sys.describe(e))")
        }
        let writeFD = fds[1]
        Sys.check("fcntl(F_SETFL) on the status pipe") { apus_set_nonblocking(writeFD, 0) }
        return StatusPipe(readFD: fds[0], writeFD: writeFD)
    }

    /// The pipe a master image that upgraded in place was handed (close-on-exec again).
    static func adopt(readFD: Int32, writeFD: Int32) -> StatusPipe {
        for fd in [readFD, writeFD] { _ = apus_set_cloexec(fd, 1) }
        return StatusPipe(readFD: readFD, writeFD: writeFD)
    }

    /// The messages that arrived since the last call. Malformed records are skipped.
    mutating func messages() -> [WorkerMessage] {
        var buf = [UInt8](repeating: 0, count: 4096)
        while case let .done(n) = Sys.call({ read(readFD, &buf, buf.count) }), n > 0 {
            buffer += buf[0..<n]
        }
        var out: [WorkerMessage] = []
        while buffer.count >= WorkerMessage.size {
            if let message = WorkerMessage(buffer[0..<WorkerMessage.size]) { out.append(message) }
            buffer.removeFirst(WorkerMessage.size)
        }
        return out
    }
}
