import ApusIPC
import ApusObserve
import ApusProtocols

/// A worker's process title: "apus: worker 3 gen 7 idle", "apus: worker 3 gen 7 busy GET /x",
/// and with `--threads` > 1 how many app threads are in a request, with the line of the one
/// that started last: "apus: worker 3 gen 7 busy 2/4 GET /x" (when that one ends and others
/// still run, the line of another). A worker that drains (SIGTERM, or SIGHUP: retired by a
/// reload) says so: "apus: worker 3 gen 7 draining busy GET /x".
///
/// `begin` and `end` run on the request path, from `InFlight` with the GIL held (one writer):
/// a few byte stores into the title area, no system call, no String. The fixed start
/// ("apus: worker 3 gen 7 ") is written once by `setUp`; each update rewrites what follows.
enum WorkerTitle {
    nonisolated(unsafe) static var area = TitleArea(base: nil, capacity: 0)
    nonisolated(unsafe) static var fixedEnd = 0
    nonisolated(unsafe) static var threads = 1
    nonisolated(unsafe) static var busy = 0
    nonisolated(unsafe) static var draining = false

    /// Right after the fork, when titles are on: "apus: worker N gen G loading" until the
    /// loop starts (`idle`).
    /// `start`: "PREFIXapus: " as bytes, made in the zygote before the fork
    /// (`ProcessTitle.compose`): the worker formats no String for its title (see "Memory of
    /// a worker" in docs/architecture.md: String code touched after the fork is resident in
    /// every worker).
    static func setUp(start: [UInt8], number: Int, generation: UInt32, threads: Int,
                      area: TitleArea = ProcessTitle.area) {
        self.area = area
        self.threads = threads
        busy = 0
        draining = false
        guard area.base != nil else { return }
        var fixed = start
        appendLiteral("worker ", &fixed)
        appendDecimal(number, to: &fixed)
        appendLiteral(" gen ", &fixed)
        appendDecimal(Int(generation), to: &fixed)
        fixed.append(32)
        fixedEnd = fixed.withUnsafeBytes { area.put($0, at: 0) }
        area.end(at: put("loading", at: fixedEnd))
    }

    /// The loop is about to wait for its first connection.
    static func idle() {
        guard area.base != nil else { return }
        render(line: nil)
    }

    /// An app thread starts "METHOD target" (called last in `InFlight.begin`).
    @inline(__always)
    static func begin(_ method: UnsafeRawBufferPointer, _ target: UnsafeRawBufferPointer) {
        guard area.base != nil else { return }
        busy += 1
        var n = state(at: fixedEnd)
        n = putClean(method, at: n)
        n = area.put(32, at: n)
        area.end(at: putClean(target, at: n))
    }

    /// App thread `index` is done; its core still shows its line (called first in `InFlight.end`).
    @inline(__always)
    static func end(_ index: Int) {
        guard area.base != nil else { return }
        busy = max(0, busy - 1)
        render(line: busy > 0 ? otherLine(than: index) : nil)
    }

    /// SIGTERM or SIGHUP reached the loop (`beginDrain`). With `--threads` 1 the loop is the
    /// app thread, so no request is in the app then. With more threads an app thread may end
    /// its request while the loop writes this: the two writes can mix until the next update,
    /// which is accepted for a worker about to exit (the mark is cosmetic).
    static func markDraining() {
        guard area.base != nil else { return }
        draining = true
        render(line: busy > 0 ? otherLine(than: -1) : nil)
    }

    /// The scoreboard line of an app thread other than `index` that is in a request.
    private static func otherLine(than index: Int) -> UnsafeMutablePointer<UInt8>? {
        for i in 0..<InFlight.count where i != index {
            if let core = InFlight.core(i), core.state != .idle, core.lineBytes[0] != 0 { return core.lineBytes }
        }
        return nil
    }

    /// State words then `line` (a scoreboard line, "METHOD target\n", up to its newline).
    private static func render(line: UnsafeMutablePointer<UInt8>?) {
        var n = state(at: fixedEnd)
        if busy > 0, let line {
            var i = 0
            while i < Scoreboard.lineBytes - 1 && line[i] != 0 && line[i] != 10 { i += 1 }
            n = putClean(UnsafeRawBufferPointer(start: line, count: i), at: n)
        } else if busy > 0 {
            n = max(fixedEnd, n - 1)  // no line to show: drop the space after "busy"
        }
        area.end(at: n)
    }

    /// "draining " if so, then "idle" or "busy " (with threads: "busy 2/4 ").
    @inline(__always)
    private static func state(at offset: Int) -> Int {
        var n = offset
        if draining { n = put("draining ", at: n) }
        if busy == 0 { return put("idle", at: n) }
        n = put("busy ", at: n)
        if threads > 1 {
            n = area.putDecimal(busy, at: n)
            n = area.put(UInt8(ascii: "/"), at: n)
            n = area.putDecimal(threads, at: n)
            n = area.put(32, at: n)
        }
        return n
    }

    @inline(__always)
    private static func put(_ literal: StaticString, at offset: Int) -> Int {
        area.put(UnsafeRawBufferPointer(start: literal.utf8Start, count: literal.utf8CodeUnitCount), at: offset)
    }

    /// Request bytes from the client: anything but printable ASCII becomes "?" (a space only
    /// parts the method from the target in a scoreboard line: the parser split on it).
    @inline(__always)
    private static func putClean(_ bytes: UnsafeRawBufferPointer, at offset: Int) -> Int {
        var n = offset
        for b in bytes {
            let next = area.put(b >= 0x20 && b < 0x7f ? b : UInt8(ascii: "?"), at: n)
            if next == n { break }
            n = next
        }
        return n
    }
}
