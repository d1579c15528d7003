#if canImport(Glibc)
import Glibc
#endif
import ApusIPC
import ApusObserve

/// `--max-requests`: the number of requests this worker serves before it asks the master
/// for a replacement. Each worker draws its own limit at start, `--max-requests` plus a
/// random 0...`--max-requests-jitter`, so workers started together are not recycled
/// together. The check is one comparison on the request path; the count is the slot's
/// `requests` counter, bumped with the GIL held (`InFlight.end`), so exactly one request
/// sees it reach the limit and the message is sent once. The worker keeps serving until
/// the master retires it (its replacement ready first).
enum RequestBudget {
    /// `UInt64.max` when --max-requests is off: never reached.
    nonisolated(unsafe) static var limit: UInt64 = .max
    nonisolated(unsafe) static var spent: WorkerMessage? = nil
    nonisolated(unsafe) static var statusFD: Int32 = -1
    nonisolated(unsafe) static var described = ""

    static func setUp(maxRequests: Int, jitter: Int, message: WorkerMessage, statusFD fd: Int32) {
        guard maxRequests > 0 else { return }
        let extra = jitter > 0 ? Int.random(in: 0...jitter) : 0
        limit = UInt64(maxRequests + extra)
        spent = message
        statusFD = fd
        described = jitter > 0 ? "--max-requests \(maxRequests) + \(extra) of --max-requests-jitter \(jitter)" : "--max-requests \(maxRequests)"
    }

    /// `finished`: the worker's count of finished requests, just incremented.
    @inline(__always) static func check(_ finished: UInt64) {
        if finished == limit { reached() }
    }

    private static func reached() {
        guard let spent else { return }
        Log.info("served \(limit) requests (\(described)): asking for a replacement")
        spent.send(to: statusFD)
    }
}
