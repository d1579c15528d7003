import Testing
@testable import ApusTop

private func parse(_ text: String) throws -> JSON { try JSON.parse(Array(text.utf8)) }

private func refused(_ bytes: [UInt8]) -> Bool {
    do { _ = try JSON.parse(bytes); return false } catch { return true }
}

private func refused(_ text: String) -> Bool { refused(Array(text.utf8)) }

@Test func scalars() throws {
    #expect(try parse("null") == .null)
    #expect(try parse(" true ") == .bool(true))
    #expect(try parse("false") == .bool(false))
    #expect(try parse("0") == .number(0))
    #expect(try parse("-12") == .number(-12))
    #expect(try parse("3.25") == .number(3.25))
    #expect(try parse("1e3") == .number(1000))
    #expect(try parse("-2.5E-2") == .number(-0.025))
    #expect(try parse("1796304356.123456") == .number(1796304356.123456))
    #expect(try parse("9007199254740992").int == 9007199254740992)
}

@Test func strings() throws {
    #expect(try parse(#""GET /x""#) == .string("GET /x"))
    #expect(try parse(#""a\"b\\c\/d\b\f\n\r\t""#) == .string("a\"b\\c/d\u{8}\u{C}\n\r\t"))
    #expect(try parse(#""\u00e9\u20AC""#) == .string("é€"))
    // A surrogate pair is one scalar; a lone surrogate is U+FFFD.
    #expect(try parse(#""\ud83d\ude00""#) == .string("😀"))
    #expect(try parse(#""\ud83dx""#) == .string("\u{FFFD}x"))
    #expect(try parse(#""\ude00""#) == .string("\u{FFFD}"))
    #expect(try parse("\"é\"") == .string("é"))
    // Invalid UTF-8 inside a string is replaced, not refused.
    #expect(try JSON.parse([0x22, 0xFF, 0x41, 0x22]) == .string("\u{FFFD}A"))
}

@Test func containers() throws {
    let doc = try parse(#" {"a": [1, {"b": null}, []], "c": {}, "a2": "x", "a": [2]} "#)
    // The last of duplicate keys wins.
    #expect(doc["a"] == .array([.number(2)]))
    #expect(doc["c"] == .object([:]))
    #expect(doc["a2"]?.string == "x")
    #expect(doc["missing"] == nil)
    #expect(try parse("[]") == .array([]))
    #expect(try parse("[ 1 , 2 ]") == .array([.number(1), .number(2)]))
}

@Test func accessorsTakeOnlyTheirType() throws {
    #expect(JSON.string("1").int == nil)
    #expect(JSON.number(1.5).int == 1)
    #expect(JSON.number(1e300).int == nil)
    #expect(JSON.bool(true).string == nil)
    #expect(JSON.number(2).array == nil)
    #expect(JSON.array([]).bool == nil)
    #expect(JSON.number(1)["x"] == nil)
}

@Test func refusesWhatIsNotJSON() {
    for text in ["", " ", "nul", "truex", "01", "-", "1.", ".5", "1e", "+1", "[1,]", "[1 2]", "{\"a\" 1}",
                 "{\"a\":1,}", "{a:1}", "\"abc", "\"\\x\"", "\"\\u12\"", "\"\\u12G4\"", "[", "{", "1 2",
                 "\"a\nb\"", "\"\t\"", "NaN", "Infinity", "[1]]", "'a'", "{\"a\":}"] {
        #expect(refused(text), "\(text.debugDescription) should be refused")
    }
}

@Test func depthIsBounded() throws {
    let deep = String(repeating: "[", count: JSON.maxDepth) + String(repeating: "]", count: JSON.maxDepth)
    #expect(try parse(deep) != .null)
    let deeper = String(repeating: "[", count: JSON.maxDepth + 1) + String(repeating: "]", count: JSON.maxDepth + 1)
    #expect(refused(deeper))
    // Far deeper than the stack would take without the bound: refused, no crash.
    #expect(refused(String(repeating: "[", count: 1_000_000)))
    #expect(refused(String(repeating: "{\"a\":", count: 100_000)))
}

@Test func sizeIsBounded() throws {
    var big = [UInt8](repeating: 0x20, count: JSON.maxBytes - 2)
    big[0] = UInt8(ascii: "1")
    #expect(try JSON.parse(big) == .number(1))
    big += [0x20, 0x20, 0x20]
    do throws(JSON.ParseError) {
        _ = try JSON.parse(big)
        Issue.record("a document over \(JSON.maxBytes) bytes was parsed")
    } catch {
        #expect(error.reason.contains("larger than"))
    }
}

@Test func errorsSayWhere() {
    do throws(JSON.ParseError) {
        _ = try JSON.parse(Array("[1, x]".utf8))
        Issue.record("parsed")
    } catch {
        #expect(error.offset == 4)
    }
}

/// Random bytes, and random mutations of a real stats document: the parser and the stats
/// reading either give a value or refuse; neither crashes.
@Test func randomBytesNeverCrash() {
    var rng = SplitMix(seed: 17)
    let seed = Array(TopFixtures.apusDocument.utf8)
    let alphabet = Array(#"{}[]":,.-+eE0123456789 \tnulltruefalse\u"#.utf8)
    var parsed = 0
    for round in 0..<20_000 {
        var bytes: [UInt8]
        switch round % 3 {
        case 0:
            bytes = (0..<Int(rng.next() % 64)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
        case 1:
            bytes = (0..<Int(rng.next() % 64)).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }
        default:
            bytes = seed
            for _ in 0..<(1 + Int(rng.next() % 4)) {
                let at = Int(rng.next() % UInt64(bytes.count))
                switch rng.next() % 3 {
                case 0: bytes[at] = UInt8(truncatingIfNeeded: rng.next())
                case 1: bytes.remove(at: at)
                default: bytes.insert(alphabet[Int(rng.next() % UInt64(alphabet.count))], at: at)
                }
            }
        }
        if let doc = try? JSON.parse(bytes) {
            parsed += 1
            if let snapshot = try? StatsSnapshot(doc, now: 1e9) {
                let view = TopView(previous: nil, current: TopSample(snapshot, at: 1))
                _ = TopRender.lines(view, title: "t", width: 80)
            }
        }
    }
    #expect(parsed > 100)
}

struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E3779B97F4A7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58476D1CE4E5B9
        z = (z ^ (z >> 27)) &* 0x94D049BB133111EB
        return z ^ (z >> 31)
    }
}
