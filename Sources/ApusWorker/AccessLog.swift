#if canImport(Glibc)
import Glibc
#endif
import ApusObserve
import ApusProtocols
import ApusSys

/// One line per request in the `--log-format` format (the common log format by default),
/// buffered per loop iteration and written
/// to stderr, or to `--access-logfile` (stdout for "-", else a file opened with O_APPEND that
/// every worker appends to), in writes of whole lines: to a pipe, at most PIPE_BUF bytes a
/// write (a longer line alone), so no line mixes with another process's. Lines are
/// assembled from bytes: no `String` per request (and none of the standard library's string
/// code in the worker, see docs/architecture.md, "Memory of a worker"). AccessLine.swift
/// turns the format's ops into bytes.
final class AccessLog: @unchecked Sendable {
    // The mutable state is touched only with `lock` held, so it opts out of the run-time
    // exclusivity check (a call into the runtime per access; the loop flushes every turn).
    @exclusivity(unchecked) private var pending: [UInt8] = []
    private var lock = pthread_mutex_t()
    @exclusivity(unchecked) private var second = -1
    /// "26/Nov/2026:22:10:01 +0000" and "2026-11-26T22:10:01Z", rebuilt once a second.
    @exclusivity(unchecked) var stamp: [UInt8] = []
    @exclusivity(unchecked) var isoStamp: [UInt8] = []
    @exclusivity(unchecked) var epoch = 0

    let format: LogFormat
    let plan: AccessPlan
    let forwardedFor: Bool
    /// The worker's number, generation and pid, in decimal.
    let workerDigits: [UInt8]
    let generationDigits: [UInt8]
    let pidDigits: [UInt8]
    /// Generated request ids: this prefix (the worker's start time and pid, in hex) and a
    /// counter, unique across workers and restarts without a syscall per request.
    let idPrefix: [UInt8]
    @exclusivity(unchecked) var idCounter = 0
    /// The line being written.
    @exclusivity(unchecked) private var line = LineBuffer()

    /// Where the lines go; SIGUSR1 may swap the file under this number (Worker.swift).
    let fd: Int32

    /// Bytes per write: PIPE_BUF for a pipe or socket, where a longer write may interleave
    /// with another process's; a regular file opened with O_APPEND takes a batch in one write.
    private let writeLimit: Int

    init(fd: Int32, format: LogFormat = .common, forwardedFor: Bool = false, worker: Int = 0, generation: Int = 0) {
        self.fd = fd
        self.format = format
        plan = AccessPlan(format)
        self.forwardedFor = forwardedFor
        var st = stat()
        let regular = fstat(fd, &st) == 0 && (st.st_mode & S_IFMT) == S_IFREG
        writeLimit = regular ? Int.max : Int(PIPE_BUF)
        pthread_mutex_init(&lock, nil)
        var digits: [UInt8] = []
        appendDecimal(worker, to: &digits)
        workerDigits = digits
        digits = []
        appendDecimal(generation, to: &digits)
        generationDigits = digits
        digits = []
        appendDecimal(Int(getpid()), to: &digits)
        pidDigits = digits
        var prefix: [UInt8] = []
        var now = timespec()
        clock_gettime(CLOCK_REALTIME, &now)
        appendLowerHex(UInt64(now.tv_sec) * 1000 + UInt64(now.tv_nsec / 1_000_000), to: &prefix)
        prefix.append(UInt8(ascii: "-"))
        appendLowerHex(UInt64(getpid()), to: &prefix)
        prefix.append(UInt8(ascii: "-"))
        idPrefix = prefix
    }

    /// `response`: the values of the response headers the format names (nil: none taken).
    func record(conn: Connection, status: Int, bytes: Int, seconds: Double, response: ResponseHeaderCapture?) {
        let raw = UnsafeRawBufferPointer(start: conn.buffer + conn.start, count: conn.end - conn.start)
        pthread_mutex_lock(&lock)
        updateStamp()
        var out = line
        out.reset()
        appendLine(to: &out, conn: conn, raw: raw, status: status, bytes: bytes, seconds: seconds, response: response)
        out.append(UInt8(ascii: "\n"))
        line = out  // it may have grown
        pending.append(contentsOf: out.bytes)
        let big = pending.count > 32768
        pthread_mutex_unlock(&lock)
        if big { flush() }
    }

    func flush() {
        pthread_mutex_lock(&lock)
        defer { pthread_mutex_unlock(&lock) }
        if pending.isEmpty { return }
        pending.withUnsafeBytes { all in
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
        }
        pending.removeAll(keepingCapacity: true)
    }

    private static let months: StaticString = "JanFebMarAprMayJunJulAugSepOctNovDec"

    private func updateStamp() {
        var t = time(nil)
        if Int(t) == second { return }
        second = Int(t)
        epoch = Int(t)
        var tmv = tm()
        gmtime_r(&t, &tmv)
        isoStamp.removeAll(keepingCapacity: true)
        appendDecimal(Int(tmv.tm_year) + 1900, to: &isoStamp)
        for (sep, v) in [(UInt8(ascii: "-"), tmv.tm_mon + 1), (UInt8(ascii: "-"), tmv.tm_mday), (UInt8(ascii: "T"), tmv.tm_hour),
                         (UInt8(ascii: ":"), tmv.tm_min), (UInt8(ascii: ":"), tmv.tm_sec)] {
            isoStamp.append(sep)
            appendDecimal(Int(v), minimumDigits: 2, to: &isoStamp)
        }
        isoStamp.append(UInt8(ascii: "Z"))
        stamp.removeAll(keepingCapacity: true)
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
