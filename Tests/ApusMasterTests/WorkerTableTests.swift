import Testing
@testable import ApusMaster

/// A table with `count` workers of generation `g`, started and ready, pids 100, 101, ...
private func staffed(_ count: Int, generation g: UInt32 = 1, desired: Int? = nil) -> WorkerTable {
    var table = WorkerTable(desired: desired ?? count)
    for i in 0..<count {
        let slot = table.freeSlot()
        table.add(slot: slot, generation: g, now: 0)
        do { let done = table.started(slot: slot, generation: g, pid: 100 + Int32(i)); #expect(done) }
        #expect(table.ready(slot: slot, pid: 100 + Int32(i)) != nil)
    }
    return table
}

@Test func anEmptyTableAsksForItsZygoteThenItsWorkers() {
    let table = WorkerTable(desired: 3)
    #expect(table.keepStrength(generation: 1, zygoteRunning: false, pendingSpawns: 0, now: 0) == [.startZygote])
    #expect(table.keepStrength(generation: 1, zygoteRunning: true, pendingSpawns: 0, now: 0) == [.spawn(count: 3)])
    // Workers queued until the zygote is ready count as asked for.
    #expect(table.keepStrength(generation: 1, zygoteRunning: true, pendingSpawns: 3, now: 0) == [])
}

@Test func slotsAreTheLowestFreeOnes() {
    var table = staffed(3)
    #expect(table.freeSlot() == 3)
    #expect(table.remove(pid: 101)?.slot == 1)
    #expect(table.freeSlot() == 1)
    // A worker asked for holds its slot before it has a pid.
    table.add(slot: 1, generation: 1, now: 5)
    #expect(table.freeSlot() == 3)
    #expect(table.keepStrength(generation: 1, zygoteRunning: true, pendingSpawns: 0, now: 5) == [])
}

@Test func startedMatchesSlotGenerationAndAnEmptyPid() {
    var table = WorkerTable(desired: 1)
    table.add(slot: 0, generation: 2, now: 0)
    do { let done = table.started(slot: 0, generation: 1, pid: 50); #expect(!done) }  // another generation's: nobody waits for it
    do { let done = table.started(slot: 0, generation: 2, pid: 50); #expect(done) }
    do { let done = table.started(slot: 0, generation: 2, pid: 51); #expect(!done) }  // the slot has its worker
    #expect(table.ready(slot: 0, pid: 51) == nil)
    #expect(table.ready(slot: 0, pid: 50)?.ready == true)
    #expect(table.everReady)
    #expect(table.pids == [50])
}

@Test func aDeadWorkerIsReplaced() {
    var table = staffed(2)
    #expect(table.remove(pid: 100) != nil)
    #expect(table.remove(pid: 100) == nil)
    #expect(table.remove(pid: 0) == nil)  // never matches a worker still being forked
    #expect(table.keepStrength(generation: 1, zygoteRunning: true, pendingSpawns: 0, now: 1) == [.spawn(count: 1)])
}

@Test func bootFailuresBackOffAndAReadyWorkerResetsThem() {
    var table = WorkerTable(desired: 1)
    #expect(table.workerBootFailed(now: 10) == 0.5)
    #expect(table.keepStrength(generation: 1, zygoteRunning: true, pendingSpawns: 0, now: 10.2) == [])
    #expect(table.keepStrength(generation: 1, zygoteRunning: true, pendingSpawns: 0, now: 10.5) == [.spawn(count: 1)])
    #expect(table.workerBootFailed(now: 11) == 1)
    #expect(table.workerBootFailed(now: 12) == 2)
    for _ in 0..<10 { _ = table.workerBootFailed(now: 13) }
    #expect(table.workerBootFailed(now: 14) == WorkerTable.maxBackOff)
    #expect(table.nextSpawnAt == 14 + WorkerTable.maxBackOff)
    table.add(slot: 0, generation: 1, now: 50)
    _ = table.started(slot: 0, generation: 1, pid: 7)
    _ = table.ready(slot: 0, pid: 7)
    #expect(table.bootFailures == 0)
    #expect(table.everReady)
}

@Test func aZygoteBootFailureWaitsBeforeCountingItself() {
    var table = WorkerTable(desired: 1)
    #expect(table.zygoteBootFailed(now: 0) == 0.25)
    #expect(table.zygoteBootFailed(now: 0) == 0.5)
    #expect(table.keepStrength(generation: 1, zygoteRunning: false, pendingSpawns: 0, now: 0.4) == [])
    #expect(table.keepStrength(generation: 1, zygoteRunning: false, pendingSpawns: 0, now: 0.5) == [.startZygote])
    // A zygote that was ready is replaced at once.
    table.delaySpawns(until: 0.6)
    #expect(table.keepStrength(generation: 1, zygoteRunning: false, pendingSpawns: 0, now: 0.6) == [.startZygote])
}

@Test func surplusWorkersAreRetiredHighestSlotFirstEvenDuringTheBackOff() {
    var table = staffed(4)
    table.desired = 2
    _ = table.workerBootFailed(now: 0)
    let steps = table.keepStrength(generation: 1, zygoteRunning: true, pendingSpawns: 0, now: 0)
    #expect(steps.map { if case let .retire(w) = $0 { Int(w.slot) } else { 99 } } == [3, 2])
    for case let .retire(w) in steps {
        let done = table.retire(slot: w.slot, pid: w.pid, deadline: 30)
        #expect(done)
    }
    // Retiring workers no longer count: the table is at strength.
    #expect(table.keepStrength(generation: 1, zygoteRunning: true, pendingSpawns: 0, now: 1) == [])
    #expect(table.workers.filter(\.retiring).map(\.slot) == [2, 3])
}

@Test func onlyWorkersOfTheServingGenerationCount() {
    var table = staffed(2, generation: 1)
    #expect(table.keepStrength(generation: 2, zygoteRunning: true, pendingSpawns: 0, now: 0) == [.spawn(count: 2)])
}

@Test func olderWorkersAreListedOldestGenerationFirst() {
    var table = staffed(2, generation: 1)
    table.add(slot: 2, generation: 2, now: 0)
    _ = table.started(slot: 2, generation: 2, pid: 300)
    table.add(slot: 3, generation: 3, now: 0)
    #expect(table.older(than: 3, count: nil).map(\.generation) == [1, 1, 2])
    #expect(table.older(than: 3, count: 1).map(\.pid) == [100])
    do { let done = table.retire(slot: 0, pid: 100, deadline: 9); #expect(done) }
    #expect(table.older(than: 3, count: 1).map(\.pid) == [101])
    do { let done = table.retire(slot: 0, pid: 101, deadline: 9); #expect(!done) }  // slot and pid must match
}

@Test func deadlinesCutThenKill() {
    var table = staffed(2)
    do { let done = table.retire(slot: 1, pid: 101, deadline: 10); #expect(done) }
    #expect(table.dueDeadlines(now: 9.9) == [])
    let cut = table.dueDeadlines(now: 10)
    #expect(cut.count == 1)
    guard case let .cut(w)? = cut.first else { Issue.record("expected a cut"); return }
    #expect(w.pid == 101 && w.cutSent && w.deadline == 11)
    #expect(table.dueDeadlines(now: 10.5) == [])
    guard case let .kill(k)? = table.dueDeadlines(now: 11).first else { Issue.record("expected a kill"); return }
    #expect(k.pid == 101)
    #expect(table.dueDeadlines(now: 100) == [])  // killed once; its exit is reaped
}

@Test func aWorkerNotStartedHasNoDeadlineActions() {
    var table = WorkerTable(desired: 1)
    table.add(slot: 0, generation: 1, now: 0)
    table.setDeadlines(1)
    #expect(table.dueDeadlines(now: 5) == [])
}

@Test func stillbornWorkersAreDroppedAfterTheBirthTimeout() {
    var table = staffed(1)
    table.add(slot: 1, generation: 1, now: 0)
    table.dropStillborn(now: WorkerTable.birthTimeout)
    #expect(table.workers.count == 2)
    table.dropStillborn(now: WorkerTable.birthTimeout + 0.1)
    #expect(table.workers.map(\.slot) == [0])
}

@Test func abandoningAChainKeepsItsReadyWorkers() {
    var table = staffed(2, generation: 1)
    table.add(slot: 2, generation: 2, now: 0)
    _ = table.started(slot: 2, generation: 2, pid: 200)
    _ = table.ready(slot: 2, pid: 200)
    table.add(slot: 3, generation: 2, now: 0)
    _ = table.started(slot: 3, generation: 2, pid: 201)
    table.add(slot: 4, generation: 2, now: 0)
    let toRetire = table.abandon(generation: 2, adopter: 1)
    #expect(toRetire.map(\.pid) == [201])  // started, not ready
    #expect(table.worker(pid: 200)?.generation == 1)  // adopted
    #expect(!table.workers.contains { $0.slot == 4 })  // being forked: dropped
}

@Test func abandoningAWorkerReloadRetiresAllItsWorkers() {
    var table = staffed(1, generation: 1)
    table.add(slot: 1, generation: 2, now: 0)
    _ = table.started(slot: 1, generation: 2, pid: 200)
    _ = table.ready(slot: 1, pid: 200)
    #expect(table.abandon(generation: 2, adopter: nil).map(\.pid) == [200])
}

@Test func stoppingGivesEveryWorkerTheEarlierDeadline() {
    var table = staffed(2)
    do { let done = table.retire(slot: 0, pid: 100, deadline: 5); #expect(done) }
    table.add(slot: 2, generation: 1, now: 0)
    #expect(table.stopAll(deadline: 20) == [100, 101])
    #expect(table.workers.map(\.deadline) == [5, 20])
    #expect(table.workers.count == 2)  // the one being forked is dropped
    table.setDeadlines(3)
    #expect(table.workers.map(\.deadline) == [3, 3])
}

/// `apus.worker_id()`: 1...N within a generation, whatever the slots.
private func numbered(_ count: Int, generation g: UInt32, into table: inout WorkerTable, firstPid: Int32) {
    for i in 0..<count {
        let slot = table.freeSlot()
        table.add(slot: slot, generation: g, now: 0, number: table.freeNumber(generation: g))
        _ = table.started(slot: slot, generation: g, pid: firstPid + Int32(i))
        _ = table.ready(slot: slot, pid: firstPid + Int32(i))
    }
}

@Test func workerNumbersRunFromOneInEachGeneration() {
    var table = WorkerTable(desired: 3)
    numbered(3, generation: 1, into: &table, firstPid: 100)
    #expect(table.workers.map(\.number) == [1, 2, 3])
    // A new generation (a reload) numbers its workers from 1 again, in slots 3, 4, 5.
    numbered(3, generation: 2, into: &table, firstPid: 200)
    #expect(table.workers.filter { $0.generation == 2 }.map(\.number) == [1, 2, 3])
    #expect(table.workers.filter { $0.generation == 2 }.map(\.slot) == [3, 4, 5])
}

@Test func aReplacementTakesTheNumberOfTheWorkerItReplaces() {
    var table = WorkerTable(desired: 3)
    numbered(3, generation: 1, into: &table, firstPid: 100)
    // Dead: its number is free again.
    _ = table.remove(pid: 101)
    #expect(table.freeNumber(generation: 1) == 2)
    numbered(1, generation: 1, into: &table, firstPid: 300)
    // Being recycled: its replacement, started while it still serves, takes its number.
    #expect(table.recycle(pid: 102, reason: .maxRequests) != nil)
    #expect(table.freeNumber(generation: 1) == 3)
}
