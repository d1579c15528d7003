import Testing
@testable import ApusMaster

@Test func workerReloadStartsAllThenRetiresOldWhenAllAreReady() {
    var plan = ReloadPlan(serving: 1)
    #expect(plan.request(.workers, workers: 3) == [.begin(generation: 2, kind: .workers), .spawn(generation: 2, count: 3)])
    #expect(plan.ready(generation: 2, workers: 3) == [])
    #expect(plan.ready(generation: 2, workers: 3) == [])
    #expect(plan.serving == 1)  // the old generation serves until the last new worker is ready
    #expect(plan.ready(generation: 2, workers: 3) == [.retireOld(before: 2, count: nil), .commit(generation: 2, kind: .workers)])
    #expect(plan.serving == 2)
    #expect(!plan.isReloading)
}

@Test func chainReloadReplacesOneAtATime() {
    var plan = ReloadPlan(serving: 1)
    #expect(plan.request(.chain, workers: 3) == [.begin(generation: 2, kind: .chain), .spawn(generation: 2, count: 1)])
    #expect(plan.ready(generation: 2, workers: 3) == [.retireOld(before: 2, count: 1), .spawn(generation: 2, count: 1)])
    #expect(plan.ready(generation: 2, workers: 3) == [.retireOld(before: 2, count: 1), .spawn(generation: 2, count: 1)])
    #expect(plan.ready(generation: 2, workers: 3) == [.retireOld(before: 2, count: nil), .commit(generation: 2, kind: .chain)])
    #expect(plan.serving == 2)
}

@Test func aFailedGenerationIsAbandonedAndTheOldKeepsServing() {
    var plan = ReloadPlan(serving: 1)
    _ = plan.request(.workers, workers: 2)
    _ = plan.ready(generation: 2, workers: 2)
    #expect(plan.failed(generation: 2, reason: "import error", workers: 2) == [.abandon(generation: 2, reason: "import error")])
    #expect(plan.serving == 1)
    #expect(!plan.isReloading)
    // A later reload can be tried, with a fresh generation number.
    #expect(plan.request(.workers, workers: 2) == [.begin(generation: 3, kind: .workers), .spawn(generation: 3, count: 2)])
}

@Test func aChainThatFailsMidwayStops() {
    var plan = ReloadPlan(serving: 1)
    _ = plan.request(.chain, workers: 3)
    _ = plan.ready(generation: 2, workers: 3)
    #expect(plan.failed(generation: 2, reason: "crashed", workers: 3) == [.abandon(generation: 2, reason: "crashed")])
    #expect(plan.serving == 1)
}

@Test func reloadsAskedForDuringAReloadAreCoalescedIntoTheStrongest() {
    var plan = ReloadPlan(serving: 1)
    _ = plan.request(.chain, workers: 2)
    #expect(plan.request(.workers, workers: 2) == [])
    #expect(plan.request(.chain, workers: 2) == [])
    #expect(plan.request(.graceful, workers: 2) == [])
    #expect(plan.request(.chain, workers: 2) == [])
    #expect(plan.pending == .graceful)
    _ = plan.ready(generation: 2, workers: 2)
    // The chain finishes, then exactly one graceful reload starts.
    #expect(plan.ready(generation: 2, workers: 2) == [
        .retireOld(before: 2, count: nil), .commit(generation: 2, kind: .chain),
        .begin(generation: 3, kind: .graceful), .spawn(generation: 3, count: 2),
    ])
    #expect(plan.pending == nil)
}

@Test func aPendingReloadStartsAfterAFailureToo() {
    var plan = ReloadPlan(serving: 1)
    _ = plan.request(.workers, workers: 2)
    _ = plan.request(.workers, workers: 2)
    #expect(plan.failed(generation: 2, reason: "timeout", workers: 2) == [
        .abandon(generation: 2, reason: "timeout"),
        .begin(generation: 3, kind: .workers), .spawn(generation: 3, count: 2),
    ])
}

@Test func eventsForOtherGenerationsAreIgnored() {
    var plan = ReloadPlan(serving: 1)
    #expect(plan.ready(generation: 1, workers: 2) == [])  // an ordinary respawn getting ready
    _ = plan.request(.workers, workers: 2)
    #expect(plan.ready(generation: 1, workers: 2) == [])
    #expect(plan.failed(generation: 1, reason: "old worker died", workers: 2) == [])
    #expect(plan.isReloading)
}

@Test func aGracefulReloadCanChangeTheWorkerCount() {
    var plan = ReloadPlan(serving: 1)
    _ = plan.request(.graceful, workers: 1)
    #expect(plan.ready(generation: 2, workers: 1) == [.retireOld(before: 2, count: nil), .commit(generation: 2, kind: .graceful)])
}
