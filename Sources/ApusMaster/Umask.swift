#if canImport(Glibc)
import Glibc
#endif

/// `--umask`. The master sets it at start, before it creates its sockets, pidfile, log
/// file and FIFO, and every process it forks inherits it. A graceful reload's mask is set
/// only around what is made for the new generation: its new unix sockets and its zygote
/// (the workers inherit it from the zygote); the master's own stays the start's.
enum Umask {
    /// Sets the master's mask at start (nil: the one Apus was started with).
    static func set(_ mask: UInt32?) {
        if let mask { umask(mode_t(mask)) }
    }

    /// Runs `body` under `mask` (nil: the master's own), then restores the master's.
    static func with<T, E: Error>(_ mask: UInt32?, _ body: () throws(E) -> T) throws(E) -> T {
        guard let mask else { return try body() }
        let previous = umask(mode_t(mask))
        defer { umask(previous) }
        return try body()
    }
}
