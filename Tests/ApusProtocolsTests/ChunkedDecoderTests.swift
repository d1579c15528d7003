import Testing
@testable import ApusProtocols

let wikiBody = "4;ext=1\r\nWiki\r\n5;a;b=\"q r\"\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0;last\r\nTrailer-A: x\r\nOther: y\r\n\r\n"
let wikiData = "Wikipedia in\r\n\r\nchunks."

@Test func chunkedWholeBody() {
    let b = bytes(wikiBody)
    let r = decodeChunked([b])
    #expect(r.result == .done(consumed: b.count))
    #expect(r.data == bytes(wikiData))
    var d = ChunkedDecoder(maxBodyBytes: 0)
    _ = b.withUnsafeBytes { d.decode($0) { _ in } }
    #expect(d.decodedBytes == wikiData.utf8.count)
    #expect(d.isDone)
}

@Test(arguments: ["5\r\nhello\r\n0\r\n\r\n", wikiBody, "a\r\n0123456789\r\n0\r\n\r\n", "A\r\n0123456789\r\n000\r\n\r\n",
                  "000a\r\n0123456789\r\n0\r\n\r\n", "5 \r\nhello\r\n0\t\r\n\r\n", "5 ; x = y\r\nhello\r\n0\r\n\r\n",
                  "0\r\n\r\n", "1\r\n\u{00}\r\n0\r\nA: 1\r\nB:\r\n\r\n",
                  "0\r\nContent-Length-Checksum-Of-The-Body: 1\r\nX-Host: h\r\nHosts: 2\r\nT:\t\u{E9}x \r\n\r\n"])
func chunkedSplitAtEveryBoundary(_ body: String) {
    let b = bytes(body)
    let whole = decodeChunked([b])
    guard case .done(let total) = whole.result else { Issue.record("not done: \(whole.result)"); return }
    #expect(total == b.count)
    // two pieces, split at every position
    for split in 0...b.count {
        let r = decodeChunked([Array(b[..<split]), Array(b[split...])])
        #expect(r.result == .done(consumed: b.count - split) || (split == b.count && r.consumed == b.count))
        #expect(r.data == whole.data)
        #expect(r.consumed == b.count)
    }
    // one byte at a time
    let r = decodeChunked(b.map { [$0] })
    #expect(r.data == whole.data)
    #expect(r.consumed == b.count)
    #expect(r.result == .done(consumed: 1))
}

@Test func chunkedStopsAtEndOfBody() {
    let b = bytes("3\r\nabc\r\n0\r\n\r\nGET / HTTP/1.1\r\n")
    let r = decodeChunked([b])
    #expect(r.result == .done(consumed: 13))
    #expect(r.data == bytes("abc"))
    var d = ChunkedDecoder(maxBodyBytes: 0)
    _ = b.withUnsafeBytes { d.decode($0) { _ in } }
    // after done: nothing more is consumed
    let again = b.withUnsafeBytes { d.decode($0) { _ in Issue.record("sink called after done") } }
    #expect(again == .done(consumed: 0))
    d.reset()
    #expect(!d.isDone && d.decodedBytes == 0)
    let fresh = b.withUnsafeBytes { d.decode($0) { _ in } }
    #expect(fresh == .done(consumed: 13))
}

@Test func chunkedNeedsMore() {
    #expect(decodeChunked([bytes("5\r\nhel")]).result == .needMore(consumed: 6))
    #expect(decodeChunked([bytes("5\r\nhello\r\n0\r\n")]).result == .needMore(consumed: 13))
    #expect(decodeChunked([bytes("5\r\nhello\r\n0\r\nX: y\r\n")]).result == .needMore(consumed: 19))
    #expect(decodeChunked([[]]).result == .needMore(consumed: 0))
}

struct ChunkedInvalid: Sendable, CustomTestStringConvertible {
    var name: String
    var body: String
    var status: Int
    var maxBodyBytes = 0
    var testDescription: String { "\(status) \(name)" }
}

let chunkedInvalidCases: [ChunkedInvalid] = [
    ChunkedInvalid(name: "17 hex digits", body: "fffffffffffffffff\r\n", status: 400),
    ChunkedInvalid(name: "16 hex digits overflow", body: "ffffffffffffffff\r\n", status: 400),
    ChunkedInvalid(name: "17 digits with leading zeros", body: "00000000000000005\r\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "0x prefix", body: "0x5\r\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "plus sign", body: "+5\r\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "minus sign", body: "-5\r\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "leading space", body: " 5\r\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "missing size", body: "\r\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "only extension", body: ";x\r\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "garbage after size", body: "5 x\r\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "non-hex digit", body: "5g\r\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "missing CRLF after data", body: "5\r\nhelloX\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "data longer than size", body: "3\r\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "LF only after data", body: "5\r\nhello\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "CR only after data", body: "5\r\nhello\rX0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "bare LF after size", body: "5\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "bare CR after size", body: "5\rhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "NUL in extension", body: "5;a\u{00}\r\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "bare LF in extension", body: "5;a\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "extension too long", body: "5;" + String(repeating: "e", count: 5000) + "\r\nhello\r\n0\r\n\r\n", status: 400),
    ChunkedInvalid(name: "bare LF in trailer", body: "0\r\nX: y\n\r\n", status: 400),
    ChunkedInvalid(name: "bare LF ending trailer", body: "0\r\nX: y\r\n\n", status: 400),
    ChunkedInvalid(name: "bare CR at the end", body: "0\r\n\rX", status: 400),
    ChunkedInvalid(name: "NUL in trailer", body: "0\r\nX: \u{00}\r\n\r\n", status: 400),
    ChunkedInvalid(name: "trailer too large", body: "0\r\nX: " + String(repeating: "t", count: 9000) + "\r\n\r\n", status: 431),
    ChunkedInvalid(name: "many trailer lines", body: "0\r\n" + String(repeating: "X-Trailer: value\r\n", count: 600) + "\r\n", status: 431),
    ChunkedInvalid(name: "trailer without colon", body: "0\r\nNoColon\r\n\r\n", status: 400),
    ChunkedInvalid(name: "trailer space before colon", body: "0\r\nX-A : 1\r\n\r\n", status: 400),
    ChunkedInvalid(name: "trailer empty name", body: "0\r\n: 1\r\n\r\n", status: 400),
    ChunkedInvalid(name: "trailer bad name byte", body: "0\r\nX\"A: 1\r\n\r\n", status: 400),
    ChunkedInvalid(name: "trailer obs-fold", body: "0\r\nX-A: 1\r\n two\r\n\r\n", status: 400),
    ChunkedInvalid(name: "trailer leading tab", body: "0\r\n\tX-A: 1\r\n\r\n", status: 400),
    ChunkedInvalid(name: "trailer name too large", body: "0\r\n" + String(repeating: "n", count: 9000) + ": 1\r\n\r\n", status: 431),
    ChunkedInvalid(name: "chunk over limit", body: "b\r\nhello world\r\n0\r\n\r\n", status: 413, maxBodyBytes: 10),
    ChunkedInvalid(name: "total over limit", body: "6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n", status: 413, maxBodyBytes: 10),
]

@Test(arguments: chunkedInvalidCases)
func chunkedInvalid(_ c: ChunkedInvalid) {
    let b = bytes(c.body)
    let r = decodeChunked([b], maxBodyBytes: c.maxBodyBytes)
    guard case .failure(let e) = r.result else { Issue.record("expected failure, got \(r.result)"); return }
    #expect(e.status == c.status)
    // byte by byte gives the same error
    let r1 = decodeChunked(b.map { [$0] }, maxBodyBytes: c.maxBodyBytes)
    #expect(r1.result == r.result)
}

@Test func chunkedFailureIsSticky() {
    var d = ChunkedDecoder(maxBodyBytes: 0)
    let bad = bytes("zz\r\n")
    let r = bad.withUnsafeBytes { d.decode($0) { _ in } }
    #expect(r == .failure(.badRequest("missing chunk size")))
    let good = bytes("0\r\n\r\n")
    let r2 = good.withUnsafeBytes { d.decode($0) { _ in } }
    #expect(r2 == r)
}

@Test func chunkedAtLimitAccepted() {
    let r = decodeChunked([bytes("5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n")], maxBodyBytes: 10)
    #expect(r.data == bytes("helloworld"))
    #expect(r.result == .done(consumed: 25))
}

@Test func chunkedMaxSizeAccepted() {
    // 15 hex digits parse fine; the data simply has not arrived
    var d = ChunkedDecoder(maxBodyBytes: 0)
    let b = bytes("7fffffffffffffff\r\nab")
    let r = b.withUnsafeBytes { d.decode($0) { _ in } }
    #expect(r == .needMore(consumed: b.count))
    #expect(d.decodedBytes == 2)
}

/// Every field RFC 9110 section 6.5.1 keeps out of trailers, as `isForbiddenTrailer` has them.
let forbiddenTrailerNames = [
    "Content-Length", "Transfer-Encoding", "Host", "TE", "Content-Type", "Authorization", "Cookie", "Expect",
    "Proxy-Authorization", "Cache-Control", "Max-Forwards", "Pragma", "Range", "If-Match", "If-None-Match",
    "If-Modified-Since", "If-Unmodified-Since", "If-Range", "Age", "Date", "Expires", "Location", "Retry-After",
    "Vary", "Warning", "Content-Encoding", "Content-Range", "Trailer",
]

@Test(arguments: forbiddenTrailerNames)
func forbiddenTrailerRefused(_ name: String) {
    for spelled in [name, name.lowercased(), name.uppercased()] {
        let b = bytes("3\r\nabc\r\n0\r\nX-Before: 1\r\n\(spelled): v\r\nX-After: 2\r\n\r\n")
        let r = decodeChunked([b])
        #expect(r.result == .failure(.badRequest("field not allowed in a trailer")), "\(spelled)")
        #expect(r.data == bytes("abc"))
        // the same at every split and byte by byte: the name is carried between calls
        for split in 1..<b.count {
            #expect(decodeChunked([Array(b[..<split]), Array(b[split...])]).result == r.result, "\(spelled) split \(split)")
        }
        #expect(decodeChunked(b.map { [$0] }).result == r.result)
    }
}

@Test func allowedTrailersDiscarded() {
    // names that only look like forbidden ones, and names longer than the kept prefix
    let names = ["X-Content-Length", "Content-Lengths", "Hos", "Te-Extra", "Server-Timing", "Digest",
                 "Content-Length-But-Longer-Than-24", "Transfer-Encoding-Checksum", "A"]
    for name in names {
        let b = bytes("1\r\nz\r\n0\r\n\(name): v\r\n\r\n")
        let r = decodeChunked([b])
        #expect(r.result == .done(consumed: b.count), "\(name)")
        #expect(r.data == bytes("z"))
        #expect(decodeChunked(b.map { [$0] }).result == .done(consumed: 1), "\(name)")
    }
}

@Test func forbiddenTrailerList() {
    for name in forbiddenTrailerNames {
        #expect(bytes(name.lowercased()).withUnsafeBytes { isForbiddenTrailer($0) }, "\(name)")
    }
    for name in ["x-host", "hosts", "", "content-language", "connection", "accept", "user-agent"] {
        #expect(!bytes(name).withUnsafeBytes { isForbiddenTrailer($0) }, "\(name)")
    }
}

@Test func decoderResetClearsTrailerName() {
    var d = ChunkedDecoder(maxBodyBytes: 0)
    let first = bytes("0\r\nCont")
    #expect(first.withUnsafeBytes { d.decode($0) { _ in } } == .needMore(consumed: first.count))
    d.reset()
    let second = bytes("0\r\nTE: x\r\n\r\n")
    #expect(second.withUnsafeBytes { d.decode($0) { _ in } } == .failure(.badRequest("field not allowed in a trailer")))
    d.reset()
    let third = bytes("0\r\nX: y\r\n\r\n")
    #expect(third.withUnsafeBytes { d.decode($0) { _ in } } == .done(consumed: third.count))
}
