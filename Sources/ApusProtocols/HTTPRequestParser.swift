// HTTP/1.1 request head parser (RFC 9112), strict in the places where the RFC
// leaves a choice (as Gunicorn is): CRLF only, no obs-fold, no whitespace
// before the colon, no Transfer-Encoding with Content-Length, no
// Transfer-Encoding on HTTP/1.0, one Content-Length field holding one number,
// no second field line for the single-value fields of `SingleValueField`
// (Host, Content-Type, Authorization, ...). Transfer-Encoding must be a list of
// tokens in which `chunked` comes once and last: anything else is 400; a
// well-formed list naming another coding is 501, as Apus implements none. A
// `#fragment` in the target is kept in `target` and left out of `path` and
// `query`. Header lines longer than `maxFieldBytes` (CRLF included) are 431.
//
// The parser is a single left-to-right pass over the buffer. It keeps no
// state between calls: on `.incomplete` the caller reads more and calls again
// with the whole buffer. Every decision is taken when the scan reaches the
// byte that causes it, so the result for a prefix of a buffer is always either
// `.incomplete` or the result for the whole buffer (tests check this).

public struct HTTPRequestParser: Sendable {
    public var limits: HTTPParserLimits

    public init(limits: HTTPParserLimits = HTTPParserLimits()) {
        self.limits = limits
    }

    /// Parses a request head at the start of `buffer` into `head` (which is
    /// reset first; on `.failure` its content is unspecified).
    ///
    /// `.incomplete` means: read more bytes and call again with the whole
    /// buffer. The limits are enforced on incomplete input too: a request line
    /// longer than `maxRequestLine` without its CRLF gives `.uriTooLong`, a
    /// head longer than `maxHeaderBytes` without its end, or a header line
    /// longer than `maxFieldBytes` without its CRLF, gives
    /// `.headerFieldsTooLarge`.
    public func parseHead(_ buffer: UnsafeRawBufferPointer, into head: inout HTTPRequestHead) -> HeadParseResult {
        head.reset()
        let n = buffer.count
        // Limits of 0 or less are treated as "very large" rather than trapping.
        let maxHead = limits.maxHeaderBytes > 0 ? limits.maxHeaderBytes : Int.max / 4
        let maxLine = limits.maxRequestLine > 0 ? limits.maxRequestLine : Int.max / 4
        let maxCount = limits.maxHeaderCount > 0 ? limits.maxHeaderCount : Int.max
        // Longest header line without its CRLF (`maxFieldBytes` counts the CRLF).
        let maxFieldLine = limits.maxFieldBytes > 2 ? limits.maxFieldBytes &- 2
            : (limits.maxFieldBytes > 0 ? 0 : Int.max / 4)
        // All scanning of the head stops at `hb`; running into it means either
        // "need more bytes" or "the head is too large".
        let hb = n < maxHead ? n : maxHead
        @inline(__always) func outOfBytes() -> HeadParseResult {
            hb == maxHead ? .failure(.headerFieldsTooLarge) : .incomplete
        }

        // 1. Leading empty lines (robustness, RFC 9112 section 2.2).
        var i = 0
        var emptyLines = 0
        while true {
            if i >= hb { return outOfBytes() }
            let b = buffer[i]
            if b == cr {
                if i &+ 1 >= hb { return outOfBytes() }
                if buffer[i &+ 1] != lf { return .failure(.badRequest("bare CR")) }
                emptyLines &+= 1
                if emptyLines > limits.maxLeadingEmptyLines {
                    return .failure(.badRequest("too many empty lines before the request line"))
                }
                i &+= 2
            } else if b == lf {
                return .failure(.badRequest("bare LF"))
            } else {
                break
            }
        }

        // 2. Request line: find its end first (bounded by both limits).
        let lineStart = i
        let lineBound = lineStart &+ maxLine &+ 1   // the CR may sit at lineStart + maxLine at most
        let scanEnd = lineBound < hb ? lineBound : hb
        var j = lineStart
        while j < scanEnd {
            let b = buffer[j]
            if b == cr || b == lf { break }
            j &+= 1
        }
        if j == scanEnd {
            if scanEnd == lineBound { return .failure(.uriTooLong) }
            return outOfBytes()
        }
        if buffer[j] == lf { return .failure(.badRequest("bare LF")) }
        if j &+ 1 >= hb { return outOfBytes() }
        if buffer[j &+ 1] != lf { return .failure(.badRequest("bare CR")) }
        let lineEnd = j

        // method
        var k = lineStart
        while k < lineEnd && isTchar(buffer[k]) { k &+= 1 }
        if k == lineStart || k == lineEnd || buffer[k] != sp {
            return .failure(.badRequest("invalid method"))
        }
        let method = lineStart..<k
        k &+= 1
        // request-target
        let targetStart = k
        while k < lineEnd {
            let b = buffer[k]
            if b > sp && b != del { k &+= 1; continue }
            if b == sp { break }
            return .failure(.badRequest("invalid character in request-target"))
        }
        if k == targetStart { return .failure(.badRequest("empty request-target")) }
        if k == lineEnd { return .failure(.badRequest("missing HTTP version")) }
        let targetEnd = k
        k &+= 1
        // HTTP-version: exactly "HTTP/" DIGIT "." DIGIT
        if lineEnd &- k != 8
            || buffer[k] != 0x48 || buffer[k &+ 1] != 0x54 || buffer[k &+ 2] != 0x54
            || buffer[k &+ 3] != 0x50 || buffer[k &+ 4] != 0x2F || buffer[k &+ 6] != 0x2E {
            return .failure(.badRequest("invalid HTTP version"))
        }
        let major = buffer[k &+ 5] &- 0x30
        let minor = buffer[k &+ 7] &- 0x30
        if major > 9 || minor > 9 { return .failure(.badRequest("invalid HTTP version")) }
        if major != 1 || minor > 1 { return .failure(.versionNotSupported) }
        let versionMinor = Int(minor)

        // request-target form
        let isCONNECT = equalsExactly(buffer, method, "CONNECT")
        var path = targetEnd..<targetEnd
        var query: Range<Int>? = nil
        let first = buffer[targetStart]
        if first == 0x2F {  // '/' origin-form
            if isCONNECT { return .failure(.badRequest("CONNECT requires authority-form")) }
            (path, query) = splitPathAndQuery(buffer, targetStart..<targetEnd)
        } else if first == 0x2A {  // '*' asterisk-form
            if targetEnd &- targetStart != 1 || !equalsExactly(buffer, method, "OPTIONS") {
                return .failure(.badRequest("invalid asterisk-form"))
            }
            path = targetStart..<targetEnd
        } else if isCONNECT {
            if !isAuthorityForm(buffer, targetStart..<targetEnd) {
                return .failure(.badRequest("invalid authority-form"))
            }
        } else {
            // absolute-form: scheme "://" authority [path] ["?" query]
            var s = targetStart
            let c0 = buffer[s] | 0x20
            if c0 < 0x61 || c0 > 0x7A { return .failure(.badRequest("invalid request-target")) }
            s &+= 1
            while s < targetEnd {
                let b = buffer[s]
                let l = b | 0x20
                if (l >= 0x61 && l <= 0x7A) || (b >= 0x30 && b <= 0x39) || b == 0x2B || b == 0x2D || b == 0x2E {
                    s &+= 1
                } else {
                    break
                }
            }
            if targetEnd &- s < 3 || buffer[s] != colon || buffer[s &+ 1] != 0x2F || buffer[s &+ 2] != 0x2F {
                return .failure(.badRequest("invalid request-target"))
            }
            let authorityStart = s &+ 3
            var a = authorityStart
            var hostStart = authorityStart  // after the last '@' (userinfo is not part of the host)
            while a < targetEnd {
                let b = buffer[a]
                if b == 0x2F || b == 0x3F || b == 0x23 { break }
                if b == 0x40 { hostStart = a &+ 1 }
                a &+= 1
            }
            // RFC 9110 section 4.2.1: an http(s) URI with an empty host is invalid.
            if hostStart == a || buffer[hostStart] == colon {
                return .failure(.badRequest("empty host in absolute-form"))
            }
            head.authority = hostStart..<a
            (path, query) = splitPathAndQuery(buffer, a..<targetEnd)
        }

        head.method = method
        head.target = targetStart..<targetEnd
        head.path = path
        head.query = query
        head.versionMinor = versionMinor

        // 3. Header fields.
        var p = lineEnd &+ 2
        var singletons: UInt16 = 0      // `SingleValueField` bits of the fields seen
        var contentLength = -1
        var sawTransferEncoding = false
        var chunked = false
        var otherCoding = false         // a transfer coding other than chunked was named
        var connectionClose = false
        var connectionKeepAlive = false
        var expectContinue = false

        while true {
            if p >= hb { return outOfBytes() }
            var b = buffer[p]
            if b == cr {
                if p &+ 1 >= hb { return outOfBytes() }
                if buffer[p &+ 1] != lf { return .failure(.badRequest("bare CR")) }
                p &+= 2
                break
            }
            if b == lf { return .failure(.badRequest("bare LF")) }
            if b == sp || b == ht { return .failure(.badRequest("obsolete line folding or leading whitespace")) }
            if head.headers.count >= maxCount { return .failure(.headerFieldsTooLarge) }

            // The line is too long (431) once a byte other than its CR sits at `fieldBound`
            // or later. Checked where the scan stops (at the CR, out of bytes, or at an
            // error), not at every byte: an error at or past the bound is 431, so each
            // decision is still the one of the first byte that causes it.
            let nameStart = p
            let fieldBound = nameStart &+ maxFieldLine

            // field-name
            while true {
                if p >= hb { return p > fieldBound ? .failure(.headerFieldsTooLarge) : outOfBytes() }
                b = buffer[p]
                if !isTchar(b) { break }
                p &+= 1
            }
            if b != colon {
                if b == cr {
                    if p > fieldBound { return .failure(.headerFieldsTooLarge) }
                    return .failure(.badRequest("header line without colon"))
                }
                if p >= fieldBound { return .failure(.headerFieldsTooLarge) }
                if b == sp || b == ht { return .failure(.badRequest("whitespace before colon")) }
                if b == lf { return .failure(.badRequest("header line without colon")) }
                return .failure(.badRequest("invalid character in header name"))
            }
            if p == nameStart { return .failure(.badRequest("empty header name")) }
            let nameEnd = p
            p &+= 1

            // field-value, trimmed of OWS
            while p < hb && isOWS(buffer[p]) { p &+= 1 }
            let valueStart = p
            var valueEnd = p
            while true {
                if p >= hb { return p > fieldBound ? .failure(.headerFieldsTooLarge) : outOfBytes() }
                b = buffer[p]
                if b > sp && b != del {
                    p &+= 1
                    valueEnd = p
                } else if b == sp || b == ht {
                    p &+= 1
                } else if b == cr {
                    break
                } else if p >= fieldBound {
                    return .failure(.headerFieldsTooLarge)
                } else if b == lf {
                    return .failure(.badRequest("bare LF"))
                } else {
                    return .failure(.badRequest("invalid character in header value"))
                }
            }
            if p > fieldBound { return .failure(.headerFieldsTooLarge) }
            if p &+ 1 >= hb { return outOfBytes() }
            if buffer[p &+ 1] != lf { return .failure(.badRequest("bare CR")) }
            p &+= 2

            let name = nameStart..<nameEnd
            let value = valueStart..<valueEnd
            head.headers.append(HTTPHeaderField(name: name, value: value))

            // One switch on the name's length for the fields the framing depends on and
            // for the single-value fields that must not repeat (`SingleValueField`).
            var single: UInt16 = 0
            switch nameEnd &- nameStart {
            case 4:
                if nameEquals(buffer, name, "host") { single = SingleValueField.host }
            case 5:
                if nameEquals(buffer, name, "range") { single = SingleValueField.range }
            case 6:
                if nameEquals(buffer, name, "expect"),
                   equalsIgnoringCase(buffer, value, "100-continue") {
                    expectContinue = true
                }
            case 8:
                if nameEquals(buffer, name, "if-range") { single = SingleValueField.ifRange }
            case 10:
                if nameEquals(buffer, name, "connection") {
                    scanConnection(buffer, value, close: &connectionClose, keepAlive: &connectionKeepAlive)
                }
            case 12:
                if nameEquals(buffer, name, "content-type") { single = SingleValueField.contentType }
            case 13:
                if nameEquals(buffer, name, "authorization") {
                    single = SingleValueField.authorization
                } else if nameEquals(buffer, name, "content-range") {
                    single = SingleValueField.contentRange
                }
            case 14:
                if nameEquals(buffer, name, "content-length") {
                    if singletons & SingleValueField.contentLength != 0 {
                        return .failure(.badRequest("repeated Content-Length"))
                    }
                    single = SingleValueField.contentLength
                    if sawTransferEncoding {
                        return .failure(.badRequest("both Content-Length and Transfer-Encoding"))
                    }
                    // One number only: a list, even of identical numbers, is refused.
                    guard let length = parseDecimal(buffer, value) else {
                        return .failure(.badRequest("invalid Content-Length"))
                    }
                    contentLength = length
                }
            case 17:
                if nameEquals(buffer, name, "transfer-encoding") {
                    if versionMinor == 0 {
                        return .failure(.badRequest("Transfer-Encoding on HTTP/1.0"))
                    }
                    if contentLength >= 0 {
                        return .failure(.badRequest("both Content-Length and Transfer-Encoding"))
                    }
                    sawTransferEncoding = true
                    if !scanTransferEncoding(buffer, value, chunked: &chunked, otherCoding: &otherCoding) {
                        return .failure(.badRequest("malformed Transfer-Encoding"))
                    }
                } else if nameEquals(buffer, name, "if-modified-since") {
                    single = SingleValueField.ifModifiedSince
                }
            case 19:
                if nameEquals(buffer, name, "proxy-authorization") {
                    single = SingleValueField.proxyAuthorization
                } else if nameEquals(buffer, name, "if-unmodified-since") {
                    single = SingleValueField.ifUnmodifiedSince
                }
            default:
                break
            }
            if single != 0 {
                if singletons & single != 0 { return .failure(.badRequest("repeated single-value header field")) }
                singletons |= single
            }
        }

        if versionMinor == 1 && singletons & SingleValueField.host == 0 {
            return .failure(.badRequest("missing Host header"))
        }
        // Decided only now: a later Transfer-Encoding line may still be malformed (400).
        if otherCoding { return .failure(.notImplemented) }
        if chunked {
            head.framing = .chunked
        } else if contentLength >= 0 {
            if limits.maxBodyBytes > 0 && contentLength > limits.maxBodyBytes {
                return .failure(.payloadTooLarge)
            }
            head.framing = .contentLength(contentLength)
        } else {
            head.framing = .none
        }
        head.keepAlive = versionMinor == 1 ? !connectionClose : (connectionKeepAlive && !connectionClose)
        head.expectContinue = versionMinor == 1 && expectContinue
        head.isHEAD = equalsExactly(buffer, method, "HEAD")
        head.headLength = p
        return .complete
    }
}

/// authority-form for CONNECT: `host:port`, host non-empty without `/ ? # @`,
/// port one or more digits.
@usableFromInline
func isAuthorityForm(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
    var lastColon = -1
    var i = range.lowerBound
    while i < range.upperBound {
        let b = buffer[i]
        if b == 0x2F || b == 0x3F || b == 0x23 || b == 0x40 { return false }
        if b == colon { lastColon = i }
        i &+= 1
    }
    if lastColon <= range.lowerBound || lastColon == range.upperBound &- 1 { return false }
    i = lastColon &+ 1
    while i < range.upperBound {
        let b = buffer[i]
        if b < 0x30 || b > 0x39 { return false }
        i &+= 1
    }
    return true
}

/// Splits an origin-form target, or what follows the authority of an
/// absolute-form one, into the path (up to `?` or `#`) and the query (after
/// `?`, up to `#`; nil without a `?` before any `#`). A `#fragment` is in
/// neither: a client must not send one, and it never concerns the server.
@inline(__always) @usableFromInline
func splitPathAndQuery(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> (Range<Int>, Range<Int>?) {
    var q = range.lowerBound
    while q < range.upperBound {
        let b = buffer[q]
        if b == 0x3F || b == 0x23 { break }
        q &+= 1
    }
    let path = range.lowerBound..<q
    if q == range.upperBound || buffer[q] == 0x23 { return (path, nil) }
    var f = q &+ 1
    while f < range.upperBound && buffer[f] != 0x23 { f &+= 1 }
    return (path, (q &+ 1)..<f)
}

/// Transfer-Encoding value, one field line of the list that all such lines
/// make together: tokens separated by commas, `chunked` (case-insensitive) at
/// most once and last. Returns false when the list is malformed: an empty
/// element, an element that is not a token (parameters, quotes), an element
/// after `chunked`. Any other token is a coding Apus does not implement:
/// `otherCoding` is set and the caller answers 501 once the head is complete.
@usableFromInline
func scanTransferEncoding(_ buffer: UnsafeRawBufferPointer, _ value: Range<Int>,
                          chunked: inout Bool, otherCoding: inout Bool) -> Bool {
    var start = value.lowerBound
    while true {
        var end = start
        while end < value.upperBound && buffer[end] != comma { end &+= 1 }
        let element = trimOWS(buffer, start..<end)
        if chunked || !isToken(buffer, element) { return false }
        if equalsIgnoringCase(buffer, element, "chunked") { chunked = true } else { otherCoding = true }
        if end == value.upperBound { return true }
        start = end &+ 1
    }
}

/// True if `range` is a non-empty run of `tchar`.
@inline(__always) @usableFromInline
func isToken(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> Bool {
    if range.isEmpty { return false }
    var i = range.lowerBound
    while i < range.upperBound {
        if !isTchar(buffer[i]) { return false }
        i &+= 1
    }
    return true
}

/// The request fields whose value is a single item (RFC 9110: the grammar is not
/// a list) and that a second field line must not join into an ambiguous "a, b":
/// a bit for each, for the set of those seen. Gunicorn refuses a second Host,
/// Content-Type or Content-Length; nginx also a second Authorization,
/// Content-Range, If-Range, If-Modified-Since or If-Unmodified-Since; Apus
/// refuses all of these, and Proxy-Authorization and Range too. Informational
/// single-value fields (User-Agent, Referer, From, Date) may repeat: clients do
/// send them twice, and nothing in the server depends on them.
@usableFromInline
enum SingleValueField {
    @usableFromInline static let host: UInt16 = 1 << 0
    @usableFromInline static let range: UInt16 = 1 << 1
    @usableFromInline static let ifRange: UInt16 = 1 << 2
    @usableFromInline static let contentType: UInt16 = 1 << 3
    @usableFromInline static let authorization: UInt16 = 1 << 4
    @usableFromInline static let contentRange: UInt16 = 1 << 5
    @usableFromInline static let contentLength: UInt16 = 1 << 6
    @usableFromInline static let ifModifiedSince: UInt16 = 1 << 7
    @usableFromInline static let proxyAuthorization: UInt16 = 1 << 8
    @usableFromInline static let ifUnmodifiedSince: UInt16 = 1 << 9
}

/// Connection value: comma list of tokens; notes `close` and `keep-alive`
/// (case-insensitive), ignores the rest.
@usableFromInline
func scanConnection(_ buffer: UnsafeRawBufferPointer, _ value: Range<Int>, close: inout Bool, keepAlive: inout Bool) {
    var start = value.lowerBound
    while start <= value.upperBound {
        var end = start
        while end < value.upperBound && buffer[end] != comma { end &+= 1 }
        let element = trimOWS(buffer, start..<end)
        switch element.count {
        case 5: if equalsIgnoringCase(buffer, element, "close") { close = true }
        case 10: if equalsIgnoringCase(buffer, element, "keep-alive") { keepAlive = true }
        default: break
        }
        start = end &+ 1
    }
}
