import Testing
#if canImport(Glibc)
import Glibc
#endif
@testable import ApusIPC

@Test(arguments: [
    WorkerMessage(kind: .ready, slot: 0, pid: 1, generation: 1),
    WorkerMessage(kind: .zygoteReady, slot: 0, pid: 4_194_304, generation: 7),
    WorkerMessage(kind: .started, slot: 1023, pid: Int32.max, generation: UInt32.max),
])
func messageRoundTrips(_ message: WorkerMessage) {
    let bytes = message.encoded()
    #expect(bytes.count == WorkerMessage.size)
    #expect(WorkerMessage(bytes[...]) == message)
}

@Test func unknownKindOrShortRecordIsRejected() {
    var bytes = WorkerMessage(kind: .ready, slot: 2, pid: 3, generation: 4).encoded()
    #expect(WorkerMessage(bytes[0..<15]) == nil)
    bytes[0] = 99
    #expect(WorkerMessage(bytes[...]) == nil)
}

@Test func recordsAreLittleEndianWords() {
    let bytes = WorkerMessage(kind: .started, slot: 0x0102, pid: 0x0304, generation: 0x0506).encoded()
    #expect(bytes == [3, 0, 0, 0, 0x02, 0x01, 0, 0, 0x04, 0x03, 0, 0, 0x06, 0x05, 0, 0])
}

@Test func spawnRequestsCrossAPipe() throws {
    var fds: [Int32] = [0, 0]
    #expect(pipe(&fds) == 0)
    defer { close(fds[0]) }
    #expect(SpawnRequest(slot: 5, generation: 9).send(to: fds[1]))
    #expect(SpawnRequest(slot: 6, generation: 9).send(to: fds[1]))
    close(fds[1])
    #expect(SpawnRequest.receive(from: fds[0]) == SpawnRequest(slot: 5, generation: 9))
    #expect(SpawnRequest.receive(from: fds[0]) == SpawnRequest(slot: 6, generation: 9))
    #expect(SpawnRequest.receive(from: fds[0]) == nil)  // end of file: the master closed it
}
