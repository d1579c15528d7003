import Testing
@testable import ApusMaster

private func sample() -> UpgradeState {
    var s = UpgradeState(startDirectory: "/srv/app with\ttab\nand newline\\", serving: 7,
                         statusRead: 5, statusWrite: 6, tallyFD: 8)
    s.fifoFD = 9
    s.fifoPath = "/run/apus.fifo"
    s.sockets = [.init(fd: 3, bind: "http://0.0.0.0:8000", unixPath: nil),
                 .init(fd: 4, bind: "uwsgi:/run/apus.sock", unixPath: "/run/apus.sock")]
    s.workers = [.init(slot: 0, pid: 101, generation: 7, ready: true, retiring: false, startedAt: 12.5, deadline: nil),
                 .init(slot: 3, pid: 102, generation: 6, ready: false, retiring: true, startedAt: 11.25, deadline: 40.75)]
    return s
}

@Test func upgradeStateSurvivesItsTextForm() throws {
    let s = sample()
    #expect(try UpgradeState(decoding: s.encoded()) == s)
    #expect(s.descriptors.sorted() == [3, 4, 5, 6, 8, 9])
}

@Test func upgradeStateWithoutFIFOOrWorkers() throws {
    let s = UpgradeState(startDirectory: "/", serving: 1, statusRead: 3, statusWrite: 4, tallyFD: 5)
    let back = try UpgradeState(decoding: s.encoded())
    #expect(back == s && back.fifoFD == -1 && back.descriptors == [3, 4, 5])
}

@Test func upgradeStateRefusesAnotherFormatOrBrokenLines() {
    let text = sample().encoded()
    #expect(throws: UpgradeState.Malformed.self) { try UpgradeState(decoding: text.replacing("apus-upgrade-1", with: "apus-upgrade-2")) }
    #expect(throws: UpgradeState.Malformed.self) { try UpgradeState(decoding: text + "worker\t1\tx\n") }
    #expect(throws: UpgradeState.Malformed.self) { try UpgradeState(decoding: text + "mystery\t1\n") }
    #expect(throws: UpgradeState.Malformed.self) { try UpgradeState(decoding: "apus-upgrade-1\nserving\t1\n") }
}

@Test func adoptedWorkersKeepTheirRecordsAndCountAsEverReady() {
    let s = sample()
    let table = WorkerTable(desired: 4, adopting: s.workers + [.init(slot: 5, pid: 0, generation: 7, ready: false, retiring: false, startedAt: 1, deadline: nil)])
    #expect(table.workers.map(\.pid) == [101, 102])  // one still being forked is not adopted
    #expect(table.everReady)
    #expect(table.workers[1].retiring && table.workers[1].deadline == 40.75)
    #expect(table.upgradeRecords == s.workers)
    #expect(table.freeSlot() == 1)
}

@Test func anUpgradeReplacesEveryWorkerAtOnce() {
    var plan = ReloadPlan(serving: 7)
    #expect(plan.request(.upgrade, workers: 2) == [.begin(generation: 8, kind: .upgrade), .spawn(generation: 8, count: 2)])
    #expect(plan.ready(generation: 8, workers: 2) == [])
    #expect(plan.ready(generation: 8, workers: 2) == [.retireOld(before: 8, count: nil), .commit(generation: 8, kind: .upgrade)])
    #expect(plan.serving == 8)
}
