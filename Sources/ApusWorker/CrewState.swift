/// Who runs a threaded worker's loop (`--threads` > 1), as a value: the decisions of the
/// threads' hand-over, with no lock, clock or syscall (`Crew` holds it under its mutex).
///
/// Every thread of the worker can run the loop, one at a time: the **owner** waits for
/// events, reads, parses, and runs the app itself for the requests it finds, one after the
/// other, holding the GIL across them. It gives up the loop (`leave`) for the time of each
/// app call and takes it back when the call returns (`returned`), so a worker whose app
/// never waits costs what a single-threaded one costs: no hand-off, no wake-up.
///
/// One other thread is the **standby**: it looks at the loop every `Crew.takeOverAfter`
/// seconds. When the loop has had no owner since its last look (the same app call is still
/// running) and that call waits (on a database, a lock, a slow client), or has computed for
/// `computingLooks` periods, it takes the loop over (`.takeOver`) and serves the other
/// connections, and the thread in the app hands its finished request back through the done
/// list when it returns. While the owner sleeps in
/// epoll_wait (at two looks in a row) there is nothing to watch: the standby sleeps without
/// a timeout until the owner next goes into the app. The other threads are **idle**; one of them becomes the
/// standby when the slot is free and the owner leaves.
struct CrewState: Equatable {
    static let nobody = -1

    /// The thread that runs the loop, or `nobody` while the last owner is in the app.
    private(set) var owner = 0
    private(set) var standby = nobody
    /// The standby sleeps without a timeout (the owner was idle in epoll_wait).
    private(set) var standbySleeping = false
    /// Threads waiting to become the standby.
    private(set) var idle = 0
    /// How many times an owner went into the app: the standby compares it between looks.
    private(set) var departures: UInt64 = 0
    /// The owner is (about to be) blocked in epoll_wait.
    private(set) var polling = false
    /// The thread that last left the loop for the app.
    private(set) var leaver = 0
    /// Looks in a row by the standby that found the same app call keeping the loop.
    private(set) var longLooks = 0
    /// Looks in a row by the standby that found the owner in epoll_wait.
    private(set) var idleLooks = 0
    /// The done eventfd was written and the owner has not collected since.
    private(set) var wakePosted = false

    /// Whom the owner leaving for the app must wake.
    enum Wake: Equatable { case nobody, idleThread, standby }

    /// The owner `me` goes into the app.
    mutating func leave(_ me: Int) -> Wake {
        precondition(owner == me, "thread \(me) left a loop it does not own")
        owner = Self.nobody
        leaver = me
        departures &+= 1
        if standby == Self.nobody { return idle > 0 ? .idleThread : .nobody }
        if standbySleeping {
            standbySleeping = false
            return .standby
        }
        return .nobody
    }

    /// What a thread does once its app call returned.
    enum AfterApp: Equatable {
        /// The loop had no owner: this thread owns it again and finishes the request itself.
        case own
        /// Another thread took the loop over: the request goes on the done list, and the
        /// owner is woken through the eventfd when `wake`.
        case handBack(wake: Bool)
    }

    mutating func returned(_ me: Int) -> AfterApp {
        if owner == Self.nobody {
            owner = me
            return .own
        }
        let wake = !wakePosted
        wakePosted = true
        return .handBack(wake: wake)
    }

    /// The owner collected the done list (and drained the eventfd).
    mutating func collected() { wakePosted = false }

    mutating func startPolling(_ me: Int) {
        precondition(owner == me)
        polling = true
    }

    mutating func stopPolling() { polling = false }

    /// What a thread that is neither the owner nor in the app does next.
    enum Look: Equatable {
        /// Take the loop over; the thread owns it from now on.
        case takeOver
        /// Look again after `Crew.takeOverAfter` (`timed`) or when woken.
        case wait(timed: Bool)
        /// Another thread is the standby: wait until woken as an idle thread.
        case idle
        /// One app call has kept the loop without an owner since the last look: find out
        /// whether `thread` waits or computes, and say so with `checked`.
        case check(thread: Int)
    }

    /// Looks a computing app call keeps the loop (about 20 ms): a call that waits loses it at
    /// the first look that finds it still there, one that computes only after these. A
    /// computing thread holds the GIL, so another thread could only parse the next requests,
    /// not run them; and on a busy machine a call of a few hundred microseconds often spans
    /// a millisecond of wall-clock time while its thread waits for a CPU. Past this, the
    /// other connections are served between CPython's GIL switches, as with any thread pool.
    static let computingLooks = 20

    /// The standby's answer to `.check`: whether the thread in the app waits in the kernel
    /// (on a socket, a lock, a timer) rather than computes or waits for a CPU.
    mutating func checked(_ me: Int, waits: Bool, lastSeen: inout UInt64?) -> Look {
        precondition(standby == me && owner == Self.nobody)
        guard waits || longLooks >= Self.computingLooks else { return .wait(timed: true) }
        standby = Self.nobody
        owner = me
        lastSeen = nil
        longLooks = 0
        return .takeOver
    }

    /// One look by thread `me`. `lastSeen` is its own memory between looks: the departures
    /// counted at its previous look while the loop had no owner, or nil.
    mutating func look(_ me: Int, lastSeen: inout UInt64?) -> Look {
        if standby == Self.nobody { standby = me }
        guard standby == me else {
            lastSeen = nil
            return .idle
        }
        if owner == Self.nobody {
            if lastSeen == departures {
                // The same app call has kept the loop without an owner for a whole period.
                longLooks += 1
                return .check(thread: leaver)
            }
            lastSeen = departures
            longLooks = 0
            return .wait(timed: true)
        }
        lastSeen = nil
        longLooks = 0
        if polling {
            // Two looks in a row: the owner sleeps in epoll_wait, not just passing through it.
            idleLooks += 1
            if idleLooks >= 2 {
                idleLooks = 0
                standbySleeping = true
                return .wait(timed: false)
            }
        } else {
            idleLooks = 0
        }
        return .wait(timed: true)
    }

    /// An idle thread starts or stops waiting to be woken.
    mutating func idleWaits() { idle += 1 }
    mutating func idleWoken() { idle -= 1 }

    /// A standby woken without a timeout is awake again (by `leave`, or spuriously).
    mutating func standbyWoken() { standbySleeping = false }
}
