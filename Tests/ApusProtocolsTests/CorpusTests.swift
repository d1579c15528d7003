import Foundation
import Testing
@testable import ApusProtocols

/// The corpus folder next to this file (also copied into the test bundle).
let corpusDirectory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("Corpus")

struct CorpusFile: Sendable, CustomTestStringConvertible {
    var name: String
    var bytes: [UInt8]
    /// nil for valid files, else the expected status.
    var expectedStatus: Int?
    var testDescription: String { name }
}

func loadCorpus() -> [CorpusFile] {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: corpusDirectory.path)) ?? []
    return names.filter { $0.hasSuffix(".http") }.sorted().compactMap { name in
        guard let data = FileManager.default.contents(atPath: corpusDirectory.appendingPathComponent(name).path) else { return nil }
        var status: Int? = nil
        if name.hasPrefix("invalid-") {
            status = Int(name.dropFirst("invalid-".count).prefix(3)) ?? -1
        } else if !name.hasPrefix("valid-") {
            status = -1  // unknown naming scheme: the test will fail
        }
        return CorpusFile(name: name, bytes: [UInt8](data), expectedStatus: status)
    }
}

let corpus = loadCorpus()

@Test func corpusIsLargeEnough() {
    #expect(corpus.count >= 40)
    #expect(corpus.filter { $0.expectedStatus == nil }.count >= 20)
    #expect(corpus.filter { $0.expectedStatus != nil }.count >= 20)
}

@Test(arguments: corpus)
func corpusFile(_ file: CorpusFile) {
    let outcome = processStream(file.bytes)
    if let status = file.expectedStatus {
        #expect(outcome == .error(status))
    } else {
        guard case .requests(let n) = outcome else { Issue.record("\(file.name): \(outcome)"); return }
        #expect(n >= 1)
    }
    // The first head gives the same verdict when fed byte by byte.
    let (whole, wholeHead) = parse(file.bytes)
    if file.bytes.count <= 4096 {
        let d = firstDecision(file.bytes)
        #expect(d.result == whole)
        if whole == .complete {
            #expect(d.prefix == wholeHead.headLength)
            #expect(sameHead(d.head, wholeHead))
        }
    }
}

// MARK: fuzzing

/// SplitMix64: a small deterministic generator so the fuzz run is reproducible.
struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

func mutate(_ input: [UInt8], _ rng: inout SplitMix64) -> [UInt8] {
    var b = input
    let special: [UInt8] = [0x0D, 0x0A, 0x00, 0x20, 0x3A, 0x09, 0x2C, 0x3B, 0x30, 0x7F, 0xFF, 0x2F, 0x3F, 0x2A]
    let count = Int.random(in: 1...4, using: &rng)
    for _ in 0..<count {
        let op = Int.random(in: 0..<6, using: &rng)
        let pos = b.isEmpty ? 0 : Int.random(in: 0..<b.count, using: &rng)
        switch op {
        case 0 where !b.isEmpty:  // flip bits
            b[pos] ^= UInt8.random(in: 1...255, using: &rng)
        case 1:  // insert a significant byte
            b.insert(special.randomElement(using: &rng)!, at: pos)
        case 2 where !b.isEmpty:  // replace with a significant byte
            b[pos] = special.randomElement(using: &rng)!
        case 3 where !b.isEmpty:  // delete
            b.remove(at: pos)
        case 4:  // truncate
            b = Array(b[..<pos])
        default:  // duplicate a slice
            let len = Int.random(in: 0...8, using: &rng)
            let end = min(b.count, pos + len)
            b.insert(contentsOf: b[pos..<end], at: pos)
        }
    }
    return b
}

/// Every range in a complete head lies inside the head.
func rangesAreInside(_ h: HTTPRequestHead, _ n: Int) -> Bool {
    func inside(_ r: Range<Int>) -> Bool { r.lowerBound >= 0 && r.upperBound <= h.headLength }
    guard h.headLength > 0 && h.headLength <= n else { return false }
    guard inside(h.method), inside(h.target), inside(h.path), !h.method.isEmpty, !h.target.isEmpty else { return false }
    guard h.path.lowerBound >= h.target.lowerBound && h.path.upperBound <= h.target.upperBound else { return false }
    if let q = h.query, !(inside(q) && q.lowerBound > h.target.lowerBound && q.upperBound <= h.target.upperBound) { return false }
    if let a = h.authority, !(inside(a) && !a.isEmpty && a.lowerBound > h.target.lowerBound && a.upperBound <= h.path.lowerBound) {
        return false
    }
    for f in h.headers where !(inside(f.name) && inside(f.value) && !f.name.isEmpty && f.name.upperBound < f.value.lowerBound + 1) {
        return false
    }
    return h.versionMinor == 0 || h.versionMinor == 1
}

@Test func fuzzParserInvariants() {
    var rng = SplitMix64(state: 0x5EED_A9B5)
    let seeds = corpus.filter { $0.expectedStatus == nil }.map(\.bytes) + corpus.filter { $0.bytes.count < 2048 }.map(\.bytes)
    #expect(!seeds.isEmpty)
    guard !seeds.isEmpty else { return }
    var limits = HTTPParserLimits()
    limits.maxBodyBytes = 1 << 20
    var outcomes: [Int: Int] = [:]
    for iteration in 0..<20_000 {
        let b = mutate(seeds.randomElement(using: &rng)!, &rng)
        let (whole, head) = parse(b, limits: limits)
        outcomes[statusOf(whole), default: 0] += 1
        if whole == .complete {
            #expect(rangesAreInside(head, b.count), "iteration \(iteration)")
            // one byte less is incomplete, exactly the head is complete and identical
            let (before, _) = parse(b[..<(head.headLength - 1)], limits: limits)
            #expect(before == .incomplete, "iteration \(iteration)")
            let (exact, exactHead) = parse(b[..<head.headLength], limits: limits)
            #expect(exact == .complete && sameHead(exact == .complete ? exactHead : head, head), "iteration \(iteration)")
            // the body decoder agrees with itself when the input is split
            if head.framing == .chunked {
                let rest = Array(b[head.headLength...])
                let split = rest.isEmpty ? 0 : Int.random(in: 0...rest.count, using: &rng)
                let one = decodeChunked([rest], maxBodyBytes: limits.maxBodyBytes)
                let two = decodeChunked([Array(rest[..<split]), Array(rest[split...])], maxBodyBytes: limits.maxBodyBytes)
                #expect(one.data == two.data, "iteration \(iteration)")
                #expect(one.consumed <= rest.count, "iteration \(iteration)")
                switch (one.result, two.result) {
                case (.failure(let e1), .failure(let e2)): #expect(e1 == e2, "iteration \(iteration)")
                case (.done, .done), (.needMore, .needMore): #expect(one.consumed == two.consumed, "iteration \(iteration)")
                case (.needMore, .done) where split == rest.count: break  // second piece was empty
                default: Issue.record("chunked results differ at iteration \(iteration): \(one.result) \(two.result)")
                }
            }
        }
        // Random prefixes: incomplete or the same verdict as the whole buffer.
        for _ in 0..<4 where b.count > 1 {
            let k = Int.random(in: 1..<b.count, using: &rng)
            let (r, h) = parse(b[..<k], limits: limits)
            if r != .incomplete {
                #expect(r == whole, "iteration \(iteration) prefix \(k)")
                if r == .complete { #expect(sameHead(h, head), "iteration \(iteration) prefix \(k)") }
            }
        }
        // Now and then the full byte-by-byte feed.
        if iteration % 50 == 0 {
            let d = firstDecision(b, limits: limits)
            #expect(d.result == whole, "iteration \(iteration)")
        }
        _ = processStream(b, limits: limits)
    }
    // The mutations must exercise both outcomes.
    #expect((outcomes[200] ?? 0) > 1000)
    #expect((outcomes[400] ?? 0) > 1000)
}

/// The prefix property with a small `maxFieldBytes`, so that the 431 of an overlong
/// header line competes with every other error in the mutated lines.
@Test func fuzzFieldSizeLimit() {
    var rng = SplitMix64(state: 0xF1E1D)
    let seeds = corpus.filter { $0.bytes.count < 400 }.map(\.bytes)
    #expect(!seeds.isEmpty)
    guard !seeds.isEmpty else { return }
    var outcomes: [Int: Int] = [:]
    for iteration in 0..<3_000 {
        var limits = HTTPParserLimits()
        limits.maxFieldBytes = [3, 8, 14, 20][iteration % 4]
        let b = mutate(seeds.randomElement(using: &rng)!, &rng)
        let (whole, head) = parse(b, limits: limits)
        outcomes[statusOf(whole), default: 0] += 1
        let d = firstDecision(b, limits: limits)
        #expect(d.result == whole, "iteration \(iteration)")
        if whole == .complete { #expect(sameHead(d.head, head), "iteration \(iteration)") }
    }
    #expect((outcomes[431] ?? 0) > 300)
    #expect((outcomes[400] ?? 0) > 100)
}

@Test func fuzzChunkedDecoder() {
    var rng = SplitMix64(state: 0xC4A9_4ED)
    let seeds = [wikiBody, "5\r\nhello\r\n0\r\n\r\n", "1;a=b\r\nx\r\n10\r\n0123456789abcdef\r\n0\r\nT: 1\r\n\r\n"].map(bytes)
    for iteration in 0..<5_000 {
        let b = mutate(seeds.randomElement(using: &rng)!, &rng)
        let one = decodeChunked([b], maxBodyBytes: 64)
        let bytewise = decodeChunked(b.map { [$0] }, maxBodyBytes: 64)
        #expect(one.data == bytewise.data, "iteration \(iteration)")
        #expect(one.consumed <= b.count, "iteration \(iteration)")
        switch (one.result, bytewise.result) {
        case (.failure(let e1), .failure(let e2)): #expect(e1 == e2)
        case (.done, .done), (.needMore, .needMore): #expect(one.consumed == bytewise.consumed, "iteration \(iteration)")
        default: Issue.record("results differ at iteration \(iteration): \(one.result) \(bytewise.result)")
        }
        #expect(one.data.count <= 64)
    }
}
