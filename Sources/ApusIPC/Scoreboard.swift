#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// What every worker is doing, in memory shared by the master and all workers: one record
/// per worker slot with its counters and, for each app thread (a *core*, as uWSGI calls it),
/// the request it runs and since when. Workers write their own slot; the master reads it to
/// name the requests a dead worker had in flight, to see how busy the workers are
/// (`--cheaper`) and for its stats.
///
/// It lives in the tally's memory file, after the counts, so it is mapped before the first
/// fork and crosses an upgrade in place with it. Values are written by one worker and read
/// without locks: counters and times are aligned 64-bit words (never torn on the platforms
/// Apus builds for), a line read while it is rewritten may be garbled, and a core's `state`
/// is the one field two threads contend for (see `CoreState`), through atomics.
public final class Scoreboard: @unchecked Sendable {
    public static let maxSlots = ConnectionTally.maxSlots
    /// Threads beyond these are not shown to the master (a worker keeps their lines itself).
    public static let coresPerSlot = 64
    /// Room for "METHOD target\n" and a NUL.
    public static let lineBytes = 240
    static let coreBytes = 256
    static let headerBytes = 64
    static let slotBytes = headerBytes + coresPerSlot * coreBytes
    /// Each slot's `Counters`, in a region after all the slots: the slots' layout stays what
    /// an older image's workers write during an upgrade in place, and the file only grows.
    static let countersBytes = 256
    static let countersOffset = maxSlots * slotBytes
    public static let bytes = maxSlots * slotBytes + maxSlots * countersBytes

    /// Upper bounds of the request-duration histogram, in seconds (Prometheus's default
    /// buckets); a last bucket counts the requests above the highest.
    public static let durationBounds: [Double] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]

    let base: UnsafeMutableRawPointer

    init(_ base: UnsafeMutableRawPointer) {
        self.base = base
    }

    public func slot(_ slot: Int) -> Slot {
        precondition(slot >= 0 && slot < Self.maxSlots, "scoreboard slot \(slot) out of range")
        return Slot(base: base + slot * Self.slotBytes,
                    counters: Counters(base: base + Self.countersOffset + slot * Self.countersBytes))
    }

    /// One worker slot. Header: pid (Int32), app calls running (Int32), requests finished
    /// (UInt64), microseconds spent in the app (UInt64), when the last app call began or
    /// ended (Double, `Sys.now()`). Then `coresPerSlot` cores.
    public struct Slot {
        let base: UnsafeMutableRawPointer
        /// What the slot's worker answered: statuses, bytes, durations, exceptions.
        public let counters: Counters

        /// Zeroes the slot for a new worker (by the worker, before its first request).
        public func reset(pid: Int32) {
            base.initializeMemory(as: UInt8.self, repeating: 0, count: Scoreboard.slotBytes)
            counters.base.initializeMemory(as: UInt8.self, repeating: 0, count: Scoreboard.countersBytes)
            base.storeBytes(of: pid, toByteOffset: 0, as: Int32.self)
        }

        public var pid: Int32 { base.load(fromByteOffset: 0, as: Int32.self) }
        public var inApp: Int32 {
            get { base.load(fromByteOffset: 4, as: Int32.self) }
            nonmutating set { base.storeBytes(of: newValue, toByteOffset: 4, as: Int32.self) }
        }
        public var requests: UInt64 {
            get { base.load(fromByteOffset: 8, as: UInt64.self) }
            nonmutating set { base.storeBytes(of: newValue, toByteOffset: 8, as: UInt64.self) }
        }
        public var busyMicros: UInt64 {
            get { base.load(fromByteOffset: 16, as: UInt64.self) }
            nonmutating set { base.storeBytes(of: newValue, toByteOffset: 16, as: UInt64.self) }
        }
        public var lastActive: Double {
            get { base.load(fromByteOffset: 24, as: Double.self) }
            nonmutating set { base.storeBytes(of: newValue, toByteOffset: 24, as: Double.self) }
        }

        /// Core `index`, nil past `coresPerSlot`.
        public func core(_ index: Int) -> Core? {
            guard index >= 0 && index < Scoreboard.coresPerSlot else { return nil }
            return Core(base: base + Scoreboard.headerBytes + index * Scoreboard.coreBytes)
        }

        /// How many of the first `threads` cores are in a request.
        public func busyCores(threads: Int) -> Int {
            (0..<min(threads, Scoreboard.coresPerSlot)).reduce(0) { n, i in
                Core(base: base + Scoreboard.headerBytes + i * Scoreboard.coreBytes).state == .idle ? n : n + 1
            }
        }

        /// The request lines of the cores that are in the app, with how long each has run
        /// at `now`: what a worker that died had in flight.
        public func inFlight(now: Double) -> [(line: String, seconds: Double)] {
            (0..<Scoreboard.coresPerSlot).compactMap { i in
                let core = Core(base: base + Scoreboard.headerBytes + i * Scoreboard.coreBytes)
                guard core.state != .idle, let line = core.line else { return nil }
                return (line, max(0, now - core.startedAt))
            }
        }
    }

    /// A worker's answers, counted for the stats server and `/metrics`. App answers are
    /// counted with the GIL held (`InFlight.end`), static files' by the thread that runs the
    /// event loop (`staticStatus`), so every word has one writer at a time. Layout (UInt64
    /// words): 0 exceptions, 1 the last app request's duration in µs, 2 body bytes sent,
    /// 3...7 app answers by status class 1xx...5xx, 8...19 the duration histogram (one count
    /// per bucket of `durationBounds`, then the rest; not cumulative), 20...24 static answers
    /// by status class, 25 body bytes of static answers.
    public struct Counters {
        let base: UnsafeMutableRawPointer
        static let histogramWord = 8
        static let staticWord = 20

        private func word(_ i: Int) -> UInt64 { base.load(fromByteOffset: i * 8, as: UInt64.self) }
        private func bump(_ i: Int, by n: UInt64 = 1) {
            base.storeBytes(of: word(i) &+ n, toByteOffset: i * 8, as: UInt64.self)
        }

        public var exceptions: UInt64 { word(0) }
        public var lastMicros: UInt64 { word(1) }
        public var bodyBytes: UInt64 { word(2) &+ word(25) }
        /// App answers with status `100 * (cls + 1)...`, cls 0...4.
        public func appStatus(_ cls: Int) -> UInt64 { word(3 + cls) }
        public func staticStatus(_ cls: Int) -> UInt64 { word(Self.staticWord + cls) }
        /// Requests in bucket `i` of `durationBounds` (i == count: above the highest).
        public func histogram(_ i: Int) -> UInt64 { word(Self.histogramWord + i) }

        /// An app request finished (GIL held).
        public func recordApp(status: Int, bytes: Int, micros: UInt64, failed: Bool) {
            if failed { bump(0) }
            base.storeBytes(of: micros, toByteOffset: 8, as: UInt64.self)
            bump(2, by: UInt64(max(0, bytes)))
            if let cls = Self.statusClass(status) { bump(3 + cls) }
            let seconds = Double(micros) / 1e6
            var i = 0
            while i < Scoreboard.durationBounds.count && seconds > Scoreboard.durationBounds[i] { i += 1 }
            bump(Self.histogramWord + i)
        }

        /// A static file was answered (by the thread that runs the event loop).
        public func recordStatic(status: Int, bytes: Int) {
            if let cls = Self.statusClass(status) { bump(Self.staticWord + cls) }
            bump(25, by: UInt64(max(0, bytes)))
        }

        static func statusClass(_ status: Int) -> Int? {
            (100...599).contains(status) ? status / 100 - 1 : nil
        }
    }

    /// What a core's request is doing. The app thread moves it idle → inApp → answering
    /// (the app returned or sent its first bytes) → idle; a watchdog that gives up on a
    /// request moves inApp → claiming → timedOut, and answers the client in between. Both
    /// moves out of inApp are compare-and-swap, so exactly one side answers. `claiming` is
    /// the watchdog's short hold (it checks that the request it claimed is the old one it
    /// saw, and writes the answer): an app thread that finds it waits for it to end.
    public enum CoreState: UInt32, Sendable {
        case idle = 0
        case inApp = 1
        case answering = 2
        case timedOut = 3
        case claiming = 4
    }

    /// One app thread's record: `startedAt` (Double), `state` (UInt32), the connection's
    /// descriptor (Int32), then the request line. The same layout serves cores kept in a
    /// worker's own memory (threads past `coresPerSlot`).
    public struct Core {
        public let base: UnsafeMutableRawPointer
        public init(base: UnsafeMutableRawPointer) { self.base = base }
        public static let bytes = Scoreboard.coreBytes

        public var startedAt: Double {
            get { base.load(fromByteOffset: 0, as: Double.self) }
            nonmutating set { base.storeBytes(of: newValue, toByteOffset: 0, as: Double.self) }
        }
        private var statePointer: UnsafeMutablePointer<UInt32> {
            (base + 8).assumingMemoryBound(to: UInt32.self)
        }
        public var state: CoreState {
            get { CoreState(rawValue: apus_atomic_load_u32(statePointer)) ?? .idle }
            nonmutating set { apus_atomic_store_u32(statePointer, newValue.rawValue) }
        }
        /// Moves `from` → `to` if the state is still `from`.
        public func transition(from: CoreState, to: CoreState) -> Bool {
            apus_atomic_cas_u32(statePointer, from.rawValue, to.rawValue) != 0
        }
        public var fd: Int32 {
            get { base.load(fromByteOffset: 12, as: Int32.self) }
            nonmutating set { base.storeBytes(of: newValue, toByteOffset: 12, as: Int32.self) }
        }
        /// The line's bytes: "METHOD target\n", NUL-terminated.
        public var lineBytes: UnsafeMutablePointer<UInt8> {
            (base + 16).assumingMemoryBound(to: UInt8.self)
        }
        /// The line without its newline; nil when empty.
        public var line: String? {
            let p = lineBytes
            var n = 0
            while n < Scoreboard.lineBytes - 1 && p[n] != 0 && p[n] != 10 { n += 1 }
            guard n > 0 else { return nil }
            return String(decoding: UnsafeBufferPointer(start: p, count: n), as: UTF8.self)
        }
    }
}
