import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import ApusIPC

@Test func aLoneWorkerAlwaysAccepts() {
    let tally = ConnectionTally()
    tally.slots = 1
    tally.set(0, 500)
    #expect(tally.mayAccept(slot: 0, mine: 500))
}

@Test func aWorkerMoreThanOneAboveTheLeastLoadedStops() {
    let tally = ConnectionTally()
    tally.slots = 3
    tally.set(0, 4)
    tally.set(1, 3)
    tally.set(2, 5)
    #expect(tally.mayAccept(slot: 1, mine: 3))   // the least loaded
    #expect(tally.mayAccept(slot: 0, mine: 4))   // one above the least: still in
    #expect(!tally.mayAccept(slot: 2, mine: 5))  // two above: out until the others catch up
}

@Test func theSlackGrowsWithTheCount() {
    // Up to 31 connections: one above the least loaded, as few connections stay balanced.
    // Above that a sixteenth, so that two workers taking a burst of thousands of connections
    // do not leave the rotation every few connections (each comes back only on its next look).
    let tally = ConnectionTally()
    tally.slots = 2
    tally.set(1, 31)
    #expect(tally.mayAccept(slot: 0, mine: 32))
    #expect(!tally.mayAccept(slot: 0, mine: 33))
    tally.set(1, 5000)
    #expect(tally.mayAccept(slot: 0, mine: 5312))
    #expect(!tally.mayAccept(slot: 0, mine: 5313))
}

@Test func theLeastLoadedWorkerNeverStops() {
    // Whatever the counts, some worker may accept: connections are never left unserved.
    let tally = ConnectionTally()
    tally.slots = 4
    for counts in [[0, 0, 0, 0], [9, 1, 5, 2], [3, 3, 3, 7], [100, 0, 100, 100]] {
        for (slot, c) in counts.enumerated() { tally.set(slot, c) }
        #expect(counts.indices.contains { tally.mayAccept(slot: $0, mine: counts[$0]) })
    }
}

@Test func slotsOutsideTheWorkerCountAreIgnored() {
    let tally = ConnectionTally()
    tally.slots = 2
    tally.set(0, 2)
    tally.set(1, 2)
    tally.set(2, 0)  // a slot beyond the worker count
    #expect(tally.mayAccept(slot: 0, mine: 2))
}

@Test func theMappingIsSharedAcrossFork() {
    let tally = ConnectionTally()
    tally.slots = 2
    let pid = fork()
    if pid == 0 {
        tally.set(1, 42)
        _exit(0)
    }
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    #expect(tally.count(1) == 42)
}

@Test func freeAndDrainingSlotsDoNotCount() {
    let tally = ConnectionTally()
    tally.slots = 3
    tally.set(0, 7)
    tally.set(1, -1)  // draining after a reload
    // slot 2 never set: free
    #expect(tally.mayAccept(slot: 0, mine: 7))
}
