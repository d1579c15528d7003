import Testing
@testable import ApusProtocols

func decoded(_ s: [UInt8]) -> [UInt8] { s.withUnsafeBytes { percentDecode($0) } }
func needs(_ s: String) -> Bool { bytes(s).withUnsafeBytes { needsPercentDecoding($0) } }

@Test(arguments: [
    ("/plain", "/plain"), ("%41", "A"), ("/a%2Fb", "/a/b"), ("/a%2fb", "/a/b"), ("%zz", "%zz"), ("/x%4", "/x%4"),
    ("%", "%"), ("%%41", "%A"), ("%4%41", "%4A"), ("a%20b%20", "a b "), ("%G1", "%G1"), ("%1G", "%1G"),
    ("", ""), ("%25", "%"), ("%2525", "%25"), ("/caf%C3%A9", "/caf\u{E9}"),
])
func percentDecoding(_ input: String, _ expected: String) {
    #expect(decoded(bytes(input)) == bytes(expected))
}

@Test func percentDecodingRawBytes() {
    #expect(decoded(bytes("%00%ff%80")) == [0x00, 0xFF, 0x80])
    #expect(decoded([0xE9, 0x25, 0x34, 0x31]) == [0xE9, 0x41])
}

@Test func needsDecoding() {
    #expect(needs("/a%20b"))
    #expect(needs("%"))
    #expect(!needs("/plain/path"))
    #expect(!needs(""))
}
