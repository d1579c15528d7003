#if canImport(Glibc)
import Glibc
#endif
import ApusObserve
import ApusProtocols
import ApusSys

/// The request line each app thread is serving, kept in plain memory so that a signal
/// handler can write them to the log when a worker's time is up (reload mercy or shutdown
/// timeout): the operator learns which requests were cut.
enum InFlight {
    static let lineBytes = 256
    nonisolated(unsafe) static var lines: UnsafeMutablePointer<UInt8>? = nil
    nonisolated(unsafe) static var count = 0
    nonisolated(unsafe) static var prefix: [UInt8] = []

    /// `role`: "worker 3", written as "[worker 3 pid 1234] cut at its deadline: ".
    static func setUp(threads: Int, role: String) {
        count = threads
        lines = .allocate(capacity: threads * lineBytes)
        lines!.initialize(repeating: 0, count: threads * lineBytes)
        // Bytes, not an interpolated String (see "Memory of a worker" in docs/architecture.md).
        prefix = [UInt8(ascii: "[")]
        for b in role.utf8 { prefix.append(b) }
        appendLiteral(" pid ", &prefix)
        appendDecimal(Int(getpid()), to: &prefix)
        appendLiteral("] cut at its deadline: ", &prefix)
    }

    /// Records "METHOD target" for app thread `index`.
    static func begin(_ index: Int, _ method: UnsafeRawBufferPointer, _ target: UnsafeRawBufferPointer) {
        guard let lines, index < count else { return }
        let line = lines + index * lineBytes
        var n = 0
        for b in method where n < lineBytes - 2 { line[n] = b; n += 1 }
        if n < lineBytes - 2 { line[n] = 32; n += 1 }
        for b in target where n < lineBytes - 2 { line[n] = b; n += 1 }
        line[n] = 10
        line[n + 1] = 0
    }

    static func end(_ index: Int) {
        guard let lines, index < count else { return }
        lines[index * lineBytes] = 0
    }

    /// Async-signal-safe: only write(2) over memory prepared in advance.
    static func logAll() {
        guard let lines else { return }
        for i in 0..<count {
            let line = lines + i * lineBytes
            if line[0] == 0 { continue }
            var n = 0
            while n < lineBytes && line[n] != 0 { n += 1 }
            prefix.withUnsafeBytes { Sys.writeStderr($0) }
            Sys.writeStderr(UnsafeRawBufferPointer(start: line, count: n))
        }
    }
}
