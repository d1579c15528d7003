#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusProtocols
import ApusSys

/// The threads of a worker with `--threads` > 1 and their hand-over of the loop: `CrewState`
/// under one mutex, two condition variables to sleep on, and the list of requests finished
/// by a thread that lost the loop while it was in the app (see `CrewState` for the roles).
final class Crew: @unchecked Sendable {
    /// How long the loop may stay without an owner (one app call running) before the standby
    /// takes it over. Short enough that a request arriving while the app waits on a
    /// database is served about a millisecond later; long enough that an app that does
    /// not wait never loses the loop (a standby's look costs one wake-up per period).
    static let takeOverAfter = 0.001

    /// Written when a finished request waits in `done` and the owner may be asleep.
    let doneFD: Int32
    private var mutex = pthread_mutex_t()
    private var idleCond = pthread_cond_t()
    private var standbyCond = pthread_cond_t()
    private var state = CrewState()
    private var done: [(AppJob, Bool)] = []
    /// The owner's side of `done`: swapped with it, so collecting allocates nothing.
    private var collected: [(AppJob, Bool)] = []

    init(threads: Int) {
        tids = Array(repeating: 0, count: threads)
        doneFD = apus_eventfd()
        precondition(doneFD >= 0, "eventfd failed: \(Sys.describe(errno))")
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&idleCond, nil)
        pthread_cond_init(&standbyCond, nil)
    }

    /// The owner `me` goes into the app: the loop has no owner until `returned`.
    func leave(_ me: Int) {
        pthread_mutex_lock(&mutex)
        let wake = state.leave(me)
        pthread_mutex_unlock(&mutex)
        switch wake {
        case .nobody: break
        case .idleThread: pthread_cond_signal(&idleCond)
        case .standby: pthread_cond_signal(&standbyCond)
        }
    }

    /// Thread `me` is back from the app. True: it owns the loop again and finishes the
    /// request itself. False: the request was handed to the thread that took the loop over.
    func returned(_ me: Int, _ job: AppJob, keepAlive: Bool) -> Bool {
        pthread_mutex_lock(&mutex)
        let after = state.returned(me)
        if case .handBack = after { done.append((job, keepAlive)) }
        pthread_mutex_unlock(&mutex)
        switch after {
        case .own: return true
        case let .handBack(wake):
            if wake { Sys.wake(doneFD) }
            return false
        }
    }

    /// On the owner: the requests other threads finished, to be finished by the loop.
    func collect(_ body: (AppJob, Bool) -> Void) {
        Sys.drain(doneFD)
        pthread_mutex_lock(&mutex)
        swap(&done, &collected)
        state.collected()
        pthread_mutex_unlock(&mutex)
        for (job, keep) in collected { body(job, keep) }
        collected.removeAll(keepingCapacity: true)
    }

    /// Around the owner's epoll_wait with a timeout: a standby that sees the loop idle sleeps
    /// until the next `leave` instead of looking every period.
    func polling(_ me: Int, _ body: () -> Int) -> Int {
        pthread_mutex_lock(&mutex)
        state.startPolling(me)
        pthread_mutex_unlock(&mutex)
        let n = body()
        pthread_mutex_lock(&mutex)
        state.stopPolling()
        pthread_mutex_unlock(&mutex)
        return n
    }

    /// Each thread's id (for `threadWaits`), set by the thread itself when it starts.
    private var tids: [Int32]

    /// Thread `me` says who it is; before it first leaves or waits for the loop.
    func register(_ me: Int) {
        let tid = apus_gettid()
        pthread_mutex_lock(&mutex)
        tids[me] = tid
        pthread_mutex_unlock(&mutex)
    }

    /// Whether thread `tid` of this process sleeps in the kernel (state S or D in
    /// /proc/self/task/TID/stat: it waits on a socket, a lock, a timer) rather than runs or
    /// waits for a CPU (R). An unreadable state counts as waiting.
    static func threadWaits(_ tid: Int32) -> Bool {
        var path: [UInt8] = Array("/proc/self/task/".utf8)
        appendDecimal(Int(tid), to: &path)
        path.append(contentsOf: "/stat".utf8)
        path.append(0)
        let fd = path.withUnsafeBufferPointer { p in
            p.baseAddress!.withMemoryRebound(to: CChar.self, capacity: p.count) { open($0, O_RDONLY | O_CLOEXEC) }
        }
        guard fd >= 0 else { return true }
        defer { Sys.close(fd) }
        var buffer = [UInt8](repeating: 0, count: 256)
        let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        guard n > 0 else { return true }
        // "TID (name) S ...": the name may hold spaces and parentheses; the state follows
        // the last ')'.
        guard let close = buffer[0..<n].lastIndex(of: UInt8(ascii: ")")), close + 2 < n else { return true }
        let state = buffer[close + 2]
        return state != UInt8(ascii: "R")
    }

    /// Blocks thread `me`, which neither owns the loop nor runs the app, until it owns it.
    func waitForLoop(_ me: Int) {
        var lastSeen: UInt64? = nil
        pthread_mutex_lock(&mutex)
        defer { pthread_mutex_unlock(&mutex) }
        while true {
            var look = state.look(me, lastSeen: &lastSeen)
            if case let .check(thread) = look {
                // Under the mutex: the thread cannot come back and leave again meanwhile.
                look = state.checked(me, waits: Self.threadWaits(tids[thread]), lastSeen: &lastSeen)
            }
            switch look {
            case .check:
                preconditionFailure("checked answers with a decision")
            case .takeOver:
                return
            case .idle:
                state.idleWaits()
                pthread_cond_wait(&idleCond, &mutex)
                state.idleWoken()
            case .wait(timed: false):
                pthread_cond_wait(&standbyCond, &mutex)
                state.standbyWoken()
            case .wait(timed: true):
                // Nothing wakes a standby that looks on its own: a plain sleep, one system
                // call per look (a timed wait on the condition variable costs two).
                pthread_mutex_unlock(&mutex)
                var period = timespec(tv_sec: 0, tv_nsec: Int(Self.takeOverAfter * 1e9))
                nanosleep(&period, nil)
                pthread_mutex_lock(&mutex)
            }
        }
    }

    /// Starts `count` more threads; each runs `body(index)` with index 1, 2, ...
    static func start(_ count: Int, _ body: @escaping @Sendable (Int) -> Void) {
        for i in 1...count {
            let box = Unmanaged.passRetained(ThreadStart(index: i, body: body)).toOpaque()
            var tid = pthread_t()
            let rc = pthread_create(&tid, nil, { arg in
                let start = Unmanaged<ThreadStart>.fromOpaque(arg!).takeRetainedValue()
                start.body(start.index)
                return nil
            }, box)
            precondition(rc == 0, "cannot start an app thread: \(Sys.describe(rc))")
        }
    }

    private final class ThreadStart {
        let index: Int
        let body: (Int) -> Void
        init(index: Int, body: @escaping (Int) -> Void) {
            self.index = index
            self.body = body
        }
    }
}
