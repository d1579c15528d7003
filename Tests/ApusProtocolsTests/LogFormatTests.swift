import Foundation
import Testing
@testable import ApusProtocols

private func compile(_ s: String) -> LogFormat? { try? LogFormat(compiling: s) }

private func compileError(_ s: String) -> String? {
    do { _ = try LogFormat(compiling: s); return nil } catch { return error.message }
}

private func lit(_ s: String) -> LogOp { .literal(Array(s.utf8)) }

private func textEscaped(_ b: [UInt8]) -> String {
    var out: [UInt8] = []
    b.withUnsafeBytes { appendTextEscaped($0, to: &out) }
    return String(decoding: out, as: UTF8.self)
}

private func jsonEscaped(_ b: [UInt8]) -> [UInt8] {
    var out: [UInt8] = []
    b.withUnsafeBytes { appendJSONEscaped($0, to: &out) }
    return out
}

// MARK: the compiler

@Test func commonPresetIsTheCommonLogFormat() throws {
    let f = try #require(compile("common"))
    #expect(f.escaping == .text)
    #expect(f.responseHeaders.isEmpty)
    #expect(f.ops == [.variable(.addr), lit(" - - ["), .variable(.ltime), lit("] \""), .variable(.method), lit(" "),
                      .variable(.uri), lit(" "), .variable(.proto), lit("\" "), .variable(.status), lit(" "), .variable(.sizeCLF)])
    #expect(LogFormat.common == f)
}

@Test func combinedAddsRefererAndUserAgent() throws {
    let f = try #require(compile("combined"))
    let common = try #require(compile("common"))
    #expect(Array(f.ops.prefix(common.ops.count)) == common.ops)
    #expect(Array(f.ops.suffix(5)) == [lit(" \""), .requestHeader(name: Array("referer".utf8), uwsgiKey: Array("HTTP_REFERER".utf8)),
                                       lit("\" \""), .requestHeader(name: Array("user-agent".utf8), uwsgiKey: Array("HTTP_USER_AGENT".utf8)),
                                       lit("\"")])
}

@Test func jsonPresetEscapesAsJSON() throws {
    let f = try #require(compile("json"))
    #expect(f.escaping == .json)
    #expect(f.ops.first == lit("{\"time\":\""))
    #expect(f.ops.last == lit("}"))
}

@Test func aJSONPrefixChoosesJSONEscaping() throws {
    let f = try #require(compile(#"json:{"ct":"%(resp:Content-Type)"}"#))
    #expect(f.escaping == .json)
    #expect(f.ops == [lit(#"{"ct":""#), .responseHeader(0), lit(#""}"#)])
    #expect(try #require(compile("jsonish %(status)")).escaping == .text)
}

@Test func variablesAndTheirUWSGINames() throws {
    let f = try #require(compile("%(wid)|%(worker)|%(micros)|%(usecs)|%(time)|%(epoch)|%(rsize)|%(uagent)|%(user_agent)"))
    let v = f.ops.enumerated().filter { $0.offset % 2 == 0 }.map(\.element)
    let ua = LogOp.requestHeader(name: Array("user-agent".utf8), uwsgiKey: Array("HTTP_USER_AGENT".utf8))
    #expect(v == [.variable(.worker), .variable(.worker), .variable(.usecs), .variable(.usecs), .variable(.epoch),
                  .variable(.epoch), .variable(.size), ua, ua])
}

@Test func headersBothWays() throws {
    let f = try #require(compile("%(var.HTTP_X_FOO) %(req:X-Foo) %(var.CONTENT_TYPE) %(var.REMOTE_USER) %(resp:Content-Type) %(resp:X-A) %(resp:content-type)"))
    let foo = LogOp.requestHeader(name: Array("x-foo".utf8), uwsgiKey: Array("HTTP_X_FOO".utf8))
    #expect(f.ops[0] == foo)
    #expect(f.ops[2] == foo)
    #expect(f.ops[4] == .requestHeader(name: Array("content-type".utf8), uwsgiKey: Array("CONTENT_TYPE".utf8)))
    // A var that is no header: found in uwsgi packets only.
    #expect(f.ops[6] == .requestHeader(name: [], uwsgiKey: Array("REMOTE_USER".utf8)))
    #expect(f.ops[8] == .responseHeader(0))
    #expect(f.ops[10] == .responseHeader(1))
    #expect(f.ops[12] == .responseHeader(0))
    #expect(f.responseHeaders == [Array("content-type".utf8), Array("x-a".utf8)])
}

@Test func percentSignsAndLiterals() throws {
    let f = try #require(compile("100%% %d %(status)%"))
    #expect(f.ops == [lit("100% %d "), .variable(.status), lit("%")])
    #expect(try #require(compile("")).ops.isEmpty)
}

@Test func badFormatsNameTheCulprit() {
    #expect(compileError("%(nope)")?.hasPrefix("unknown variable %(nope) (known: ") == true)
    #expect(compileError("a %(status") == "unterminated %( at byte 3")
    #expect(compileError("%(req:)")?.hasPrefix("bad header name in %(req:)") == true)
    #expect(compileError("%(resp:a b)")?.hasPrefix("bad header name in %(resp:a b)") == true)
    #expect(compileError("%(var.)") == "bad variable %(var.)")
    #expect(compileError("%()")?.hasPrefix("unknown variable %()") == true)
}

// MARK: escaping

@Test func textEscapingIsNginxStyle() {
    #expect(textEscaped(Array("plain /p?q=1 Mozilla/5.0 (X11)".utf8)) == "plain /p?q=1 Mozilla/5.0 (X11)")
    #expect(textEscaped([0x22, 0x5c, 0x0a, 0x0d, 0x00, 0x7f, 0x85, 0xe2, 0x80, 0xa8, 0xff]) ==
            #"\x22\x5c\x0a\x0d\x00\x7f\x85\xe2\x80\xa8\xff"#)
}

@Test func jsonEscaping() {
    func j(_ b: [UInt8]) -> String { String(decoding: jsonEscaped(b), as: UTF8.self) }
    #expect(j(Array("a\"b\\c".utf8)) == #"a\"b\\c"#)
    #expect(j([0x0a, 0x0d, 0x09, 0x00, 0x1f, 0x7f]) == #"\u000a\u000d\u0009\u0000\u001f\u007f"#)
    #expect(j([0xc2, 0x85, 0xe2, 0x80, 0xa8, 0xe2, 0x80, 0xa9]) == #"\u0085\u2028\u2029"#)
    // Well-formed UTF-8 is kept: é, €, 😀.
    #expect(j(Array("é€😀".utf8)) == "é€😀")
    // Ill-formed: a lone 0x85, a truncated sequence, an overlong, a surrogate, above U+10FFFF.
    #expect(j([0x85]) == #"\u0085"#)
    #expect(j([0xe2, 0x80]) == #"\u00e2\u0080"#)
    #expect(j([0xc0, 0xaf]) == #"\u00c0\u00af"#)
    #expect(j([0xed, 0xa0, 0x80]) == #"\u00ed\u00a0\u0080"#)
    #expect(j([0xf4, 0x90, 0x80, 0x80]) == #"\u00f4\u0090\u0080\u0080"#)
}

/// Runs of plain bytes are checked 8 at a time: every byte value, at every place of two
/// words and a tail, is escaped as one byte alone would be.
@Test func everyByteAtEveryPlaceOfAWord() {
    let plain = Array("abcdefghijklmnopqrs".utf8)  // 19 bytes: two words and 3 more
    func hex2(_ b: UInt8) -> String { (b < 16 ? "0" : "") + String(b, radix: 16) }
    for b in UInt8.min...UInt8.max {
        let aloneText: String = b < 0x20 || b >= 0x7f || b == 0x22 || b == 0x5c ? "\\x" + hex2(b) : String(UnicodeScalar(b))
        let aloneJSON: String = switch b {
        case 0x22, 0x5c: "\\" + String(UnicodeScalar(b))
        case 0..<0x20, 0x7f...: "\\u00" + hex2(b)  // a lone byte 0x80 and up is ill-formed UTF-8
        default: String(UnicodeScalar(b))
        }
        for at in plain.indices {
            var input = plain
            input[at] = b
            let before = String(decoding: plain[..<at], as: UTF8.self)
            let after = String(decoding: plain[(at + 1)...], as: UTF8.self)
            #expect(textEscaped(input) == before + aloneText + after, "byte \(b) at \(at)")
            #expect(String(decoding: jsonEscaped(input), as: UTF8.self) == before + aloneJSON + after, "byte \(b) at \(at)")
        }
    }
}

@Test func lowerHex() {
    for (v, s) in [(UInt64(0), "0"), (15, "f"), (16, "10"), (0xdead_beef, "deadbeef"), (UInt64.max, "ffffffffffffffff")] {
        var out: [UInt8] = []
        appendLowerHex(v, to: &out)
        #expect(String(decoding: out, as: UTF8.self) == s)
    }
}

/// Random bytes, weighted towards the dangerous ones: the JSON string they make is valid
/// UTF-8, holds no raw line break of any kind, parses, and decodes to the input read as
/// UTF-8 where it is well formed.
@Test func fuzzJSONAndTextEscaping() throws {
    var rng = SystemRandomNumberGenerator()
    let nasty: [UInt8] = [0x0a, 0x0d, 0x22, 0x5c, 0x85, 0xc2, 0xe2, 0x80, 0xa8, 0xa9, 0xed, 0xf4, 0x00, 0x7f, 0xff, 0x41]
    for _ in 0..<3000 {
        let n = Int.random(in: 0...40, using: &rng)
        let input: [UInt8] = (0..<n).map { _ in Bool.random(using: &rng) ? nasty.randomElement(using: &rng)! : UInt8.random(in: 0...255, using: &rng) }
        let out = jsonEscaped(input)
        let s = try #require(String(validating: out, as: UTF8.self), "not UTF-8 for \(input)")
        for bad: Unicode.Scalar in ["\n", "\r", "\u{85}", "\u{2028}", "\u{2029}", "\u{0B}", "\u{0C}", "\u{1C}", "\u{1D}", "\u{1E}"] {
            #expect(!s.unicodeScalars.contains(bad), "raw \(bad.value) for \(input)")
        }
        #expect(s.split(omittingEmptySubsequences: false, whereSeparator: \.isNewline).count == 1)
        let parsed = try JSONSerialization.jsonObject(with: Data(("[\"" + s + "\"]").utf8)) as? [String]
        #expect(parsed?.count == 1, "does not parse: \(s)")
        if let valid = String(validating: input, as: UTF8.self) { #expect(parsed?.first == valid) }
        let t = textEscaped(input)
        #expect(t.utf8.allSatisfy { $0 >= 0x20 && $0 < 0x7f && $0 != 0x22 })
    }
}
