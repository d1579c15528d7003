import Testing
@testable import ApusMaster

/// uWSGI's respawn throttle for attach-daemon: a command that ran more than 3 s starts again
/// at once; one that keeps exiting sooner waits one second more per start, up to 300 s.
@Test func attachedDaemonThrottle() {
    var d = AttachedDaemon(command: "celery worker")
    #expect(d.throttle(now: 100) == 0)  // the first start
    d.spawns = 1
    d.lastSpawn = 100
    #expect(d.throttle(now: 104) == 0)  // it ran 4 s
    #expect(d.throttle(now: 100.5) == 1)
    d.spawns = 5
    #expect(d.throttle(now: 100.5) == 5)
    #expect(d.throttle(now: 102) == 3)
    #expect(d.throttle(now: 103) == 2)
    d.spawns = 2
    #expect(d.throttle(now: 103) == 1)  // never less than 1 s within the 3 s
    d.spawns = 1000
    #expect(d.throttle(now: 100) == 300)
}
