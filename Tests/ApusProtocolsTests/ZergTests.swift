import Testing
@testable import ApusProtocols

// uWSGI's zerg reply as values: what the server sends, and the instance's checks of every
// byte it receives (a zerg server could be anything listening on that path).

/// `uwsgi-zerg` and a host-order int: the data of a reply.
func zergData(_ count: Int32) -> [UInt8] {
    Array("uwsgi-zerg".utf8) + withUnsafeBytes(of: count) { Array($0) }
}

@Test func theDataIsTheMagicAndTheCount() {
    #expect(ZergMessage.data(count: 3) == Array("uwsgi-zerg".utf8) + [3, 0, 0, 0])  // little-endian hosts
    #expect(ZergMessage.data(count: 3).count == ZergMessage.dataLength)
}

@Test func theControlMessageIsOneListOfDescriptors() {
    let control = ZergMessage.control(fds: [7, 9])
    // cmsg_len = CMSG_LEN(8) = 24, SOL_SOCKET 1, SCM_RIGHTS 1, 7, 9; CMSG_SPACE(8) = 24
    #expect(control == [24, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1, 0, 0, 0, 7, 0, 0, 0, 9, 0, 0, 0])
    let three = ZergMessage.control(fds: [3, 4, 5])
    #expect(three.count == ZergMessage.controlSpace(descriptors: 3))
    #expect(three.count == 32)  // CMSG_LEN 28, padded to 8
    #expect(three[0] == 28)
    #expect(ZergMessage.descriptors(inControl: three) == [3, 4, 5])
}

@Test func aWellFormedReplyGivesItsDescriptors() {
    #expect(ZergMessage.parseReply(data: ZergMessage.data(count: 2), control: ZergMessage.control(fds: [5, 6])) == .success([5, 6]))
    // uWSGI's instance also accepts the magic alone
    #expect(ZergMessage.parseReply(data: Array("uwsgi-zerg".utf8), control: ZergMessage.control(fds: [5])) == .success([5]))
}

@Test func everyBadReplyIsRefused() {
    let good = ZergMessage.control(fds: [5, 6])
    #expect(ZergMessage.parseReply(data: [], control: []) == .failure(.empty))
    #expect(ZergMessage.parseReply(data: Array("uwsgi-zerh".utf8) + [2, 0, 0, 0], control: good) == .failure(.badMagic))
    #expect(ZergMessage.parseReply(data: Array("uwsgi".utf8), control: good) == .failure(.badMagic))
    #expect(ZergMessage.parseReply(data: zergData(2) + [0], control: good) == .failure(.badLength(15)))
    #expect(ZergMessage.parseReply(data: zergData(2), control: good, dataTruncated: true) == .failure(.badLength(14)))
    #expect(ZergMessage.parseReply(data: zergData(2), control: good, controlTruncated: true) == .failure(.truncatedControl))
    #expect(ZergMessage.parseReply(data: zergData(3), control: good) == .failure(.countMismatch(announced: 3, received: 2)))
    #expect(ZergMessage.parseReply(data: zergData(-1), control: good) == .failure(.countMismatch(announced: -1, received: 2)))
    #expect(ZergMessage.parseReply(data: zergData(0), control: []) == .failure(.noSockets))
    // SCM_CREDENTIALS (type 2) is not a list of descriptors
    var creds = good
    creds[12] = 2
    #expect(ZergMessage.parseReply(data: zergData(0), control: creds) == .failure(.badControl))
    #expect(ZergMessage.descriptors(inControl: creds).isEmpty)
    // a length past the buffer, or shorter than a header
    var long = good
    long[0] = 200
    #expect(ZergMessage.parseReply(data: zergData(2), control: long) == .failure(.badControl))
    var short = good
    short[0] = 4
    #expect(ZergMessage.parseReply(data: zergData(2), control: short) == .failure(.badControl))
    // two lists
    #expect(ZergMessage.parseReply(data: zergData(3), control: good + ZergMessage.control(fds: [8])) == .failure(.badControl))
    #expect(ZergMessage.descriptors(inControl: good + ZergMessage.control(fds: [8])) == [5, 6, 8])
}

@Test func tooManyDescriptorsAreRefused() {
    let fds = (0..<254).map { Int32($0 + 3) }
    #expect(ZergMessage.parseReply(data: zergData(254), control: ZergMessage.control(fds: fds)) == .failure(.tooMany(254)))
    let most = Array(fds.prefix(253))
    #expect(ZergMessage.parseReply(data: zergData(253), control: ZergMessage.control(fds: most)) == .success(most))
}

/// Random and mutated replies: the parser never traps, succeeds only on a reply that says
/// what it carries, and what it returns is always among the descriptors to close.
@Test func fuzzedRepliesNeverTrapAndNeverLie() {
    var rng = SplitMix64(state: 0x5eed_2e16)
    let seeds: [([UInt8], [UInt8])] = [
        (ZergMessage.data(count: 1), ZergMessage.control(fds: [4])),
        (ZergMessage.data(count: 3), ZergMessage.control(fds: [4, 5, 6])),
        (Array("uwsgi-zerg".utf8), ZergMessage.control(fds: [9])),
    ]
    for round in 0..<20_000 {
        var (data, control) = seeds[round % seeds.count]
        let edits = Int(rng.next() % 6)
        for _ in 0..<edits {
            switch rng.next() % 6 {
            case 0: if !data.isEmpty { data[Int(rng.next() % UInt64(data.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            case 1: if !control.isEmpty { control[Int(rng.next() % UInt64(control.count))] = UInt8(truncatingIfNeeded: rng.next()) }
            case 2: control = Array(control.prefix(Int(rng.next() % UInt64(control.count + 1))))
            case 3: data = Array(data.prefix(Int(rng.next() % UInt64(data.count + 1))))
            case 4: control += (0..<Int(rng.next() % 40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            default: data += (0..<Int(rng.next() % 8)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            }
        }
        let installed = ZergMessage.descriptors(inControl: control)
        switch ZergMessage.parseReply(data: data, control: control) {
        case let .success(fds):
            #expect(!fds.isEmpty && fds.count <= ZergMessage.maxDescriptors)
            #expect(fds == installed)
            #expect(Array(data.prefix(10)) == Array("uwsgi-zerg".utf8))
            if data.count == 14 {
                #expect(ZergMessage.load(Int32.self, data, at: 10) == Int32(fds.count))
            } else {
                #expect(data.count == 10)
            }
        case .failure:
            break
        }
    }
}
