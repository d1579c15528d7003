import Testing
@testable import ApusMaster

/// Workers 100, 101, ... each with `busy` microseconds in the app so far.
private func samples(_ busy: [UInt64], coresBusy: Int = 0) -> [Cheaper.Sample] {
    busy.enumerated().map { Cheaper.Sample(pid: 100 + Int32($0.offset), busyMicros: $0.element, coresBusy: coresBusy) }
}

@Test func busyWorkersForASecondAddOneUpToTheMaximum() {
    var policy = Cheaper(minimum: 1, maximum: 3, idleAfter: 5, threads: 1)
    #expect(policy.decide(samples([0, 0]), desired: 2, starting: 0, now: 0) == .keep)
    // 90 % in the app over each half second.
    #expect(policy.decide(samples([450_000, 450_000]), desired: 2, starting: 0, now: 0.5) == .keep)
    #expect(policy.decide(samples([900_000, 900_000]), desired: 2, starting: 0, now: 1.0) == .add)
    // At the maximum nothing more is added.
    #expect(policy.decide(samples([1_350_000, 1_350_000]), desired: 3, starting: 0, now: 1.5) == .keep)
    #expect(policy.decide(samples([1_800_000, 1_800_000]), desired: 3, starting: 0, now: 2.0) == .keep)
}

@Test func oneWorkerWithRoomMeansNoneIsAdded() {
    var policy = Cheaper(minimum: 1, maximum: 4, idleAfter: 5, threads: 1)
    _ = policy.decide(samples([0, 0]), desired: 2, starting: 0, now: 0)
    var t = 0.0
    for i in 1...10 {
        t += 0.5
        #expect(policy.decide(samples([UInt64(i) * 450_000, UInt64(i) * 100_000]), desired: 2, starting: 0, now: t) == .keep)
    }
}

@Test func everyThreadInTheAppCountsAsBusy() {
    var policy = Cheaper(minimum: 1, maximum: 2, idleAfter: 5, threads: 4)
    _ = policy.decide(samples([0]), desired: 1, starting: 0, now: 0)
    // Little time counted yet (long calls not finished), but all four threads are in.
    #expect(policy.decide(samples([1000], coresBusy: 4), desired: 1, starting: 0, now: 0.5) == .keep)
    #expect(policy.decide(samples([2000], coresBusy: 4), desired: 1, starting: 0, now: 1.0) == .add)
}

@Test func aStartingWorkerSuspendsJudgement() {
    var policy = Cheaper(minimum: 1, maximum: 3, idleAfter: 5, threads: 1)
    _ = policy.decide(samples([0]), desired: 2, starting: 1, now: 0)
    #expect(policy.decide(samples([500_000]), desired: 2, starting: 1, now: 0.5) == .keep)
    #expect(policy.decide(samples([1_000_000]), desired: 2, starting: 1, now: 1.0) == .keep)
    #expect(policy.decide(samples([1_500_000]), desired: 2, starting: 1, now: 1.5) == .keep)
}

@Test func spareWorkersForCheaperIdleRetireOneAtATimeDownToTheMinimum() {
    var policy = Cheaper(minimum: 1, maximum: 3, idleAfter: 2, threads: 1)
    _ = policy.decide(samples([0, 0, 0]), desired: 3, starting: 0, now: 0)
    var decisions: [Cheaper.Decision] = []
    var t = 0.0
    var busy: UInt64 = 0
    while t < 2.9 {
        t += 0.5
        busy += 10_000  // 2 % each
        decisions.append(policy.decide(samples([busy, busy, busy]), desired: 3, starting: 0, now: t))
    }
    // Idle from 0: the first retirement at 2 s, the next needs another 2 s.
    #expect(decisions == [.keep, .keep, .keep, .remove, .keep, .keep])
    var two = Cheaper(minimum: 2, maximum: 3, idleAfter: 1, threads: 1)
    _ = two.decide(samples([0, 0]), desired: 2, starting: 0, now: 0)
    #expect(two.decide(samples([0, 0]), desired: 2, starting: 0, now: 5) == .keep)  // at the minimum
}

@Test func loadThatNeedsEveryWorkerKeepsThem() {
    var policy = Cheaper(minimum: 1, maximum: 3, idleAfter: 1, threads: 1)
    _ = policy.decide(samples([0, 0, 0]), desired: 3, starting: 0, now: 0)
    var t = 0.0
    var busy: UInt64 = 0
    for _ in 0..<8 {
        t += 0.5
        busy += 350_000  // 70 % each: 2.1 workers' worth, more than 2 x 50 %
        #expect(policy.decide(samples([busy, busy, busy]), desired: 3, starting: 0, now: t) == .keep)
    }
}
