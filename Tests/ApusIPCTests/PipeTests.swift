import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import ApusIPC

/// A blocking pipe, closed at the end of `body`.
private func withPipe(_ body: (_ read: Int32, _ write: Int32) -> Void) {
    var fds: [Int32] = [0, 0]
    #expect(pipe(&fds) == 0)
    body(fds[0], fds[1])
    close(fds[0])
    close(fds[1])
}

@Test func spawnRequestsCrossAPipeInOrder() {
    withPipe { r, w in
        #expect(SpawnRequest(slot: 3, generation: 2).send(to: w))
        #expect(SpawnRequest(slot: UInt32.max, generation: 9).send(to: w))
        #expect(SpawnRequest.receive(from: r) == SpawnRequest(slot: 3, generation: 2))
        #expect(SpawnRequest.receive(from: r) == SpawnRequest(slot: UInt32.max, generation: 9))
        #expect(SpawnRequest(slot: 4, generation: 3, number: 2).send(to: w))
        #expect(SpawnRequest.receive(from: r) == SpawnRequest(slot: 4, generation: 3, number: 2))
    }
}

@Test func receiveEndsAtEndOfFileAndOnAHalfRequest() {
    var fds: [Int32] = [0, 0]
    #expect(pipe(&fds) == 0)
    var half: [UInt8] = [1, 0, 0, 0]
    #expect(write(fds[1], &half, 4) == 4)
    close(fds[1])  // the master closed the command pipe
    #expect(SpawnRequest.receive(from: fds[0]) == nil)
    close(fds[0])
}

@Test func sendReportsAClosedReader() {
    signal(SIGPIPE, SIG_IGN)
    var fds: [Int32] = [0, 0]
    #expect(pipe(&fds) == 0)
    close(fds[0])  // the zygote is gone
    #expect(!SpawnRequest(slot: 0, generation: 1).send(to: fds[1]))
    WorkerMessage(kind: .ready, slot: 0, pid: 1, generation: 1).send(to: fds[1])  // no one to tell: returns
    close(fds[1])
}

@Test func aWorkerMessageIsWrittenWhole() {
    withPipe { r, w in
        let message = WorkerMessage(kind: .started, slot: 5, pid: 1234, generation: 3)
        message.send(to: w)
        var buf = [UInt8](repeating: 0, count: 64)
        #expect(read(r, &buf, buf.count) == WorkerMessage.size)
        #expect(WorkerMessage(buf[0..<WorkerMessage.size]) == message)
    }
}
