import Testing
@testable import ApusObserve

private func text(_ v: JSON) -> String { String(decoding: v.encoded(), as: UTF8.self) }
private func bytes(_ v: JSON) -> [UInt8] { v.encoded() }

@Test func scalarsAndContainers() {
    #expect(text(.null) == "null")
    #expect(text(.bool(true)) == "true")
    #expect(text(.bool(false)) == "false")
    #expect(text(.int(-42)) == "-42")
    #expect(text(.int(Int.max)) == "9223372036854775807")
    #expect(text(.double(1.5)) == "1.5")
    #expect(text(.double(0.000001)) == "1e-06")
    #expect(text(.double(.nan)) == "null")
    #expect(text(.double(.infinity)) == "null")
    #expect(text(.array([])) == "[]")
    #expect(text(.object([])) == "{}")
    #expect(text(.array([.int(1), .string("a"), .null])) == "[1,\"a\",null]")
    #expect(text(.object([("b", .int(2)), ("a", .array([.object([])]))])) == "{\"b\":2,\"a\":[{}]}")
}

@Test func quotesBackslashesAndControlCharactersAreEscaped() {
    #expect(text(.string("say \"hi\"")) == #""say \"hi\"""#)
    #expect(text(.string("C:\\dir")) == #""C:\\dir""#)
    #expect(text(.string("a\nb\tc\r\u{0}\u{1f}\u{7f}")) == #""a\u000ab\u0009c\u000d\u0000\u001f\u007f""#)
    // Keys are escaped like values.
    #expect(text(.object([("k\"", .null)])) == #"{"k\"":null}"#)
}

@Test func lineAndParagraphSeparatorsAreEscaped() {
    #expect(text(.string("a\u{2028}b\u{2029}c")) == #""a\u2028b\u2029c""#)
    #expect(text(.bytes([0x61, 0xE2, 0x80, 0xA8])) == #""a\u2028""#)
    // Their neighbours pass as they are.
    #expect(bytes(.bytes([0xE2, 0x80, 0xA7])) == [0x22, 0xE2, 0x80, 0xA7, 0x22])
}

@Test func validUTF8PassesUnchanged() {
    let s = "é€𝄞 日本"
    #expect(bytes(.string(s)) == [0x22] + Array(s.utf8) + [0x22])
    #expect(bytes(.bytes(Array(s.utf8))) == [0x22] + Array(s.utf8) + [0x22])
}

@Test func invalidUTF8IsReplacedNeverEmitted() {
    let fffd: [UInt8] = [0xEF, 0xBF, 0xBD]
    let q: [UInt8] = [0x22]
    // A lone continuation byte (0x85: NEL in Latin-1).
    #expect(bytes(.bytes([0x61, 0x85, 0x62])) == q + [0x61] + fffd + [0x62] + q)
    // A truncated sequence at the end, and one cut by ASCII: one U+FFFD each, ASCII kept.
    #expect(bytes(.bytes([0xE2, 0x80])) == q + fffd + q)
    #expect(bytes(.bytes([0xE2, 0x80, 0x22])) == q + fffd + Array(#"\""#.utf8) + q)
    // Overlong, surrogate, above U+10FFFF, bytes that never appear.
    #expect(bytes(.bytes([0xC0, 0xAF])) == q + fffd + fffd + q)
    #expect(bytes(.bytes([0xED, 0xA0, 0x80])) == q + fffd + fffd + fffd + q)
    #expect(bytes(.bytes([0xF4, 0x90, 0x80, 0x80])) == q + fffd + fffd + fffd + fffd + q)
    #expect(bytes(.bytes([0xFF, 0xFE])) == q + fffd + fffd + q)
    // Whatever the input, the output decodes as UTF-8 unchanged (no replacement needed).
    var all: [UInt8] = []
    for a in 0...255 { all += [UInt8(a), 0x80, 0xBF, UInt8(255 - a)] }
    let out = bytes(.bytes(all))
    #expect(Array(String(decoding: out, as: UTF8.self).utf8) == out)
    #expect(!out.contains(where: { $0 < 0x20 }))
}
