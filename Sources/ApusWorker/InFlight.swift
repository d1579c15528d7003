#if canImport(Glibc)
import Glibc
#endif
import ApusIPC
import ApusObserve
import ApusProtocols
import ApusSys

/// The request each app thread is serving, in the worker's slot of the shared `Scoreboard`
/// (threads past its `coresPerSlot` in the worker's own memory, same layout). The master
/// reads it to name what a worker had in flight when it died; a signal handler writes the
/// lines to the log when a worker's time is up (reload mercy or shutdown timeout), so the
/// operator learns which requests were cut. Written only with the GIL held (`AppRunner.run`
/// holds it at both ends of a request), so the slot's counters have one writer at a time.
enum InFlight {
    nonisolated(unsafe) static var cores: UnsafeMutablePointer<Scoreboard.Core>? = nil
    nonisolated(unsafe) static var count = 0
    nonisolated(unsafe) static var slot: Scoreboard.Slot? = nil
    nonisolated(unsafe) static var prefix: [UInt8] = []

    /// `role`: "worker 3", written as "[worker 3 pid 1234] cut at its deadline: ".
    static func setUp(threads: Int, role: String, slot: Scoreboard.Slot) {
        slot.reset(pid: getpid())
        self.slot = slot
        count = threads
        let local = max(0, threads - Scoreboard.coresPerSlot)
        let own = local > 0 ? UnsafeMutableRawPointer.allocate(byteCount: local * Scoreboard.Core.bytes, alignment: 8) : nil
        own?.initializeMemory(as: UInt8.self, repeating: 0, count: local * Scoreboard.Core.bytes)
        cores = .allocate(capacity: threads)
        for i in 0..<threads {
            cores![i] = slot.core(i) ?? Scoreboard.Core(base: own! + (i - Scoreboard.coresPerSlot) * Scoreboard.Core.bytes)
        }
        // Bytes, not an interpolated String (see "Memory of a worker" in docs/architecture.md).
        prefix = [UInt8(ascii: "[")]
        for b in role.utf8 { prefix.append(b) }
        appendLiteral(" pid ", &prefix)
        appendDecimal(Int(getpid()), to: &prefix)
        appendLiteral("] cut at its deadline: ", &prefix)
    }

    static func core(_ index: Int) -> Scoreboard.Core? {
        guard let cores, index < count else { return nil }
        return cores[index]
    }

    /// Records "METHOD target" for app thread `index`, on connection `fd`, from `now`.
    static func begin(_ index: Int, _ method: UnsafeRawBufferPointer, _ target: UnsafeRawBufferPointer, fd: Int32, now: Double) {
        guard let core = core(index) else { return }
        let line = core.lineBytes
        let room = Scoreboard.lineBytes - 2
        var n = 0
        for b in method where n < room { line[n] = b; n += 1 }
        if n < room { line[n] = 32; n += 1 }
        for b in target where n < room { line[n] = b; n += 1 }
        line[n] = 10
        line[n + 1] = 0
        core.fd = fd
        core.startedAt = now
        core.state = .inApp
        slot?.lastActive = now
        WorkerTitle.begin(method, target)
    }

    /// The request of app thread `index` is done: counted (with its answer's status and
    /// body bytes, and whether the app failed), and its line cleared.
    static func end(_ index: Int, now: Double, status: Int, bytes: Int, failed: Bool) {
        guard let core = core(index) else { return }
        WorkerTitle.end(index)
        if let slot {
            slot.requests &+= 1
            RequestBudget.check(slot.requests)
            let micros = UInt64(max(0, (now - core.startedAt) * 1e6))
            slot.busyMicros &+= micros
            slot.lastActive = now
            slot.counters.recordApp(status: status, bytes: bytes, micros: micros, failed: failed)
        }
        core.state = .idle
        core.lineBytes[0] = 0
        core.startedAt = 0
    }

    /// Async-signal-safe: only write(2) over memory prepared in advance.
    static func logAll() {
        guard let cores else { return }
        for i in 0..<count {
            let line = cores[i].lineBytes
            if line[0] == 0 { continue }
            var n = 0
            while n < Scoreboard.lineBytes && line[n] != 0 { n += 1 }
            prefix.withUnsafeBytes { Sys.writeStderr($0) }
            Sys.writeStderr(UnsafeRawBufferPointer(start: line, count: n))
        }
    }
}
