// Target `chunked`: ChunkedDecoder on arbitrary bytes. The first input byte picks the body
// limit (its low two bits: unlimited, 16, 1000, 1 MiB) and, with the second, seeds the
// splits; the rest is the body stream. Checks:
// - the same data, the same result (the same error, or `.done` after the same number of
//   bytes) whether the input comes whole, byte by byte, or in random pieces (empty ones too);
// - `.needMore` consumed the whole piece, `.done` at most the piece; sink slices lie inside
//   the piece given; decodedBytes counts what the sink got; the limit holds;
// - after `.done` a call gives `.done(consumed: 0)`, after `.failure` the same failure,
//   and neither calls the sink;
// - agreement with a small non-incremental reference decoder written from RFC 9112
//   section 7.1 and the decoder's documented limits: the same end, the same data, `.needMore`
//   only where the reference runs out of bytes, a 400 only where it finds an error.

func fuzzChunked(_ input: UnsafeRawBufferPointer) {
    guard input.count >= 2 else { return }
    let limits = [0, 16, 1000, 1 << 20]
    let maxBody = limits[Int(input[0] & 3)]
    var mix = Mix(state: UInt64(input[0]) << 8 | UInt64(input[1]))
    checkChunkedSplits(UnsafeRawBufferPointer(rebasing: input[2...]), maxBodyBytes: maxBody, &mix)
}

struct ChunkedRun {
    var data: [UInt8] = []
    var result = ChunkedResult.needMore(consumed: 0)
    var consumed = 0
}

/// Decodes `body` cut at `cuts` (sorted offsets); checks the per-call contract on the way.
func runChunked(_ body: UnsafeRawBufferPointer, cuts: [Int], maxBodyBytes: Int) -> ChunkedRun {
    var d = ChunkedDecoder(maxBodyBytes: maxBodyBytes)
    var run = ChunkedRun()
    var from = 0
    for to in cuts + [body.count] {
        // each piece in its own exact-size buffer: reading past it is an ASan report
        let finished: Bool = withPrefix(UnsafeRawBufferPointer(rebasing: body[from..<to]), to - from) { piece in
            let r = d.decode(piece) { slice in
                if slice.count > 0 {
                    let lo = piece.baseAddress.map { UInt(bitPattern: $0) } ?? 0
                    let s = slice.baseAddress.map { UInt(bitPattern: $0) } ?? 0
                    require(s >= lo && s + UInt(slice.count) <= lo + UInt(piece.count), "sink slice outside the input")
                }
                run.data.append(contentsOf: slice)
            }
            run.result = r
            switch r {
            case .needMore(let c):
                require(c == piece.count, "needMore consumed \(c) of \(piece.count)")
                run.consumed += c
                return false
            case .done(let c):
                require(c <= piece.count, "done consumed \(c) of \(piece.count)")
                run.consumed += c
                return true
            case .failure:
                return true
            }
        }
        from = to
        if finished { break }
    }
    require(d.decodedBytes == run.data.count, "decodedBytes \(d.decodedBytes), sink got \(run.data.count)")
    switch run.result {
    case .done:
        require(d.isDone, "done but isDone is false")
        let again = [UInt8]([0x30, 0x0D, 0x0A]).withUnsafeBytes { d.decode($0) { _ in require(false, "sink called after done") } }
        require(again == .done(consumed: 0), "a call after done gives \(again)")
    case .failure(let e):
        let again = [UInt8]([0x31, 0x0D, 0x0A, 0x41]).withUnsafeBytes { d.decode($0) { _ in require(false, "sink called after a failure") } }
        require(again == .failure(e), "a call after a failure gives \(again)")
    case .needMore:
        require(run.consumed == body.count, "needMore with \(run.consumed) of \(body.count) consumed")
    }
    if maxBodyBytes > 0 { require(run.data.count <= maxBodyBytes, "\(run.data.count) bytes decoded over a limit of \(maxBodyBytes)") }
    return run
}

func sameRun(_ a: ChunkedRun, _ b: ChunkedRun) -> Bool {
    guard a.data == b.data else { return false }
    switch (a.result, b.result) {
    case (.failure(let x), .failure(let y)): return x == y
    case (.done, .done), (.needMore, .needMore): return a.consumed == b.consumed
    default: return false
    }
}

func checkChunkedSplits(_ body: UnsafeRawBufferPointer, maxBodyBytes: Int, _ mix: inout Mix) {
    let whole = runChunked(body, cuts: [], maxBodyBytes: maxBodyBytes)
    let bytewise = runChunked(body, cuts: body.count > 1 ? Array(1..<body.count) : [], maxBodyBytes: maxBodyBytes)
    require(sameRun(whole, bytewise), "byte by byte: \(bytewise.result), whole: \(whole.result): \(show(body))")
    var cuts: [Int] = []
    var at = 0
    while true {
        at += mix.below(18)  // 0 makes an empty piece
        if at >= body.count { break }
        cuts.append(at)
    }
    let pieces = runChunked(body, cuts: cuts, maxBodyBytes: maxBodyBytes)
    require(sameRun(whole, pieces), "cut at \(cuts): \(pieces.result), whole: \(whole.result): \(show(body))")

    let ref = referenceChunked(body)
    switch whole.result {
    case .done(let c):
        guard case .done(let rc, let rdata) = ref else { require(false, "decoder done at \(c), reference \(ref): \(show(body))"); return }
        require(rc == c && rdata == whole.data, "decoder done at \(c), reference done at \(rc) (data equal: \(rdata == whole.data)): \(show(body))")
    case .needMore:
        guard case .incomplete(let rdata, _) = ref else { require(false, "decoder needs more, reference \(ref): \(show(body))"); return }
        require(rdata == whole.data, "decoder and reference delivered different data so far: \(show(body))")
    case .failure(let e):
        // 413 and 431 are limits the reference does not model, nor rules on trailer fields
        // (the reference only checks the bytes of trailer lines).
        if e.status == 400 && !ref.reachedTrailers {
            guard case .invalid = ref else { require(false, "decoder failed (\(e)), reference \(ref): \(show(body))"); return }
        }
    }
}

enum ReferenceChunked: CustomStringConvertible {
    case done(consumed: Int, data: [UInt8])
    case incomplete(data: [UInt8], trailers: Bool)
    case invalid(at: Int, trailers: Bool)

    /// The outcome was decided in the trailer section.
    var reachedTrailers: Bool {
        switch self {
        case .done: return true
        case .incomplete(_, let t), .invalid(_, let t): return t
        }
    }

    var description: String {
        switch self {
        case .done(let c, let d): return "done(\(c), \(d.count) bytes)"
        case .incomplete(let d, let t): return "incomplete(\(d.count) bytes\(t ? ", in trailers" : ""))"
        case .invalid(let at, let t): return "invalid(at \(at)\(t ? ", in trailers" : ""))"
        }
    }
}

/// chunked-body = *chunk last-chunk trailer-section CRLF (RFC 9112 section 7.1), read
/// whole: chunk-size of 1 to 16 hex digits that fits in an Int, optional SP/HTAB after it,
/// extensions from ';' to the CR of any visible byte, SP or HTAB (at most 4096 bytes),
/// trailer lines of any visible byte, SP or HTAB. Limits on the body and the trailer size
/// are not modelled.
func referenceChunked(_ b: UnsafeRawBufferPointer) -> ReferenceChunked {
    let n = b.count
    var i = 0
    var data: [UInt8] = []
    var trailers = false
    func isText(_ c: UInt8) -> Bool { c == 0x09 || (c >= 0x20 && c != 0x7F) }
    /// Expects CR LF at i; nil when it is there (i moves past it), else the outcome.
    func crlf() -> ReferenceChunked? {
        if i == n { return .incomplete(data: data, trailers: trailers) }
        if b[i] != 0x0D { return .invalid(at: i, trailers: trailers) }
        i += 1
        if i == n { return .incomplete(data: data, trailers: trailers) }
        if b[i] != 0x0A { return .invalid(at: i, trailers: trailers) }
        i += 1
        return nil
    }
    while true {
        var size = 0
        var digits = 0
        while i < n, let h = hexValue(b[i]) {
            digits += 1
            let (m, o1) = size.multipliedReportingOverflow(by: 16)
            let (a, o2) = m.addingReportingOverflow(h)
            if digits > 16 || o1 || o2 { return .invalid(at: i, trailers: trailers) }
            size = a
            i += 1
        }
        if i == n { return .incomplete(data: data, trailers: trailers) }
        if digits == 0 { return .invalid(at: i, trailers: trailers) }
        while i < n && (b[i] == 0x20 || b[i] == 0x09) { i += 1 }
        if i < n && b[i] == 0x3B {
            i += 1
            var length = 0
            while i < n && b[i] != 0x0D {
                length += 1
                if !isText(b[i]) || length > 4096 { return .invalid(at: i, trailers: trailers) }
                i += 1
            }
        }
        if let outcome = crlf() { return outcome }
        if size == 0 { trailers = true; break }
        if n - i < size {
            data.append(contentsOf: b[i..<n])
            return .incomplete(data: data, trailers: trailers)
        }
        data.append(contentsOf: b[i..<(i + size)])
        i += size
        if let outcome = crlf() { return outcome }
    }
    while true {  // trailer section, then the final CRLF
        if i == n { return .incomplete(data: data, trailers: trailers) }
        if b[i] == 0x0D {
            if let outcome = crlf() { return outcome }
            return .done(consumed: i, data: data)
        }
        while i < n && b[i] != 0x0D {
            if !isText(b[i]) { return .invalid(at: i, trailers: trailers) }
            i += 1
        }
        if let outcome = crlf() { return outcome }
    }
}
