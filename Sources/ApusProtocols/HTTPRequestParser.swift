// HTTP/1.1 request head parser (RFC 9112), strict in the places where the RFC
// leaves a choice (as Gunicorn is): CRLF only, no obs-fold, no whitespace
// before the colon, one Host, no Transfer-Encoding other than a single
// `chunked`, no Transfer-Encoding with Content-Length.
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
    /// head longer than `maxHeaderBytes` without its end gives
    /// `.headerFieldsTooLarge`.
    public func parseHead(_ buffer: UnsafeRawBufferPointer, into head: inout HTTPRequestHead) -> HeadParseResult {
        head.reset()
        let n = buffer.count
        // Limits of 0 or less are treated as "very large" rather than trapping.
        let maxHead = limits.maxHeaderBytes > 0 ? limits.maxHeaderBytes : Int.max / 4
        let maxLine = limits.maxRequestLine > 0 ? limits.maxRequestLine : Int.max / 4
        let maxCount = limits.maxHeaderCount > 0 ? limits.maxHeaderCount : Int.max
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
            var q = targetStart
            while q < targetEnd && buffer[q] != 0x3F { q &+= 1 }
            path = targetStart..<q
            if q < targetEnd { query = (q &+ 1)..<targetEnd }
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
            while a < targetEnd {
                let b = buffer[a]
                if b == 0x2F || b == 0x3F { break }
                a &+= 1
            }
            if a == authorityStart { return .failure(.badRequest("empty authority in absolute-form")) }
            var q = a
            while q < targetEnd && buffer[q] != 0x3F { q &+= 1 }
            path = a..<q
            if q < targetEnd { query = (q &+ 1)..<targetEnd }
        }

        head.method = method
        head.target = targetStart..<targetEnd
        head.path = path
        head.query = query
        head.versionMinor = versionMinor

        // 3. Header fields.
        var p = lineEnd &+ 2
        var hostCount = 0
        var contentLength = -1
        var sawTransferEncoding = false
        var chunked = false
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

            // field-name
            let nameStart = p
            while true {
                if p >= hb { return outOfBytes() }
                b = buffer[p]
                if !isTchar(b) { break }
                p &+= 1
            }
            if b != colon {
                if b == sp || b == ht { return .failure(.badRequest("whitespace before colon")) }
                if b == cr || b == lf { return .failure(.badRequest("header line without colon")) }
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
                if p >= hb { return outOfBytes() }
                b = buffer[p]
                if b > sp && b != del {
                    p &+= 1
                    valueEnd = p
                } else if b == sp || b == ht {
                    p &+= 1
                } else if b == cr {
                    break
                } else if b == lf {
                    return .failure(.badRequest("bare LF"))
                } else {
                    return .failure(.badRequest("invalid character in header value"))
                }
            }
            if p &+ 1 >= hb { return outOfBytes() }
            if buffer[p &+ 1] != lf { return .failure(.badRequest("bare CR")) }
            p &+= 2

            let name = nameStart..<nameEnd
            let value = valueStart..<valueEnd
            head.headers.append(HTTPHeaderField(name: name, value: value))

            // Headers the framing depends on.
            switch nameEnd &- nameStart {
            case 4:
                if equalsIgnoringCase(buffer, name, "host") {
                    hostCount &+= 1
                    if hostCount > 1 { return .failure(.badRequest("multiple Host headers")) }
                }
            case 6:
                if equalsIgnoringCase(buffer, name, "expect"),
                   equalsIgnoringCase(buffer, value, "100-continue") {
                    expectContinue = true
                }
            case 10:
                if equalsIgnoringCase(buffer, name, "connection") {
                    scanConnection(buffer, value, close: &connectionClose, keepAlive: &connectionKeepAlive)
                }
            case 14:
                if equalsIgnoringCase(buffer, name, "content-length") {
                    if sawTransferEncoding {
                        return .failure(.badRequest("both Content-Length and Transfer-Encoding"))
                    }
                    guard let length = parseContentLengthList(buffer, value) else {
                        return .failure(.badRequest("invalid Content-Length"))
                    }
                    if contentLength >= 0 && contentLength != length {
                        return .failure(.badRequest("conflicting Content-Length"))
                    }
                    contentLength = length
                }
            case 17:
                if equalsIgnoringCase(buffer, name, "transfer-encoding") {
                    if versionMinor == 0 {
                        return .failure(.badRequest("Transfer-Encoding on HTTP/1.0"))
                    }
                    if contentLength >= 0 {
                        return .failure(.badRequest("both Content-Length and Transfer-Encoding"))
                    }
                    sawTransferEncoding = true
                    if !scanTransferEncoding(buffer, value, chunked: &chunked) {
                        return .failure(.badRequest("unsupported Transfer-Encoding"))
                    }
                }
            default:
                break
            }
        }

        if versionMinor == 1 && hostCount == 0 {
            return .failure(.badRequest("missing Host header"))
        }
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

/// Content-Length value: a comma list of identical decimal numbers (RFC 9110
/// section 8.6 allows a recipient to accept such a list). No signs, no empty
/// elements, no spaces inside a number, no overflow.
@usableFromInline
func parseContentLengthList(_ buffer: UnsafeRawBufferPointer, _ value: Range<Int>) -> Int? {
    var result = -1
    var start = value.lowerBound
    while true {
        var end = start
        while end < value.upperBound && buffer[end] != comma { end &+= 1 }
        guard let v = parseDecimal(buffer, trimOWS(buffer, start..<end)) else { return nil }
        if result >= 0 && result != v { return nil }
        result = v
        if end == value.upperBound { return result }
        start = end &+ 1
    }
}

/// Transfer-Encoding value: comma list whose only accepted element is
/// `chunked` (case-insensitive), at most once over all fields. Returns false
/// for anything else (empty elements included).
@usableFromInline
func scanTransferEncoding(_ buffer: UnsafeRawBufferPointer, _ value: Range<Int>, chunked: inout Bool) -> Bool {
    var start = value.lowerBound
    while true {
        var end = start
        while end < value.upperBound && buffer[end] != comma { end &+= 1 }
        let element = trimOWS(buffer, start..<end)
        if chunked || !equalsIgnoringCase(buffer, element, "chunked") { return false }
        chunked = true
        if end == value.upperBound { return true }
        start = end &+ 1
    }
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
