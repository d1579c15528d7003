#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusIPC
import ApusObserve
import ApusProtocols
import ApusSys

/// The `--harakiri` watchdog: one plain thread per worker that never takes the GIL nor
/// calls Python, so a request stuck in C, in a sleep or in a loop that holds the GIL
/// cannot stop it. About every min(1 s, harakiri/4) it looks at the worker's cores (the
/// requests its app threads run, in the scoreboard); for a request past the limit, once:
///
/// 1. it claims the request's answer (`HarakiriClaim`): inApp → claiming;
/// 2. if nothing was sent yet it writes a 504 to the client, then shuts the connection down
///    (shutdown, not close: the descriptor stays the loop's until the call returns);
/// 3. it logs the request line (and its headers with --harakiri-verbose), then the Python
///    stack of every thread: faulthandler's handler for `stackSignal`, sent to this very
///    thread, so the dump is written before it goes on, whoever holds the GIL;
/// 4. it asks the master for a replacement, which retires this worker once it is ready.
///
/// A stuck call may never return, so this thread also ends the worker once it is retiring
/// and every app thread is stuck in a timed-out call (with more threads and some free, the
/// loop drains, counting abandoned connections as gone: `HarakiriClaim.abandoned`).
final class Harakiri: @unchecked Sendable {
    let seconds: Double
    let period: Double
    /// nil when faulthandler could not be set up: no stacks then (the signal's default
    /// action would end the process).
    let stackSignal: Int32?
    let threads: Int
    let message: WorkerMessage
    let statusFD: Int32
    /// Per core, the start of the request already reported: each request is reported once.
    private var reported: [Double]
    private let answer: [UInt8]
    private let answerToHEAD: [UInt8]

    /// A real-time signal Apus has no other use for; the faulthandler's dump is bound to it.
    static var stackSignal: Int32 { apus_sigrtmin() + 2 }

    init(seconds: Double, threads: Int, stackSignal: Int32?, message: WorkerMessage, statusFD: Int32) {
        self.seconds = seconds
        period = min(1, seconds / 4)
        self.stackSignal = stackSignal
        self.threads = threads
        self.message = message
        self.statusFD = statusFD
        reported = Array(repeating: 0, count: threads)
        let text = "Gateway Timeout: the application took longer than this server allows.\n"
        answer = plainResponse(status: 504, reason: "Gateway Timeout", text: text)
        answerToHEAD = plainResponse(status: 504, reason: "Gateway Timeout", text: text, includeBody: false)
    }

    /// Starts the thread; it runs until the process ends.
    func start() {
        let box = Unmanaged.passRetained(self).toOpaque()
        var tid = pthread_t()
        let rc = pthread_create(&tid, nil, { arg in
            let watchdog = Unmanaged<Harakiri>.fromOpaque(arg!).takeRetainedValue()
            watchdog.run()
        }, box)
        precondition(rc == 0, "cannot start the harakiri watchdog thread: \(Sys.describe(rc))")
    }

    private func run() -> Never {
        // The worker's signals (stop, retire, deadline) are the other threads' business; only
        // the dump's own signal is delivered here.
        _ = apus_block_signals_except(stackSignal ?? SIGKILL)
        let whole = period.rounded(.down)
        while true {
            var pause = timespec(tv_sec: Int(whole), tv_nsec: Int((period - whole) * 1e9))
            var left = timespec()
            while nanosleep(&pause, &left) != 0 && errno == EINTR { pause = left }
            let now = Sys.now()
            for i in 0..<threads { look(at: i, now: now) }
            exitIfOnlyStuck()
        }
    }

    private func look(at index: Int, now: Double) {
        guard let core = InFlight.core(index) else { return }
        let state = core.state
        guard state == .inApp || state == .answering else { return }
        let start = core.startedAt
        guard start > 0, now - start >= seconds, reported[index] != start else { return }
        if state == .answering {
            // Bytes went out: no 504, and the app thread owns the connection. The line is
            // read without a claim, so it is checked to be the same request afterwards.
            let line = core.line ?? "?"
            let headers = headerText(index)
            guard core.state == .answering, core.startedAt == start else { return }
            reported[index] = start
            report(line, ran: now - start, headers: headers,
                   outcome: "it had begun its answer, which is cut when this worker goes")
            return
        }
        // The request seen may have ended and another begun between the reads and the
        // swap: the claim holds the core while it checks that the one it took is old.
        guard core.transition(from: .inApp, to: .claiming) else { return }
        let started = core.startedAt
        if now - started < seconds {
            core.state = .inApp
            return
        }
        let line = core.line ?? "?"
        let headers = headerText(index)
        let answerable = HarakiriClaim.notes?[index].answerable ?? false
        let fd = core.fd
        if answerable {
            let bytes = line.hasPrefix("HEAD ") ? answerToHEAD : answer
            // One try, without waiting: a client that does not read loses its answer. (A C
            // helper: naming MSG_NOSIGNAL in this file breaks the release build's lookup of
            // it in the module's other files, a Swift 6.3 importer quirk.)
            _ = bytes.withUnsafeBytes { apus_send_once(fd, $0.baseAddress, $0.count) }
        }
        _ = shutdown(fd, Int32(SHUT_RDWR))
        HarakiriClaim.abandon()
        core.state = .timedOut  // the app thread may go on; it will not write to `fd`
        reported[index] = started
        Sys.wake(wakeFD)  // a draining loop counts the connection as gone from now
        report(line, ran: now - started, headers: headers,
               outcome: answerable ? "its client was answered 504" : "its connection was cut (an earlier answer was still unsent)")
    }

    /// Copies the noted headers (--harakiri-verbose) while the app thread cannot rewrite them.
    private func headerText(_ index: Int) -> String? {
        guard HarakiriClaim.verbose, let note = HarakiriClaim.notes?[index], let p = note.headers else { return nil }
        return String(decoding: UnsafeBufferPointer(start: p, count: note.headerBytes), as: UTF8.self)
    }

    private func report(_ line: String, ran: Double, headers: String?, outcome: String) {
        let stacks = stackSignal != nil ? "; Python stacks follow" : ""
        Log.warning("harakiri: \(line) has run \(Self.text(ran)) (--harakiri \(Self.text(seconds))): \(outcome); replacing this worker\(stacks)")
        if let headers {
            var text = "harakiri: headers of \(line):"
            for h in headers.split(separator: "\n") { text += "\n    \(h)" }
            Log.warning(text)
        }
        if let stackSignal { _ = apus_signal_this_thread(stackSignal) }
        message.send(to: statusFD)
    }

    /// Retiring (the replacement is ready) and every app thread is in a call that was given
    /// up on: nothing can run any more, so the process ends here. Answers the loop still
    /// held (a single thread stuck mid-batch) go with it; the buffered access lines are written.
    private func exitIfOnlyStuck() {
        guard stopRequested != 0 else { return }
        for i in 0..<threads where InFlight.core(i)?.state != .timedOut { return }
        Log.info("harakiri: retiring, and every app thread is stuck in a request past --harakiri: exiting")
        AccessLog.current?.flushBeforeExit()
        _exit(0)
    }

    /// "3.0 s", "0.5 s".
    static func text(_ seconds: Double) -> String {
        "\((seconds * 10).rounded() / 10) s"
    }
}

extension Worker {
    /// With --harakiri: the claim's notes, faulthandler's dump on `Harakiri.stackSignal`
    /// (GIL held: the main thread at boot), and the watchdog thread.
    func startHarakiri() {
        guard config.harakiri > 0 else { return }
        HarakiriClaim.setUp(threads: config.threads, verbose: config.harakiriVerbose)
        let signal = Harakiri.stackSignal
        let dumps = interpreter.registerStackDump(signal: signal)
        if !dumps {
            Log.warning("--harakiri: faulthandler could not be set up; requests past the limit are logged without their Python stacks")
        }
        let message = WorkerMessage(kind: .harakiri, slot: spec.slot, pid: getpid(), generation: spec.generation)
        Harakiri(seconds: config.harakiri, threads: config.threads, stackSignal: dumps ? signal : nil,
                 message: message, statusFD: spec.statusFD).start()
    }
}
