#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import ApusMaster

private let mib = RecycleWatch.mib


private func pids(_ verdicts: [RecycleWatch.Verdict]) -> [String] {
    verdicts.map {
        switch $0 {
        case let .recycle(w, reason): return "recycle \(w.pid) \(reason)"
        case let .kill(w, mib): return "kill \(w.pid) \(mib)"
        }
    }
}

@Test func nothingIsDueWithTheLimitsOff() {
    var watch = RecycleWatch(maxLifetime: 0, reloadOnRSSMiB: 0, evilReloadOnRSSMiB: 0)
    let table = readyTable(2)
    #expect(watch.toMeasure(table.workers, now: 10).isEmpty)
    #expect(watch.due(table.workers, rss: [100: 900 * mib], serving: 1, reloading: false, now: 1e6).isEmpty)
}

@Test func memoryIsReadAtMostOnceASecond() {
    var watch = RecycleWatch(maxLifetime: 0, reloadOnRSSMiB: 100, evilReloadOnRSSMiB: 0)
    let table = readyTable(2)
    #expect(watch.toMeasure(table.workers, now: 10) == [100, 101])
    #expect(watch.toMeasure(table.workers, now: 10.5).isEmpty)
    #expect(watch.toMeasure(table.workers, now: 11) == [100, 101])
}

@Test func everyWorkerAboveReloadOnRSSIsRecycled() {
    var watch = RecycleWatch(maxLifetime: 0, reloadOnRSSMiB: 100, evilReloadOnRSSMiB: 0)
    let table = readyTable(3)
    let due = watch.due(table.workers, rss: [100: 150 * mib, 101: 100 * mib, 102: 101 * mib], serving: 1, reloading: false, now: 5)
    #expect(pids(due) == ["recycle 100 \(WorkerTable.Recycle.rss(150))", "recycle 102 \(WorkerTable.Recycle.rss(101))"])
}

@Test func aWorkerAlreadyReplacedOrNotReadyIsNotRecycledAgain() {
    var watch = RecycleWatch(maxLifetime: 1, reloadOnRSSMiB: 100, evilReloadOnRSSMiB: 0)
    var table = readyTable(3)
    _ = table.recycle(pid: 100, reason: .maxRequests)
    _ = table.retire(slot: 1, pid: 101, deadline: 50)
    table.add(slot: 3, generation: 1, now: 4)
    _ = table.started(slot: 3, generation: 1, pid: 103)  // not ready
    let rss: [pid_t: Int] = [100: 500 * mib, 101: 500 * mib, 103: 500 * mib]
    #expect(pids(watch.due(table.workers, rss: rss, serving: 1, reloading: false, now: 100)) == [])
}

@Test func theEvilLimitKillsAnyWorkerOnce() {
    var watch = RecycleWatch(maxLifetime: 0, reloadOnRSSMiB: 100, evilReloadOnRSSMiB: 400)
    var table = readyTable(2)
    _ = table.retire(slot: 1, pid: 101, deadline: 50)
    let rss: [pid_t: Int] = [100: 401 * mib, 101: 900 * mib]
    #expect(pids(watch.due(table.workers, rss: rss, serving: 1, reloading: true, now: 5)) == ["kill 100 401", "kill 101 900"])
    // Until it is reaped it is neither measured nor killed again.
    #expect(watch.toMeasure(table.workers, now: 10) == [])
    #expect(pids(watch.due(table.workers, rss: rss, serving: 1, reloading: false, now: 10)) == [])
    watch.forget(pid: 100)
    _ = table.remove(pid: 100)
    #expect(watch.killed == [101])
}

@Test func killingWinsOverRecycling() {
    var watch = RecycleWatch(maxLifetime: 0, reloadOnRSSMiB: 100, evilReloadOnRSSMiB: 200)
    let table = readyTable(1)
    #expect(pids(watch.due(table.workers, rss: [100: 300 * mib], serving: 1, reloading: false, now: 5)) == ["kill 100 300"])
}

@Test func lifetimeRecyclesTheOldestOneAtATime() {
    var watch = RecycleWatch(maxLifetime: 10, reloadOnRSSMiB: 0, evilReloadOnRSSMiB: 0)
    var table = readyTable(3)  // started at 0, 1, 2
    #expect(pids(watch.due(table.workers, rss: [:], serving: 1, reloading: false, now: 9.5)) == [])
    #expect(pids(watch.due(table.workers, rss: [:], serving: 1, reloading: false, now: 20)) == ["recycle 100 \(WorkerTable.Recycle.lifetime)"])
    _ = table.recycle(pid: 100, reason: .lifetime)
    // While it waits for its replacement, no other worker goes.
    #expect(pids(watch.due(table.workers, rss: [:], serving: 1, reloading: false, now: 21)) == [])
    // Its replacement is ready and it is retired: the next oldest goes.
    _ = table.retire(slot: 0, pid: 100, deadline: 60)
    #expect(pids(watch.due(table.workers, rss: [:], serving: 1, reloading: false, now: 22)) == ["recycle 101 \(WorkerTable.Recycle.lifetime)"])
}

@Test func nothingIsRecycledDuringAReloadNorOutsideTheServingGeneration() {
    var watch = RecycleWatch(maxLifetime: 1, reloadOnRSSMiB: 100, evilReloadOnRSSMiB: 0)
    let table = readyTable(2)
    let rss: [pid_t: Int] = [100: 500 * mib, 101: 500 * mib]
    #expect(pids(watch.due(table.workers, rss: rss, serving: 1, reloading: true, now: 100)) == [])
    #expect(pids(watch.due(table.workers, rss: rss, serving: 2, reloading: false, now: 100)) == [])
}

@Test func statmGivesTheResidentPages() {
    #expect(ProcessMemory.parseStatm(ArraySlice("6140 1234 512 10 0 300 0\n".utf8)) == 1234)
    #expect(ProcessMemory.parseStatm(ArraySlice("6140".utf8)) == nil)
    #expect(ProcessMemory.residentBytes(getpid()).map { $0 > 0 } == true)
}
