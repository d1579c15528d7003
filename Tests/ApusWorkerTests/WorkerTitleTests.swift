import Testing
@testable import ApusObserve
@testable import ApusWorker

/// `WorkerTitle` is process-wide state: these run one at a time, each over its own buffer.
@Suite(.serialized) struct WorkerTitleTests {
    private func withTitle(capacity: Int = 128, number: Int = 3, generation: UInt32 = 7, threads: Int = 1,
                           prefix: String = "", _ body: () -> Void) {
        let buf = UnsafeMutablePointer<UInt8>.allocate(capacity: capacity)
        buf.initialize(repeating: 0, count: capacity)
        WorkerTitle.setUp(start: Array(ProcessTitle.compose(prefix: prefix, "").utf8), number: number,
                          generation: generation, threads: threads,
                          area: TitleArea(base: buf, capacity: capacity))
        body()
        WorkerTitle.setUp(start: [], number: 0, generation: 0, threads: 1, area: TitleArea(base: nil, capacity: 0))
        buf.deallocate()
    }

    private func begin(_ method: String, _ target: String) {
        Array(method.utf8).withUnsafeBytes { m in Array(target.utf8).withUnsafeBytes { t in WorkerTitle.begin(m, t) } }
    }

    private var text: String { WorkerTitle.area.text }

    @Test func loadingIdleBusyIdle() {
        withTitle {
            #expect(text == "apus: worker 3 gen 7 loading")
            WorkerTitle.idle()
            #expect(text == "apus: worker 3 gen 7 idle")
            begin("GET", "/x?y=1")
            #expect(text == "apus: worker 3 gen 7 busy GET /x?y=1")
            WorkerTitle.end(0)
            #expect(text == "apus: worker 3 gen 7 idle")
        }
    }

    @Test func threadsCountTheBusyOnes() {
        withTitle(threads: 4) {
            WorkerTitle.idle()
            begin("GET", "/a")
            #expect(text == "apus: worker 3 gen 7 busy 1/4 GET /a")
            begin("POST", "/b")
            #expect(text == "apus: worker 3 gen 7 busy 2/4 POST /b")
            // No scoreboard here, so no other line to show: the count alone.
            WorkerTitle.end(1)
            #expect(text == "apus: worker 3 gen 7 busy 1/4")
            WorkerTitle.end(0)
            #expect(text == "apus: worker 3 gen 7 idle")
        }
    }

    @Test func drainingIsShownFromThenOn() {
        withTitle(prefix: "eu ") {
            WorkerTitle.idle()
            WorkerTitle.markDraining()
            #expect(text == "eu apus: worker 3 gen 7 draining idle")
            begin("GET", "/last")
            #expect(text == "eu apus: worker 3 gen 7 draining busy GET /last")
        }
    }

    @Test func hostileBytesBecomeQuestionMarks() {
        withTitle {
            let method: [UInt8] = [0x47, 0x45, 0x54]
            let target: [UInt8] = [0x2f, 0x00, 0x1b, 0x0a, 0xff, 0x20, 0x7f, 0x61]
            method.withUnsafeBytes { m in target.withUnsafeBytes { t in WorkerTitle.begin(m, t) } }
            #expect(text == "apus: worker 3 gen 7 busy GET /???? ?a")
        }
    }

    @Test func aLongTargetIsCutToTheArea() {
        withTitle(capacity: 40) {
            begin("GET", "/" + String(repeating: "x", count: 100))
            #expect(text == "apus: worker 3 gen 7 busy GET /xxxxxxxx")
            #expect(text.utf8.count == 39)
            WorkerTitle.end(0)
            #expect(text == "apus: worker 3 gen 7 idle")
        }
    }
}
