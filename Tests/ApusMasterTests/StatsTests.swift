import Testing
@testable import ApusMaster

@Test func statmGivesVirtualAndResidentPages() {
    let sizes = ProcessMemory.parseStatmSizes(ArraySlice("6140 1234 512 10 0 300 0\n".utf8))
    #expect(sizes?.virtual == 6140 && sizes?.resident == 1234)
    #expect(ProcessMemory.parseStatmSizes(ArraySlice("6140".utf8)) == nil)
    #expect(ProcessMemory.parseStatmSizes(ArraySlice("x 12 3".utf8)) == nil)
}

@Test func theRunningReloadKindFollowsThePlan() {
    var plan = ReloadPlan(serving: 1)
    #expect(plan.runningKind == nil)
    _ = plan.request(.chain, workers: 2)
    #expect(plan.runningKind == .chain && plan.incoming == 2)
    _ = plan.ready(generation: 2, workers: 2)
    #expect(plan.runningKind == .chain)
    _ = plan.ready(generation: 2, workers: 2)
    #expect(plan.runningKind == nil && plan.serving == 2)
    _ = plan.request(.graceful, workers: 1)
    #expect(plan.runningKind == .graceful)
    _ = plan.failed(generation: 3, reason: "boom", workers: 1)
    #expect(plan.runningKind == nil && plan.serving == 2)
}

@Test func monotonicTimesBecomeUnixTimes() {
    let clock = StatsClock(monotonic: 1000, unix: 1_800_000_000)
    #expect(clock.unix(990) == 1_799_999_990)
    #expect(clock.unix(1000) == 1_800_000_000)
    #expect(clock.unix(0) == 0)  // never set
}
