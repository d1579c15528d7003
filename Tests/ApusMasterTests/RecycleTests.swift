import Testing
@testable import ApusMaster


private func strength(_ table: WorkerTable, pending: Int = 0) -> [WorkerTable.Step] {
    table.keepStrength(generation: 1, zygoteRunning: true, pendingSpawns: pending, now: 100)
}

private func retired(_ steps: [WorkerTable.Step]) -> [Int32] {
    steps.map { step -> Int32 in
        if case let .retire(w) = step { return w.pid }
        return 0
    }
}

@Test func aRecycledWorkerIsReplacedBeforeItIsRetired() {
    var table = readyTable(2)
    let marked = table.recycle(pid: 100, reason: .maxRequests)
    #expect(marked?.recycling == .maxRequests)
    // Its replacement first; it keeps serving meanwhile.
    #expect(strength(table) == [.spawn(count: 1)])
    table.add(slot: table.freeSlot(), generation: 1, now: 50)
    #expect(strength(table) == [])
    _ = table.started(slot: 2, generation: 1, pid: 102)
    #expect(strength(table) == [])  // started, not ready: the old one stays
    _ = table.ready(slot: 2, pid: 102)
    let steps = strength(table)
    #expect(steps.count == 1)
    guard case let .retire(w)? = steps.first else { Issue.record("expected a retire, got \(steps)"); return }
    #expect(w.pid == 100)
}

@Test func aWorkerIsRecycledOnceAndNotWhileRetiring() {
    var table = readyTable(2)
    do { let first = table.recycle(pid: 101, reason: .harakiri); #expect(first != nil) }
    do { let again = table.recycle(pid: 101, reason: .maxRequests); #expect(again == nil) }
    do { let unknown = table.recycle(pid: 999, reason: .maxRequests); #expect(unknown == nil) }
    do { let done = table.retire(slot: 0, pid: 100, deadline: 10); #expect(done) }
    do { let retiring = table.recycle(pid: 100, reason: .lifetime); #expect(retiring == nil) }
}

@Test func manyRecycledWorkersLeaveAsTheirReplacementsBecomeReady() {
    var table = readyTable(3)
    for pid: Int32 in [100, 101, 102] { _ = table.recycle(pid: pid, reason: .rss(300)) }
    #expect(strength(table) == [.spawn(count: 3)])
    // One replacement ready: one recycled worker (the oldest) goes.
    table.add(slot: 3, generation: 1, now: 60)
    table.add(slot: 4, generation: 1, now: 60)
    table.add(slot: 5, generation: 1, now: 60)
    _ = table.started(slot: 3, generation: 1, pid: 103)
    _ = table.ready(slot: 3, pid: 103)
    var steps = strength(table)
    #expect(retired(steps) == [100])
    _ = table.retire(slot: 0, pid: 100, deadline: 200)
    #expect(strength(table) == [])
    _ = table.started(slot: 4, generation: 1, pid: 104)
    _ = table.ready(slot: 4, pid: 104)
    _ = table.started(slot: 5, generation: 1, pid: 105)
    _ = table.ready(slot: 5, pid: 105)
    steps = strength(table)
    #expect(retired(steps) == [101, 102])
}

@Test func aRecycledWorkerThatDiesIsNotReplacedTwice() {
    var table = readyTable(1)
    _ = table.recycle(pid: 100, reason: .maxRequests)
    table.add(slot: 1, generation: 1, now: 60)
    do { let gone = table.remove(pid: 100); #expect(gone != nil) }
    #expect(strength(table) == [])  // the replacement is on its way
}

@Test func exitsAreDescribedWithTheSignalName() {
    #expect(describeExit(3 << 8) == "exit status 3")
    #expect(describeExit(11) == "killed by signal 11 (SIGSEGV)")
    #expect(describeExit(11 | 0x80) == "killed by signal 11 (SIGSEGV, core dumped)")
    #expect(describeExit(9) == "killed by signal 9 (SIGKILL)")
    #expect(signalName(64) == "signal 64")
}

@Test func timesFromTheScoreboardNeverTrapTheMaster() {
    #expect(secondsText(2.5) == "2.5 s")
    #expect(secondsText(42.4) == "42 s")
    #expect(secondsText(.infinity) == "? s")
    #expect(secondsText(.nan) == "? s")
    #expect(secondsText(-1) == "? s")
    #expect(secondsText(1e300) == "? s")
}
