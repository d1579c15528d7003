import ApusProtocols
import Testing
@testable import ApusWorker

private func text(_ b: LineBuffer) -> String { String(decoding: b.bytes, as: UTF8.self) }

@Test func decimalsAndHex() {
    var b = LineBuffer(capacity: 1)
    for v in [0, 7, 9, 10, 42, 99, 100, 200, 255, 256, 404, 999, 1000, 123_456_789, Int.max, -5] {
        b.reset()
        b.decimal(v)
        #expect(text(b) == String(max(0, v)))
    }
    for v: UInt64 in [0, 9, 10, 0xff, 0x1_0000, UInt64.max] {
        b.reset()
        b.hex(v)
        #expect(text(b) == String(v, radix: 16))
    }
}

@Test func growsAndKeepsWhatItHeld() {
    var b = LineBuffer(capacity: 4)
    var expected: [UInt8] = []
    for i in 0..<500 {
        let piece = Array("piece \(i);".utf8)
        piece.withUnsafeBytes { b.append($0) }
        b.append(UInt8(ascii: "|"))
        b.append("ab")
        expected += piece + Array("|ab".utf8)
    }
    #expect(Array(b.bytes) == expected)
    b.reset()
    #expect(b.count == 0)
    b.append([1, 2, 3])
    #expect(Array(b.bytes) == [1, 2, 3])
}

@Test func escapedValuesMatchTheArrayForms() {
    var rng = SystemRandomNumberGenerator()
    var b = LineBuffer(capacity: 2)
    for _ in 0..<500 {
        let input: [UInt8] = (0..<Int.random(in: 0...64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
        var text: [UInt8] = [], json: [UInt8] = []
        input.withUnsafeBytes { appendTextEscaped($0, to: &text); appendJSONEscaped($0, to: &json) }
        b.reset()
        input.withUnsafeBytes { b.textEscaped($0) }
        #expect(Array(b.bytes) == text)
        b.reset()
        input.withUnsafeBytes { b.jsonEscaped($0) }
        #expect(Array(b.bytes) == json)
    }
}
