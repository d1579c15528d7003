import Testing
@testable import ApusIPC

/// A slot's counters: statuses by class, bytes, the last duration, exceptions, and the
/// histogram's buckets (upper bounds inclusive, as Prometheus's `le`).
@Test func scoreboardCounters() {
    let tally = ConnectionTally()
    let slot = tally.board.slot(3)
    slot.reset(pid: 42)
    let c = slot.counters
    c.recordApp(status: 200, bytes: 5, micros: 3_000, failed: false)     // 0.003 s: bucket 0 (le 0.005)
    c.recordApp(status: 204, bytes: 0, micros: 5_000, failed: false)     // exactly 0.005: still bucket 0
    c.recordApp(status: 404, bytes: 10, micros: 7_000, failed: false)    // bucket 1 (le 0.01)
    c.recordApp(status: 500, bytes: 22, micros: 20_000_000, failed: true) // above 10 s: the last bucket
    c.recordApp(status: 999, bytes: 1, micros: 1, failed: false)         // no class, still a request
    c.recordStatic(status: 304, bytes: 0)
    c.recordStatic(status: 200, bytes: 100)
    #expect(c.appStatus(1) == 2 && c.appStatus(3) == 1 && c.appStatus(4) == 1 && c.appStatus(0) == 0)
    #expect(c.staticStatus(1) == 1 && c.staticStatus(2) == 1)
    #expect(c.exceptions == 1)
    #expect(c.lastMicros == 1)
    #expect(c.bodyBytes == 5 + 10 + 22 + 1 + 100)
    #expect(c.histogram(0) == 3 && c.histogram(1) == 1 && c.histogram(Scoreboard.durationBounds.count) == 1)
    #expect((0...Scoreboard.durationBounds.count).reduce(0) { $0 + c.histogram($1) } == 5)
    // A new worker in the slot starts from zero; other slots are untouched.
    #expect(tally.board.slot(2).counters.histogram(0) == 0)
    slot.reset(pid: 43)
    #expect(c.histogram(0) == 0 && c.exceptions == 0 && slot.pid == 43)
}
