#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusIPC
import ApusProtocols

/// The app threads' side of `--harakiri`: what they note about each request for the
/// watchdog (`Harakiri`), and the claim that decides who answers the client.
///
/// A request's answer belongs to whoever moves its core out of `inApp` first: the app
/// thread (to `answering`, when the app returns or before its first bytes go out) or the
/// watchdog (to `claiming`, then `timedOut`, after it wrote the 504 and shut the connection
/// down). An app thread that loses writes nothing more to that connection, which the loop
/// then closes. With --harakiri off nothing here runs but one test of `enabled`.
enum HarakiriClaim {
    /// Set once at worker boot, before any app thread starts; read-only afterwards.
    nonisolated(unsafe) static var enabled = false
    nonisolated(unsafe) static var verbose = false
    /// What the app thread notes per core, in the worker's own memory (the watchdog is in
    /// the same process). Written before the core enters `inApp`, read by the watchdog
    /// only while it holds the core in `claiming`, so the two never overlap.
    nonisolated(unsafe) static var notes: UnsafeMutablePointer<Note>? = nil
    /// Connections whose request timed out while its call is still in the app: the loop's
    /// drain counts them as gone (their client got its answer, or nothing can be sent).
    nonisolated(unsafe) static var abandoned: UnsafeMutablePointer<UInt32> = {
        let p = UnsafeMutablePointer<UInt32>.allocate(capacity: 1)
        p.initialize(to: 0)
        return p
    }()

    /// Room for the headers of a request kept for `--harakiri-verbose`; longer ones are cut.
    static let headerRoom = 4096

    struct Note {
        /// Nothing is owed on the connection before this request's answer (no earlier
        /// pipelined answer still pending), so a 504 written by the watchdog is in order.
        var answerable = false
        /// "Name: value\n" lines, with --harakiri-verbose.
        var headers: UnsafeMutablePointer<UInt8>? = nil
        var headerBytes = 0
    }

    static func setUp(threads: Int, verbose: Bool) {
        enabled = true
        self.verbose = verbose
        let notes = UnsafeMutablePointer<Note>.allocate(capacity: threads)
        for i in 0..<threads {
            var note = Note()
            if verbose { note.headers = .allocate(capacity: headerRoom) }
            (notes + i).initialize(to: note)
        }
        self.notes = notes
    }

    /// On the app thread, before `InFlight.begin` makes the request visible to the watchdog.
    static func noteRequest(_ index: Int, _ conn: Connection, _ buf: UnsafeRawBufferPointer) {
        guard let notes, index < InFlight.count else { return }
        notes[index].answerable = conn.pendingSent >= conn.pendingOut.count
        guard verbose, let out = notes[index].headers else { return }
        var n = 0
        func put(_ b: UInt8) {
            if n < headerRoom { out[n] = b; n += 1 }
        }
        func line(_ name: Range<Int>, _ value: Range<Int>) {
            guard name.upperBound <= buf.count, value.upperBound <= buf.count else { return }
            for b in buf[name] { put(b) }
            put(UInt8(ascii: ":")); put(UInt8(ascii: " "))
            for b in buf[value] { put(b) }
            put(10)
        }
        if conn.machine.wire == .uwsgi {
            for v in conn.uwsgiHead.vars { line(v.key, v.value) }
        } else {
            for h in conn.head.headers { line(h.name, h.value) }
        }
        notes[index].headerBytes = n
    }

    /// On the app thread: takes the answer of its request (inApp → answering). False when
    /// the watchdog took it first: the client already has its 504 or the connection is cut.
    static func claim(_ index: Int) -> Bool {
        guard enabled, let core = InFlight.core(index) else { return true }
        while true {
            if core.transition(from: .inApp, to: .answering) { return true }
            switch core.state {
            case .claiming:
                sched_yield()  // the watchdog holds it for a send and a shutdown
            case .timedOut:
                return false
            case .idle, .inApp, .answering:
                return true
            }
        }
    }

    /// The watchdog claimed a request (its connection is abandoned by the app).
    static func abandon() { _ = apus_atomic_add_u32(abandoned, 1) }

    /// A timed-out call came back after all: its connection is closed by the loop as usual.
    static func returnedLate() { _ = apus_atomic_add_u32(abandoned, -1) }

    static var abandonedConnections: Int { Int(apus_atomic_load_u32(abandoned)) }
}
