#if canImport(Glibc)
import Glibc
#endif
import Testing
import ApusIPC
@testable import ApusWorker

/// The app thread's side of the --harakiri claim, over cores in plain memory.
@Suite(.serialized)
struct HarakiriClaimTests {
    /// Runs `body` with `InFlight` holding two cores and the claim switched on.
    private func withCores(_ body: ([Scoreboard.Core]) -> Void) {
        let memory = UnsafeMutableRawPointer.allocate(byteCount: 2 * Scoreboard.Core.bytes, alignment: 8)
        memory.initializeMemory(as: UInt8.self, repeating: 0, count: 2 * Scoreboard.Core.bytes)
        let cores = UnsafeMutablePointer<Scoreboard.Core>.allocate(capacity: 2)
        let list = (0..<2).map { Scoreboard.Core(base: memory + $0 * Scoreboard.Core.bytes) }
        for i in 0..<2 { (cores + i).initialize(to: list[i]) }
        let saved = (InFlight.cores, InFlight.count, HarakiriClaim.enabled)
        InFlight.cores = cores
        InFlight.count = 2
        HarakiriClaim.enabled = true
        body(list)
        (InFlight.cores, InFlight.count, HarakiriClaim.enabled) = saved
        cores.deallocate()
        memory.deallocate()
    }

    @Test func theAppThreadTakesAnAnswerStillInTheApp() {
        withCores { cores in
            cores[1].state = .inApp
            #expect(HarakiriClaim.claim(1))
            #expect(cores[1].state == .answering)
            #expect(HarakiriClaim.claim(1))  // already its own
        }
    }

    @Test func aTimedOutRequestIsNotAnswered() {
        withCores { cores in
            cores[0].state = .timedOut
            #expect(!HarakiriClaim.claim(0))
            #expect(cores[0].state == .timedOut)
        }
    }

    @Test func theAppThreadWaitsOutTheWatchdogsHold() {
        withCores { cores in
            for (end, expected) in [(Scoreboard.CoreState.timedOut, false), (.inApp, true)] {
                cores[0].state = .claiming
                // The watchdog's side: ends its hold 20 ms later.
                var tid = pthread_t()
                let box = Unmanaged.passRetained(Box(cores[0], end)).toOpaque()
                pthread_create(&tid, nil, { arg in
                    let b = Unmanaged<Box>.fromOpaque(arg!).takeRetainedValue()
                    usleep(20_000)
                    b.core.state = b.end
                    return nil
                }, box)
                #expect(HarakiriClaim.claim(0) == expected)
                pthread_join(tid, nil)
            }
        }
    }

    @Test func withoutHarakiriEveryClaimSucceeds() {
        let saved = HarakiriClaim.enabled
        HarakiriClaim.enabled = false
        #expect(HarakiriClaim.claim(0))
        HarakiriClaim.enabled = saved
    }
}

private final class Box {
    let core: Scoreboard.Core
    let end: Scoreboard.CoreState
    init(_ core: Scoreboard.Core, _ end: Scoreboard.CoreState) { self.core = core; self.end = end }
}
