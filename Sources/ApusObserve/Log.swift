#if canImport(Glibc)
import Glibc
#endif
import ApusSys

/// The server's own log lines, on stderr, one `write` each so lines from several processes
/// and threads never interleave mid-line.
public enum Log {
    /// Prefix naming the process ("master", "worker 3"), set once after fork.
    nonisolated(unsafe) public static var role = "master"

    /// Severities, least severe first (Gunicorn's names).
    public enum Level: Int, Comparable, Sendable {
        case debug, info, warning, error, critical
        public static func < (a: Level, b: Level) -> Bool { a.rawValue < b.rawValue }
    }

    /// Lines less severe than this are dropped (`--log-level`); set before the workers fork,
    /// so they inherit it.
    nonisolated(unsafe) public static var threshold = Level.info

    public static func info(_ message: String) { emit(.info, "INFO", message) }
    public static func warning(_ message: String) { emit(.warning, "WARNING", message) }
    public static func error(_ message: String) { emit(.error, "ERROR", message) }

    private static func emit(_ severity: Level, _ level: String, _ message: String) {
        if severity < threshold { return }
        let line = "[\(timestamp())] [\(getpid())] [\(level)] \(role): \(message)\n"
        Sys.writeStderr(line)
    }

    /// "2026-11-26 22:10:01 +0000" (UTC).
    static func timestamp() -> String {
        var t = time(nil)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        func two(_ v: Int32) -> String { v < 10 ? "0\(v)" : "\(v)" }
        return "\(tmv.tm_year + 1900)-\(two(tmv.tm_mon + 1))-\(two(tmv.tm_mday)) \(two(tmv.tm_hour)):\(two(tmv.tm_min)):\(two(tmv.tm_sec)) +0000"
    }
}
