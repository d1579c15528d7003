#if canImport(Glibc)
import Glibc
#endif
import ApusObserve
import ApusProtocols
import ApusSys
import CApusSys

/// One line per request in the `--log-format` format (the common log format by default),
/// written to stderr, or to `--access-logfile` (stdout for "-", else a file opened with
/// O_APPEND that every worker appends to). Lines are built straight into one buffer that
/// collects them across turns of the loop, as nginx's `access_log ... buffer= flush=`: it
/// is written when it holds `flushBytes`, when its first line is `flushDelay` old (the
/// loop looks each turn and wakes in time, `flushIfDue`), and before the worker exits,
/// drains, or reopens the file on SIGUSR1; a system call per request costs more than the
/// line. Writes are of whole lines: to a pipe, at most PIPE_BUF bytes a write (a longer
/// line alone), so no line mixes with another process's. Lines are assembled from bytes:
/// no `String` per request (and none of the standard library's string code in the worker,
/// see docs/architecture.md, "Memory of a worker"). AccessLine.swift turns the format's ops
/// into bytes.
final class AccessLog: @unchecked Sendable {
    /// Buffered lines are written once they reach this many bytes...
    static let flushBytes = 32768
    /// ... or once the first of them is this many seconds old.
    static let flushDelay = 0.2

    /// The worker's log, for the signal handlers that exit (`flushBeforeExit`).
    nonisolated(unsafe) static var current: AccessLog?

    // The mutable state is touched only with `lock` held (with one thread: only by it), so
    // it opts out of the run-time exclusivity check (a call into the runtime per access).
    /// The lines not written yet.
    @exclusivity(unchecked) private var pending = LineBuffer(capacity: AccessLog.flushBytes + 4096)
    /// When (Sys.now) the loop first saw `pending` not empty; 0: not yet.
    @exclusivity(unchecked) private var pendingSince = 0.0
    /// Its own memory: a mutex must not move, and `&property` would be an access the
    /// run-time exclusivity check follows (a call into the runtime each time).
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    /// With `--threads` 1 the one thread is the only writer and `lock` is not taken; `busy`
    /// (set atomically while it changes `pending`) keeps a signal handler's last flush off
    /// a buffer in the middle of a change.
    private let threaded: Bool
    private let busy = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
    @exclusivity(unchecked) private var second = -1
    /// "26/Nov/2026:22:10:01 +0000" and "2026-11-26T22:10:01Z", rebuilt once a second.
    @exclusivity(unchecked) var stamp = ByteRun(capacity: 40)
    @exclusivity(unchecked) var isoStamp = ByteRun(capacity: 40)
    @exclusivity(unchecked) var epoch = 0

    let format: LogFormat
    let plan: AccessPlan
    /// The default format, written by `appendCommonLine` without running the plan's ops.
    let isCommon: Bool
    /// The json preset, written by `appendJSONLine`: the plan's indices of its two request
    /// headers (referer, user-agent), nil for any other format.
    let jsonPreset: (referer: Int, agent: Int)?
    let forwardedFor: Bool
    /// The worker's number, generation and pid, in decimal.
    let workerDigits: ByteRun
    let generationDigits: ByteRun
    let pidDigits: ByteRun
    /// Generated request ids: this prefix (the worker's start time and pid, in hex) and a
    /// counter, unique across workers and restarts without a syscall per request.
    let idPrefix: ByteRun
    @exclusivity(unchecked) var idCounter = 0

    /// Where the lines go; SIGUSR1 may swap the file under this number (Worker.swift).
    let fd: Int32

    /// Bytes per write: PIPE_BUF for a pipe or socket, where a longer write may interleave
    /// with another process's; a regular file opened with O_APPEND takes a batch in one write.
    private let writeLimit: Int

    init(fd: Int32, format: LogFormat = .common, forwardedFor: Bool = false, worker: Int = 0, generation: Int = 0,
         threads: Int = 1) {
        self.fd = fd
        threaded = threads > 1
        busy.initialize(to: 0)
        self.format = format
        plan = AccessPlan(format)
        isCommon = format.ops == LogFormat.common.ops && format.escaping == .text && !forwardedFor
        if format.ops == LogFormat.json.ops && format.escaping == .json && !forwardedFor,
           let referer = plan.headerIndex(named: "referer"), let agent = plan.headerIndex(named: "user-agent") {
            jsonPreset = (referer, agent)
        } else {
            jsonPreset = nil
        }
        self.forwardedFor = forwardedFor
        var st = stat()
        let regular = fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
        writeLimit = regular ? Int.max : Int(PIPE_BUF)
        lock.initialize(to: pthread_mutex_t())
        pthread_mutex_init(lock, nil)
        var digits: [UInt8] = []
        appendDecimal(worker, to: &digits)
        workerDigits = ByteRun(digits)
        digits = []
        appendDecimal(generation, to: &digits)
        generationDigits = ByteRun(digits)
        digits = []
        appendDecimal(Int(getpid()), to: &digits)
        pidDigits = ByteRun(digits)
        var prefix: [UInt8] = []
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        appendLowerHex(UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec / 1_000_000), to: &prefix)
        prefix.append(UInt8(ascii: "-"))
        appendLowerHex(UInt64(getpid()), to: &prefix)
        prefix.append(UInt8(ascii: "-"))
        idPrefix = ByteRun(prefix)
    }

    /// `response`: the values of the response headers the format names (nil: none taken).
    func record(conn: Connection, status: Int, bytes: Int, seconds: Double, response: ResponseHeaderCapture?) {
        let raw = UnsafeRawBufferPointer(start: conn.buffer + conn.start, count: conn.end - conn.start)
        enter()
        updateStamp()
        var out = pending
        if isCommon {
            appendCommonLine(to: &out, conn: conn, raw: raw, status: status, bytes: bytes)
        } else if let jsonPreset {
            appendJSONLine(to: &out, conn: conn, raw: raw, status: status, bytes: bytes, seconds: seconds, headers: jsonPreset)
        } else {
            appendLine(to: &out, conn: conn, raw: raw, status: status, bytes: bytes, seconds: seconds, response: response)
        }
        out.append(UInt8(ascii: "\n"))
        pending = out  // it may have grown
        if out.count >= Self.flushBytes { writePending() }
        leave()
    }

    @inline(__always) private func enter() {
        if threaded { pthread_mutex_lock(lock) } else { apus_atomic_store_u32(busy, 1) }
    }

    @inline(__always) private func leave() {
        if threaded { pthread_mutex_unlock(lock) } else { apus_atomic_store_u32(busy, 0) }
    }

    /// Writes the buffered lines now.
    func flush() {
        enter()
        writePending()
        leave()
    }

    /// The loop's look, each turn: writes the buffered lines once the first is `flushDelay`
    /// old, and returns the milliseconds until it next has to look (nil: nothing buffered).
    func flushIfDue(now: Double) -> Int32? {
        enter()
        defer { leave() }
        if pending.count == 0 { return nil }
        if pendingSince == 0 { pendingSince = now }
        let left = pendingSince + Self.flushDelay - now
        if left > 0 { return Int32(left * 1000) + 1 }
        writePending()
        return nil
    }

    /// From a signal handler or a thread about to end the process: writes the buffered lines
    /// if no thread is in the middle of adding one (then they are lost with the process).
    func flushBeforeExit() {
        if threaded {
            guard pthread_mutex_trylock(lock) == 0 else { return }
            writePending()
            pthread_mutex_unlock(lock)
        } else if apus_atomic_load_u32(busy) == 0 {
            writePending()
        }
    }

    /// Writes `pending` and empties it; the lock is held.
    private func writePending() {
        pendingSince = 0
        if pending.count == 0 { return }
        let all = UnsafeRawBufferPointer(pending.bytes)
        var start = 0
        while start < all.count {
            var end = all.count - start > writeLimit ? start + writeLimit : all.count
            if end < all.count {
                // Back to the end of the last whole line, or on to the end of an over-long one.
                var cut = end
                while cut > start && all[cut - 1] != UInt8(ascii: "\n") { cut -= 1 }
                if cut == start {
                    while cut < all.count && all[cut - 1] != UInt8(ascii: "\n") { cut += 1 }
                }
                end = cut
            }
            // Nowhere to report a failed write: the line is dropped, as stderr's would be.
            _ = Sys.writeAll(fd, UnsafeRawBufferPointer(rebasing: all[start..<end]))
            start = end
        }
        pending.reset()
    }

    private static let months: StaticString = "JanFebMarAprMayJunJulAugSepOctNovDec"

    private func updateStamp() {
        var t = time(nil)
        if Int(t) == second { return }
        second = Int(t)
        epoch = Int(t)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        var isoStamp: [UInt8] = []
        appendDecimal(Int(tmv.tm_year) + 1900, to: &isoStamp)
        for (sep, v) in [(UInt8(ascii: "-"), tmv.tm_mon + 1), (UInt8(ascii: "-"), tmv.tm_mday), (UInt8(ascii: "T"), tmv.tm_hour),
                         (UInt8(ascii: ":"), tmv.tm_min), (UInt8(ascii: ":"), tmv.tm_sec)] {
            isoStamp.append(sep)
            appendDecimal(Int(v), minimumDigits: 2, to: &isoStamp)
        }
        isoStamp.append(UInt8(ascii: "Z"))
        self.isoStamp.set(isoStamp)
        var stamp: [UInt8] = []
        func two(_ v: Int32) { appendDecimal(Int(v), minimumDigits: 2, to: &stamp) }
        two(tmv.tm_mday)
        stamp.append(UInt8(ascii: "/"))
        let m = Int(tmv.tm_mon) * 3
        stamp.append(contentsOf: UnsafeBufferPointer(start: Self.months.utf8Start + m, count: 3))
        stamp.append(UInt8(ascii: "/"))
        appendDecimal(Int(tmv.tm_year) + 1900, to: &stamp)
        stamp.append(UInt8(ascii: ":"))
        two(tmv.tm_hour)
        stamp.append(UInt8(ascii: ":"))
        two(tmv.tm_min)
        stamp.append(UInt8(ascii: ":"))
        two(tmv.tm_sec)
        appendLiteral(" +0000", &stamp)
        self.stamp.set(stamp)
    }
}

extension Worker {
    /// One access line for an answer (the app's or a static file's): always with the access
    /// log on, else only when --log-4xx, --log-5xx, --log-slow, ... want this one.
    /// `response`: the app's response headers the format names (nil for a static file).
    func logAccess(_ conn: Connection, status: Int, bytes: Int, seconds: Double, response: ResponseHeaderCapture? = nil) {
        guard let log = accessLog,
              config.accessLog || config.accessLogAlso.wants(status: status, bodyBytes: bytes, seconds: seconds) else { return }
        log.record(conn: conn, status: status, bytes: bytes, seconds: seconds, response: response)
    }
}
