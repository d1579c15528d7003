import Testing
@testable import ApusWorker

/// A crew of three as `Worker.run` starts it: thread 0 owns the loop, 1 became the standby
/// at its first look, 2 is idle.
/// A look that finds the same app call again, whose thread waits in the kernel.
private func lookAtWaitingCall(_ s: inout CrewState, _ me: Int, _ seen: inout UInt64?, leaver: Int) -> CrewState.Look {
    let look = s.look(me, lastSeen: &seen)
    guard look == .check(thread: leaver) else { return look }
    return s.checked(me, waits: true, lastSeen: &seen)
}

private func crewOfThree() -> (CrewState, [UInt64?]) {
    var s = CrewState()
    var seen: [UInt64?] = [nil, nil, nil]
    #expect(s.look(1, lastSeen: &seen[1]) == .wait(timed: true))
    #expect(s.look(2, lastSeen: &seen[2]) == .idle)
    s.idleWaits()
    return (s, seen)
}

@Test func anAppThatNeverWaitsKeepsTheLoopOnOneThread() {
    var (s, seen) = crewOfThree()
    for _ in 0..<100 {
        #expect(s.leave(0) == .nobody, "the standby looks on its own: nobody is woken")
        #expect(s.returned(0) == .own)
        // The standby's looks fall between requests or inside different ones.
        #expect(s.look(1, lastSeen: &seen[1]) == .wait(timed: true))
    }
    #expect(s.owner == 0 && s.standby == 1)
}

@Test func theStandbyTakesOverFromAnAppCallThatLastsAWholePeriod() {
    var (s, seen) = crewOfThree()
    _ = s.leave(0)
    #expect(s.look(1, lastSeen: &seen[1]) == .wait(timed: true), "first look: the call may be short")
    #expect(lookAtWaitingCall(&s, 1, &seen[1], leaver: 0) == .takeOver, "same call a period later")
    #expect(s.owner == 1 && s.standby == CrewState.nobody)
    // The new owner leaves for the app in turn: the idle thread is woken to stand by.
    #expect(s.leave(1) == .idleThread)
    s.idleWoken()
    #expect(s.look(2, lastSeen: &seen[2]) == .wait(timed: true))
    #expect(s.standby == 2)
    // Thread 1 comes back first and owns the loop again.
    #expect(s.returned(1) == .own)
    // Thread 0 comes back to a loop owned by another: it hands its request back, and the
    // owner is woken once for any number of them until it collects.
    #expect(s.returned(0) == .handBack(wake: true))
    #expect(s.look(0, lastSeen: &seen[0]) == .idle)
    s.collected()
    #expect(s.wakePosted == false)
}

@Test func aNewAppCallBetweenTwoLooksIsNotAStuckOne() {
    var (s, seen) = crewOfThree()
    _ = s.leave(0)
    #expect(s.look(1, lastSeen: &seen[1]) == .wait(timed: true))
    #expect(s.returned(0) == .own)
    _ = s.leave(0)  // another request: the departures changed
    #expect(s.look(1, lastSeen: &seen[1]) == .wait(timed: true))
    #expect(s.owner == CrewState.nobody, "the loop stays with the thread in the app")
}

@Test func handedBackRequestsWakeTheOwnerOnceUntilItCollects() {
    var (s, seen) = crewOfThree()
    _ = s.leave(0)
    _ = s.look(1, lastSeen: &seen[1])
    #expect(lookAtWaitingCall(&s, 1, &seen[1], leaver: 0) == .takeOver)
    #expect(s.returned(0) == .handBack(wake: true))
    _ = s.leave(1)
    s.idleWoken()
    _ = s.look(2, lastSeen: &seen[2])
    #expect(lookAtWaitingCall(&s, 2, &seen[2], leaver: 1) == .takeOver)
    #expect(s.returned(1) == .handBack(wake: false), "the eventfd is already written")
    s.collected()
    _ = s.leave(2)
    #expect(s.returned(2) == .own)
}

@Test func theStandbySleepsWhileTheOwnerIdlesAndIsWokenByTheNextLeave() {
    var (s, seen) = crewOfThree()
    s.startPolling(0)
    #expect(s.look(1, lastSeen: &seen[1]) == .wait(timed: true), "one look may catch a passing poll")
    #expect(s.look(1, lastSeen: &seen[1]) == .wait(timed: false))
    #expect(s.standbySleeping)
    s.stopPolling()
    #expect(s.leave(0) == .standby)
    #expect(!s.standbySleeping)
}

@Test func aBusyOwnerBetweenPollsKeepsTheStandbyLooking() {
    var (s, seen) = crewOfThree()
    s.startPolling(0)
    #expect(s.look(1, lastSeen: &seen[1]) == .wait(timed: true))
    s.stopPolling()
    #expect(s.look(1, lastSeen: &seen[1]) == .wait(timed: true), "not two idle looks in a row")
    s.startPolling(0)
    #expect(s.look(1, lastSeen: &seen[1]) == .wait(timed: true))
}

@Test func aSingleExtraThreadStandsByAndIsNeverIdle() {
    var s = CrewState()
    var seen: UInt64? = nil
    #expect(s.look(1, lastSeen: &seen) == .wait(timed: true))
    _ = s.leave(0)
    _ = s.look(1, lastSeen: &seen)
    #expect(lookAtWaitingCall(&s, 1, &seen, leaver: 0) == .takeOver)
    // No idle thread to wake when thread 1 goes into the app: the loop waits for whichever
    // thread returns first.
    #expect(s.leave(1) == .nobody)
    #expect(s.returned(0) == .own)
    #expect(s.returned(1) == .handBack(wake: true))
}

@Test func aComputingCallKeepsTheLoopForComputingLooks() {
    var (s, seen) = crewOfThree()
    _ = s.leave(0)
    #expect(s.look(1, lastSeen: &seen[1]) == .wait(timed: true))
    for _ in 1..<CrewState.computingLooks {
        #expect(s.look(1, lastSeen: &seen[1]) == .check(thread: 0))
        #expect(s.checked(1, waits: false, lastSeen: &seen[1]) == .wait(timed: true))
    }
    #expect(s.look(1, lastSeen: &seen[1]) == .check(thread: 0))
    #expect(s.checked(1, waits: false, lastSeen: &seen[1]) == .takeOver, "computed for the whole allowance")
    #expect(s.owner == 1)
}

@Test func theComputingAllowanceStartsAgainWithEachCall() {
    var (s, seen) = crewOfThree()
    _ = s.leave(0)
    _ = s.look(1, lastSeen: &seen[1])
    for _ in 1..<CrewState.computingLooks {
        _ = s.look(1, lastSeen: &seen[1])
        _ = s.checked(1, waits: false, lastSeen: &seen[1])
    }
    #expect(s.returned(0) == .own)
    _ = s.leave(0)
    #expect(s.look(1, lastSeen: &seen[1]) == .wait(timed: true), "a new call")
    #expect(s.look(1, lastSeen: &seen[1]) == .check(thread: 0))
    #expect(s.checked(1, waits: false, lastSeen: &seen[1]) == .wait(timed: true))
}
