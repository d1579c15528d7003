// Target `http`: HTTPRequestParser.parseHead on arbitrary bytes, with the default limits and
// with small ones. Checks, for every input:
// - a complete head: every range lies inside the head and points at what it claims (method
//   tokens, the SP after method and target, "HTTP/1.x", names followed by ':', values free
//   of CTLs and trimmed); the head ends with CRLF CRLF; the framing, keep-alive,
//   100-continue and HEAD flags follow from the header fields; the limits hold;
// - prefixes: parsing bytes 0..<k gives `.incomplete` or exactly the whole buffer's result
//   (the same failure reason, or the same head);
// - limits: the small limits never accept what the defaults refuse, and a head that fits
//   the small limits parses to the same head under both;
// - a chunked head: its body goes through the chunked checks (see ChunkedTarget.swift).

let smallHTTPLimits: HTTPParserLimits = {
    var l = HTTPParserLimits()
    l.maxRequestLine = 40
    l.maxHeaderBytes = 200
    l.maxHeaderCount = 3
    l.maxFieldBytes = 60
    l.maxBodyBytes = 100
    l.maxLeadingEmptyLines = 1
    return l
}()

func parseHTTP(_ b: UnsafeRawBufferPointer, _ limits: HTTPParserLimits) -> (HeadParseResult, HTTPRequestHead) {
    var head = HTTPRequestHead()
    let r = HTTPRequestParser(limits: limits).parseHead(b, into: &head)
    return (r, head)
}

func sameHTTPHead(_ a: HTTPRequestHead, _ b: HTTPRequestHead) -> Bool {
    a.method == b.method && a.target == b.target && a.path == b.path && a.query == b.query
        && a.versionMinor == b.versionMinor && a.headers == b.headers && a.headLength == b.headLength
        && a.framing == b.framing && a.keepAlive == b.keepAlive && a.expectContinue == b.expectContinue
        && a.isHEAD == b.isHEAD && a.authority == b.authority
}

func fuzzHTTP(_ b: UnsafeRawBufferPointer) {
    let (whole, head) = parseHTTP(b, HTTPParserLimits())
    if whole == .complete { checkHead(b, head, HTTPParserLimits()) }
    checkHTTPPrefixes(b, HTTPParserLimits(), whole, head)

    let (small, smallHead) = parseHTTP(b, smallHTTPLimits)
    if small == .complete {
        checkHead(b, smallHead, smallHTTPLimits)
        require(whole == .complete && sameHTTPHead(head, smallHead),
                "accepted under the small limits but \(whole) under the defaults: \(show(b))")
    } else if whole == .complete && fitsSmallLimits(b, head) {
        require(false, "head within the small limits refused by them (\(small)): \(show(b))")
    }
    checkHTTPPrefixes(b, smallHTTPLimits, small, smallHead)

    if whole == .complete && head.framing == .chunked {
        let body = UnsafeRawBufferPointer(rebasing: b[head.headLength...])
        var mix = Mix(state: UInt64(b.count) &* 0x2545_F491_4F6C_DD1D)
        checkChunkedSplits(body, maxBodyBytes: 1 << 20, &mix)
    }
}

func checkHTTPPrefixes(_ b: UnsafeRawBufferPointer, _ limits: HTTPParserLimits, _ whole: HeadParseResult, _ head: HTTPRequestHead) {
    let extra = whole == .complete ? [head.headLength - 1, head.headLength] : []
    for k in prefixLengths(b, extra: extra) {
        let (r, h) = withPrefix(b, k) { parseHTTP($0, limits) }
        if r == .incomplete { continue }
        require(r == whole, "prefix of \(k) bytes gives \(r), the whole \(b.count) gives \(whole): \(show(b))")
        if r == .complete {
            require(sameHTTPHead(h, head), "prefix of \(k) bytes parses to another head: \(show(b))")
        }
    }
    if whole == .complete {
        // one byte less than the head cannot be a complete head
        let (r, _) = withPrefix(b, head.headLength - 1) { parseHTTP($0, limits) }
        require(r == .incomplete, "the head minus its last byte gives \(r): \(show(b))")
    }
}

/// Whether a head accepted under the defaults stays within `smallHTTPLimits`.
func fitsSmallLimits(_ b: UnsafeRawBufferPointer, _ h: HTTPRequestHead) -> Bool {
    let l = smallHTTPLimits
    var leading = 0
    while leading * 2 < h.method.lowerBound { leading += 1 }
    let lineLength = h.target.upperBound + 9 - h.method.lowerBound
    if leading > l.maxLeadingEmptyLines || lineLength > l.maxRequestLine
        || h.headLength > l.maxHeaderBytes || h.headers.count > l.maxHeaderCount {
        return false
    }
    if case .contentLength(let n) = h.framing, n > l.maxBodyBytes { return false }
    // trailing whitespace after a value is not in the range: measure the real line, whose
    // CRLF counts against the limit
    for f in h.headers {
        var e = f.value.upperBound
        while e < b.count && b[e] != 0x0D { e += 1 }
        if e + 2 - f.name.lowerBound > l.maxFieldBytes { return false }
    }
    return true
}

func isTokenByte(_ c: UInt8) -> Bool { isTchar(c) }

/// Comma-list elements of a field value, trimmed of SP/HTAB.
func listElements(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> [[UInt8]] {
    Array(b[r]).split(separator: 0x2C, omittingEmptySubsequences: false).map { e in
        var lo = e.startIndex, hi = e.endIndex
        while lo < hi && (e[lo] == 0x20 || e[lo] == 0x09) { lo += 1 }
        while hi > lo && (e[hi - 1] == 0x20 || e[hi - 1] == 0x09) { hi -= 1 }
        return Array(e[lo..<hi])
    }
}

func lowerASCII(_ a: [UInt8]) -> [UInt8] { a.map { ($0 >= 0x41 && $0 <= 0x5A) ? $0 | 0x20 : $0 } }

func checkHead(_ b: UnsafeRawBufferPointer, _ h: HTTPRequestHead, _ limits: HTTPParserLimits) {
    let n = b.count
    let hl = h.headLength
    func inside(_ r: Range<Int>) -> Bool { r.lowerBound >= 0 && r.upperBound <= hl }
    require(hl >= 4 && hl <= n, "headLength \(hl) for \(n) bytes: \(show(b))")
    require(bytesEqual(b, (hl - 4)..<hl, "\r\n\r\n"), "head does not end with CRLF CRLF: \(show(b))")
    require(limits.maxHeaderBytes <= 0 || hl <= limits.maxHeaderBytes, "head of \(hl) bytes over the limit")

    // leading empty lines, then the request line
    let start = h.method.lowerBound
    require(start % 2 == 0 && start / 2 <= limits.maxLeadingEmptyLines, "method starts at \(start)")
    for k in stride(from: 0, to: start, by: 2) { require(bytesEqual(b, k..<(k + 2), "\r\n"), "junk before the method") }
    require(inside(h.method) && !h.method.isEmpty && b[h.method].allSatisfy(isTokenByte), "bad method range \(h.method)")
    require(b[h.method.upperBound] == 0x20 && h.target.lowerBound == h.method.upperBound + 1, "no SP after the method")
    require(inside(h.target) && !h.target.isEmpty && b[h.target].allSatisfy { $0 > 0x20 && $0 != 0x7F },
            "bad target range \(h.target): \(show(b))")
    require(b[h.target.upperBound] == 0x20, "no SP after the target")
    let version = (h.target.upperBound + 1)..<(h.target.upperBound + 9)
    require(h.versionMinor == 0 || h.versionMinor == 1, "versionMinor \(h.versionMinor)")
    require(bytesEqual(b, version, "HTTP/1.\(h.versionMinor)"), "version bytes do not say HTTP/1.\(h.versionMinor)")
    require(bytesEqual(b, version.upperBound..<(version.upperBound + 2), "\r\n"), "request line not ended by CRLF")
    require(limits.maxRequestLine <= 0 || version.upperBound - start <= limits.maxRequestLine, "request line over the limit")
    require(h.path.lowerBound >= h.target.lowerBound && h.path.upperBound <= h.target.upperBound, "path outside the target")
    // a '#fragment' ends the path and the query
    let fragment = b[h.target].firstIndex(of: 0x23) ?? h.target.upperBound
    require(!b[h.path].contains(0x23), "'#' inside the path")
    if let q = h.query {
        require(q.upperBound == fragment && q.lowerBound > h.target.lowerBound && b[q.lowerBound - 1] == 0x3F,
                "query range \(q) does not follow a '?' and end at the fragment or the target's end")
        require(h.path.upperBound == q.lowerBound - 1, "path does not end at the '?'")
        require(!b[h.path].contains(0x3F), "'?' inside the path")
    } else if b[h.target.lowerBound] == 0x2F {
        require(h.path == h.target.lowerBound..<fragment, "origin-form target without '?' must be the path up to any '#'")
    }
    require(h.isHEAD == bytesEqual(b, h.method, "HEAD"), "isHEAD \(h.isHEAD)")

    // header fields, in order, one per line
    var expected = version.upperBound + 2
    var hosts = 0, clValues: [[UInt8]] = [], teElements: [[UInt8]] = [], teFields = 0
    var close = false, keepAlive = false, expect100 = false
    require(limits.maxHeaderCount <= 0 || h.headers.count <= limits.maxHeaderCount, "\(h.headers.count) header fields")
    for f in h.headers {
        require(f.name.lowerBound == expected, "field name at \(f.name.lowerBound), line starts at \(expected): \(show(b))")
        require(!f.name.isEmpty && inside(f.name) && b[f.name].allSatisfy(isTokenByte), "bad field name \(f.name)")
        require(b[f.name.upperBound] == 0x3A, "field name not followed by ':'")
        require(f.value.lowerBound > f.name.upperBound && f.value.upperBound <= hl - 2, "bad value range \(f.value)")
        // between the colon and the value only OWS; the value has no CTL but HTAB, and is trimmed
        for k in (f.name.upperBound + 1)..<f.value.lowerBound { require(b[k] == 0x20 || b[k] == 0x09, "junk before the value") }
        require(b[f.value].allSatisfy { $0 == 0x09 || ($0 >= 0x20 && $0 != 0x7F) }, "CTL in a value: \(show(b))")
        if let first = b[f.value].first, let last = b[f.value].last {
            require(first != 0x20 && first != 0x09 && last != 0x20 && last != 0x09, "value not trimmed")
        }
        var e = f.value.upperBound
        while e < hl && (b[e] == 0x20 || b[e] == 0x09) { e += 1 }
        require(bytesEqual(b, e..<(e + 2), "\r\n"), "value not followed by OWS CRLF: \(show(b))")
        expected = e + 2

        let name = lowerASCII(Array(b[f.name]))
        let value = Array(b[f.value])
        switch name {
        case Array("host".utf8): hosts += 1
        case Array("content-length".utf8): clValues.append(contentsOf: listElements(b, f.value))
        case Array("transfer-encoding".utf8): teFields += 1; teElements.append(contentsOf: listElements(b, f.value))
        case Array("connection".utf8):
            for t in listElements(b, f.value).map(lowerASCII) {
                if t == Array("close".utf8) { close = true }
                if t == Array("keep-alive".utf8) { keepAlive = true }
            }
        case Array("expect".utf8): if lowerASCII(value) == Array("100-continue".utf8) { expect100 = true }
        default: break
        }
    }
    require(expected == hl - 2, "header lines end at \(expected), head at \(hl): \(show(b))")

    require(hosts <= 1 && (h.versionMinor == 0 || hosts == 1), "\(hosts) Host fields on HTTP/1.\(h.versionMinor)")
    require(clValues.isEmpty || teFields == 0, "both Content-Length and Transfer-Encoding accepted: \(show(b))")
    switch h.framing {
    case .chunked:
        require(h.versionMinor == 1, "chunked on HTTP/1.0")
        require(teElements.map(lowerASCII) == [Array("chunked".utf8)], "chunked framing from \(teElements.count) TE elements: \(show(b))")
    case .contentLength(let length):
        require(teFields == 0 && !clValues.isEmpty, "Content-Length framing without the field")
        for v in clValues {
            require(!v.isEmpty && v.allSatisfy { $0 >= 0x30 && $0 <= 0x39 }, "Content-Length element \(v) is not digits")
            let digits = v.drop { $0 == 0x30 }
            require(String(decoding: digits.isEmpty ? [0x30] : Array(digits), as: UTF8.self) == String(length),
                    "Content-Length element does not say \(length): \(show(b))")
        }
        require(limits.maxBodyBytes <= 0 || length <= limits.maxBodyBytes, "Content-Length \(length) over the limit")
    case .none:
        require(teFields == 0 && clValues.isEmpty, "no framing despite framing fields: \(show(b))")
    }
    let expectedKeepAlive = h.versionMinor == 1 ? !close : (keepAlive && !close)
    require(h.keepAlive == expectedKeepAlive, "keepAlive \(h.keepAlive), fields say \(expectedKeepAlive)")
    require(h.expectContinue == (h.versionMinor == 1 && expect100), "expectContinue \(h.expectContinue)")
}
