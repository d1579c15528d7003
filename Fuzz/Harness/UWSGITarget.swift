// Target `uwsgi`: UWSGIRequestParser.parseHead on arbitrary bytes, with the default limits
// and with small ones. Checks:
// - a complete head: headLength is 4 + datasize (little-endian bytes 1-2), modifier1 is 0;
//   the vars tile the vars block exactly (each key preceded by its 2-byte length, each value
//   by its own); no key is empty; the var count is within the limit; method, PATH_INFO,
//   REQUEST_URI, QUERY_STRING are the last such var; contentLength is what every
//   CONTENT_LENGTH var says (0 without one) and within the limit; https follows HTTPS,
//   REQUEST_SCHEME and UWSGI_SCHEME;
// - prefixes: `.incomplete` or exactly the whole buffer's result (and the same head);
// - limits: the small limits never accept what the defaults refuse, and a packet within
//   them parses the same under both.

let smallUWSGILimits: UWSGIParserLimits = {
    var l = UWSGIParserLimits()
    l.maxVarsBytes = 64
    l.maxVars = 3
    l.maxBodyBytes = 10
    return l
}()

func parseUWSGIHead(_ b: UnsafeRawBufferPointer, _ limits: UWSGIParserLimits) -> (UWSGIParseResult, UWSGIRequestHead) {
    var head = UWSGIRequestHead()
    let r = UWSGIRequestParser(limits: limits).parseHead(b, into: &head)
    return (r, head)
}

func sameUWSGIHead(_ a: UWSGIRequestHead, _ b: UWSGIRequestHead) -> Bool {
    a.vars == b.vars && a.headLength == b.headLength && a.contentLength == b.contentLength && a.method == b.method
        && a.pathInfo == b.pathInfo && a.requestURI == b.requestURI && a.queryString == b.queryString && a.https == b.https
}

func fuzzUWSGI(_ b: UnsafeRawBufferPointer) {
    let defaults = UWSGIParserLimits()
    let (whole, head) = parseUWSGIHead(b, defaults)
    if whole == .complete { checkUWSGIHead(b, head, defaults) }
    checkUWSGIPrefixes(b, defaults, whole, head)

    let (small, smallHead) = parseUWSGIHead(b, smallUWSGILimits)
    if small == .complete {
        checkUWSGIHead(b, smallHead, smallUWSGILimits)
        require(whole == .complete && sameUWSGIHead(head, smallHead), "accepted under the small limits only: \(show(b))")
    } else if whole == .complete && head.headLength - 4 <= smallUWSGILimits.maxVarsBytes
                && head.vars.count <= smallUWSGILimits.maxVars && head.contentLength <= smallUWSGILimits.maxBodyBytes {
        require(false, "packet within the small limits refused by them (\(small)): \(show(b))")
    }
    checkUWSGIPrefixes(b, smallUWSGILimits, small, smallHead)
}

func checkUWSGIPrefixes(_ b: UnsafeRawBufferPointer, _ limits: UWSGIParserLimits, _ whole: UWSGIParseResult, _ head: UWSGIRequestHead) {
    let extra = whole == .complete ? [head.headLength - 1, head.headLength, 3, 4] : [1, 3, 4]
    for k in prefixLengths(b, extra: extra) {
        let (r, h) = withPrefix(b, k) { parseUWSGIHead($0, limits) }
        if r == .incomplete { continue }
        require(r == whole, "prefix of \(k) bytes gives \(r), the whole gives \(whole): \(show(b))")
        if r == .complete { require(sameUWSGIHead(h, head), "prefix of \(k) bytes parses to another head") }
    }
}

func le16(_ b: UnsafeRawBufferPointer, _ at: Int) -> Int { Int(b[at]) | Int(b[at + 1]) << 8 }

func checkUWSGIHead(_ b: UnsafeRawBufferPointer, _ h: UWSGIRequestHead, _ limits: UWSGIParserLimits) {
    require(b.count >= 4 && b[0] == 0, "complete without a WSGI header")
    let end = 4 + le16(b, 1)
    require(h.headLength == end && end <= b.count, "headLength \(h.headLength), datasize says \(end)")
    require(limits.maxVarsBytes <= 0 || end - 4 <= limits.maxVarsBytes, "vars block over the limit")
    require(limits.maxVars <= 0 || h.vars.count <= limits.maxVars, "\(h.vars.count) vars over the limit")
    var p = 4
    var method: Range<Int>? = nil, pathInfo: Range<Int>? = nil, uri: Range<Int>? = nil, query: Range<Int>? = nil
    var https: Range<Int>? = nil, requestScheme: Range<Int>? = nil, uwsgiScheme: Range<Int>? = nil
    var lengths: [Range<Int>] = []
    for v in h.vars {
        require(v.key.lowerBound == p + 2 && v.key.count == le16(b, p) && !v.key.isEmpty, "key \(v.key) does not follow its length at \(p)")
        require(v.value.lowerBound == v.key.upperBound + 2 && v.value.count == le16(b, v.key.upperBound),
                "value \(v.value) does not follow its length")
        require(v.value.upperBound <= end, "value runs past the vars block")
        p = v.value.upperBound
        if bytesEqual(b, v.key, "REQUEST_METHOD") { method = v.value }
        if bytesEqual(b, v.key, "PATH_INFO") { pathInfo = v.value }
        if bytesEqual(b, v.key, "REQUEST_URI") { uri = v.value }
        if bytesEqual(b, v.key, "QUERY_STRING") { query = v.value }
        if bytesEqual(b, v.key, "HTTPS") { https = v.value }
        if bytesEqual(b, v.key, "REQUEST_SCHEME") { requestScheme = v.value }
        if bytesEqual(b, v.key, "UWSGI_SCHEME") { uwsgiScheme = v.value }
        if bytesEqual(b, v.key, "CONTENT_LENGTH") { lengths.append(v.value) }
    }
    require(p == end, "vars end at \(p), the block at \(end)")
    require(h.method == method && h.pathInfo == pathInfo && h.requestURI == uri && h.queryString == query,
            "method/path/uri/query ranges are not the last such vars")
    for r in lengths {
        let text = String(decoding: b[r], as: UTF8.self)
        let value = r.isEmpty ? 0 : (text.allSatisfy { $0.isASCII && $0.isNumber } ? Int(text) : nil)
        require(value == h.contentLength, "CONTENT_LENGTH \"\(text)\" but contentLength \(h.contentLength)")
    }
    if lengths.isEmpty { require(h.contentLength == 0, "contentLength \(h.contentLength) without CONTENT_LENGTH") }
    require(limits.maxBodyBytes <= 0 || h.contentLength <= limits.maxBodyBytes, "contentLength over the limit")
    func lower(_ r: Range<Int>?) -> String? { r.map { String(decoding: lowerASCII(Array(b[$0])), as: UTF8.self) } }
    let expectHTTPS = lower(https) == "on" || (https.map { bytesEqual(b, $0, "1") } ?? false)
        || lower(requestScheme) == "https" || lower(uwsgiScheme) == "https"
    require(h.https == expectHTTPS, "https \(h.https), vars say \(expectHTTPS)")
}
