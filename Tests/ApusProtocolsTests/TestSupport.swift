import Testing
@testable import ApusProtocols

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

func text(_ b: [UInt8], _ r: Range<Int>) -> String { String(decoding: b[r], as: UTF8.self) }

/// Status for a parse result: 0 incomplete, 200 complete, else the error status.
func statusOf(_ r: HeadParseResult) -> Int {
    switch r {
    case .incomplete: return 0
    case .complete: return 200
    case .failure(let e): return e.status
    }
}

func parse(_ b: ArraySlice<UInt8>, limits: HTTPParserLimits = HTTPParserLimits()) -> (HeadParseResult, HTTPRequestHead) {
    var head = HTTPRequestHead()
    let parser = HTTPRequestParser(limits: limits)
    // Copy into an exact-size array so reads past the end are caught in debug.
    let exact = Array(b)
    let r = exact.withUnsafeBytes { parser.parseHead($0, into: &head) }
    return (r, head)
}

func parse(_ b: [UInt8], limits: HTTPParserLimits = HTTPParserLimits()) -> (HeadParseResult, HTTPRequestHead) {
    parse(b[...], limits: limits)
}

func parse(_ s: String, limits: HTTPParserLimits = HTTPParserLimits()) -> (HeadParseResult, HTTPRequestHead) {
    parse(bytes(s), limits: limits)
}

/// Compares every field of two heads.
func sameHead(_ a: HTTPRequestHead, _ b: HTTPRequestHead) -> Bool {
    a.method == b.method && a.target == b.target && a.path == b.path && a.query == b.query && a.authority == b.authority
        && a.versionMinor == b.versionMinor && a.headers == b.headers && a.headLength == b.headLength
        && a.framing == b.framing && a.keepAlive == b.keepAlive && a.expectContinue == b.expectContinue
        && a.isHEAD == b.isHEAD
}

/// Feeds growing prefixes (one byte more each time) and returns the first
/// result that is not `.incomplete` with the prefix length that gave it.
func firstDecision(_ b: [UInt8], limits: HTTPParserLimits = HTTPParserLimits())
    -> (result: HeadParseResult, head: HTTPRequestHead, prefix: Int) {
    var k = 1
    while k <= b.count {
        let (r, h) = parse(b[0..<k], limits: limits)
        if r != .incomplete { return (r, h, k) }
        k += 1
    }
    return (.incomplete, HTTPRequestHead(), b.count)
}

/// Decodes a whole chunked body given in pieces; returns the data, the last
/// result and the total consumed.
func decodeChunked(_ pieces: [[UInt8]], maxBodyBytes: Int = 0) -> (data: [UInt8], result: ChunkedResult, consumed: Int) {
    var d = ChunkedDecoder(maxBodyBytes: maxBodyBytes)
    var out: [UInt8] = []
    var consumed = 0
    var last = ChunkedResult.needMore(consumed: 0)
    for piece in pieces {
        last = piece.withUnsafeBytes { buf in d.decode(buf) { out.append(contentsOf: $0) } }
        switch last {
        case .needMore(let c): consumed += c
        case .done(let c): consumed += c; return (out, last, consumed)
        case .failure: return (out, last, consumed)
        }
    }
    return (out, last, consumed)
}

/// Processes a buffer of back-to-back requests as a worker would (head, then
/// body); returns the number of complete requests or the first error status,
/// or nil if the buffer ends in the middle of a request.
enum StreamOutcome: Equatable {
    case requests(Int)
    case error(Int)
    case incomplete
}

func processStream(_ b: [UInt8], limits: HTTPParserLimits = HTTPParserLimits()) -> StreamOutcome {
    var offset = 0
    var count = 0
    let parser = HTTPRequestParser(limits: limits)
    var head = HTTPRequestHead()
    while offset < b.count {
        let rest = Array(b[offset...])
        let r = rest.withUnsafeBytes { parser.parseHead($0, into: &head) }
        switch r {
        case .incomplete: return .incomplete
        case .failure(let e): return .error(e.status)
        case .complete: break
        }
        var used = head.headLength
        switch head.framing {
        case .none: break
        case .contentLength(let n):
            if rest.count - used < n { return .incomplete }
            used += n
        case .chunked:
            var d = ChunkedDecoder(maxBodyBytes: limits.maxBodyBytes)
            let body = Array(rest[used...])
            let cr = body.withUnsafeBytes { d.decode($0) { _ in } }
            switch cr {
            case .needMore: return .incomplete
            case .failure(let e): return .error(e.status)
            case .done(let c): used += c
            }
        }
        offset += used
        count += 1
    }
    return .requests(count)
}
