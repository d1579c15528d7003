// Incremental decoder for `Transfer-Encoding: chunked` request bodies
// (RFC 9112 section 7.1). Keeps its state between calls, so input may be
// split anywhere; de-chunked data is handed to a sink without copying.
//
// Trailer fields are checked as header fields are (a token name, a colon right
// after it, no obs-fold, no control bytes) and then discarded, except that a
// field that must never be a trailer (`isForbiddenTrailer`) fails with 400.

public enum ChunkedResult: Sendable, Equatable {
    /// All input was consumed (always `input.count`); the body is not finished.
    case needMore(consumed: Int)
    /// The body ended (last chunk and trailer section read); `consumed` input
    /// bytes belonged to it, the rest (if any) is the next pipelined request.
    case done(consumed: Int)
    /// The body is malformed or too large; answer `error.status` and close.
    case failure(HTTPRequestError)
}

public struct ChunkedDecoder: Sendable {
    /// Maximum size of the trailer section (431 beyond).
    public static let maxTrailerBytes = 8192
    /// Maximum length of the chunk extensions of one chunk-size line (400 beyond).
    public static let maxChunkExtensionBytes = 4096
    /// Maximum number of hex digits in a chunk size (400 beyond).
    public static let maxChunkSizeDigits = 16

    @usableFromInline
    enum State: UInt8, Sendable {
        case size, sizeWhitespace, extensions, sizeLF
        case data, dataCR, dataLF
        case trailerLineStart, trailerName, trailerLine, trailerLF, finalLF
        case done, failed
    }

    @usableFromInline var state: State = .size
    @usableFromInline var chunkSize = 0        // size being parsed, then bytes left in the chunk
    @usableFromInline var digits = 0
    @usableFromInline var lineBytes = 0
    @usableFromInline var trailerBytes = 0
    /// The current trailer field name, lower-cased, as far as it fits (the
    /// longest forbidden name has 19 bytes); `nameLength` counts all of it.
    @usableFromInline var name: (UInt64, UInt64, UInt64) = (0, 0, 0)
    @usableFromInline var nameLength = 0
    @usableFromInline var error: HTTPRequestError = .badRequest("")
    public let maxBodyBytes: Int
    /// Total de-chunked bytes delivered to the sink so far.
    public private(set) var decodedBytes = 0

    /// `maxBodyBytes`: limit on the decoded size (413 beyond); 0 = unlimited.
    public init(maxBodyBytes: Int) {
        self.maxBodyBytes = maxBodyBytes
    }

    /// True once the whole body has been read.
    public var isDone: Bool { state == .done }

    /// Starts over for a new body (same limit).
    public mutating func reset() {
        state = .size
        chunkSize = 0
        digits = 0
        lineBytes = 0
        trailerBytes = 0
        name = (0, 0, 0)
        nameLength = 0
        decodedBytes = 0
        error = .badRequest("")
    }

    /// Adds a byte of a trailer field name (lower-cased) to `name`.
    @inline(__always)
    mutating func appendNameByte(_ b: UInt8) {
        let i = nameLength
        nameLength &+= 1
        if i >= MemoryLayout.size(ofValue: name) { return }
        withUnsafeMutableBytes(of: &name) { $0[i] = asciiLower(b) }
    }

    /// True if the trailer field name just read must never be a trailer.
    @inline(__always)
    func nameIsForbidden() -> Bool {
        let count = nameLength
        if count > MemoryLayout.size(ofValue: name) { return false }
        return withUnsafeBytes(of: name) { isForbiddenTrailer(UnsafeRawBufferPointer(rebasing: $0[0..<count])) }
    }

    @inline(__always)
    mutating func fail(_ e: HTTPRequestError) -> ChunkedResult {
        state = .failed
        error = e
        return .failure(e)
    }

    /// Feeds bytes (starting right after the head, or continuing); calls
    /// `sink` with each piece of de-chunked data (slices of `input`, valid only
    /// during the call). After `.done` further calls return `.done(consumed: 0)`;
    /// after `.failure` they return the same failure.
    public mutating func decode(_ input: UnsafeRawBufferPointer, sink: (UnsafeRawBufferPointer) -> Void) -> ChunkedResult {
        if state == .done { return .done(consumed: 0) }
        if state == .failed { return .failure(error) }
        let n = input.count
        var i = 0
        while i < n {
            if state == .data {
                let available = n &- i
                let take = chunkSize < available ? chunkSize : available
                sink(UnsafeRawBufferPointer(rebasing: input[i..<(i &+ take)]))
                i &+= take
                chunkSize &-= take
                decodedBytes &+= take
                if chunkSize == 0 { state = .dataCR }
                continue
            }
            let b = input[i]
            i &+= 1
            switch state {
            case .size:
                if let h = hexValue(b) {
                    if digits == ChunkedDecoder.maxChunkSizeDigits || chunkSize > (Int.max >> 4) {
                        return fail(.badRequest("chunk size too large"))
                    }
                    chunkSize = (chunkSize << 4) | h
                    digits &+= 1
                } else {
                    if digits == 0 { return fail(.badRequest("missing chunk size")) }
                    if b == cr {
                        state = .sizeLF
                    } else if b == 0x3B {
                        state = .extensions
                        lineBytes = 0
                    } else if b == sp || b == ht {
                        state = .sizeWhitespace
                    } else {
                        return fail(.badRequest("invalid chunk size"))
                    }
                }
            case .sizeWhitespace:
                if b == cr {
                    state = .sizeLF
                } else if b == 0x3B {
                    state = .extensions
                    lineBytes = 0
                } else if b != sp && b != ht {
                    return fail(.badRequest("invalid chunk size"))
                }
            case .extensions:
                // Loose validation: any visible byte, SP or HTAB until CRLF.
                if b == cr {
                    state = .sizeLF
                } else if (b < sp && b != ht) || b == del {
                    return fail(.badRequest("invalid chunk extension"))
                } else {
                    lineBytes &+= 1
                    if lineBytes > ChunkedDecoder.maxChunkExtensionBytes {
                        return fail(.badRequest("chunk extension too long"))
                    }
                }
            case .sizeLF:
                if b != lf { return fail(.badRequest("bare CR in chunk size line")) }
                digits = 0
                if chunkSize == 0 {
                    state = .trailerLineStart
                } else {
                    if maxBodyBytes > 0 && chunkSize > maxBodyBytes &- decodedBytes {
                        return fail(.payloadTooLarge)
                    }
                    state = .data
                }
            case .dataCR:
                if b != cr { return fail(.badRequest("missing CRLF after chunk data")) }
                state = .dataLF
            case .dataLF:
                if b != lf { return fail(.badRequest("missing CRLF after chunk data")) }
                state = .size
            case .trailerLineStart:
                trailerBytes &+= 1
                if b == cr {
                    state = .finalLF
                } else if b == lf {
                    return fail(.badRequest("bare LF in trailer section"))
                } else if b == sp || b == ht {
                    return fail(.badRequest("obsolete line folding in trailer section"))
                } else if !isTchar(b) {
                    return fail(.badRequest("invalid trailer field name"))
                } else {
                    if trailerBytes > ChunkedDecoder.maxTrailerBytes { return fail(.headerFieldsTooLarge) }
                    name = (0, 0, 0)
                    nameLength = 0
                    appendNameByte(b)
                    state = .trailerName
                }
            case .trailerName:
                trailerBytes &+= 1
                if trailerBytes > ChunkedDecoder.maxTrailerBytes { return fail(.headerFieldsTooLarge) }
                if isTchar(b) {
                    appendNameByte(b)
                } else if b == colon {
                    if nameIsForbidden() { return fail(.badRequest("field not allowed in a trailer")) }
                    state = .trailerLine
                } else {
                    return fail(.badRequest("invalid trailer field name"))
                }
            case .trailerLine:
                trailerBytes &+= 1
                if b == cr {
                    state = .trailerLF
                } else if b == lf {
                    return fail(.badRequest("bare LF in trailer section"))
                } else if (b < sp && b != ht) || b == del {
                    return fail(.badRequest("invalid character in trailer section"))
                } else if trailerBytes > ChunkedDecoder.maxTrailerBytes {
                    return fail(.headerFieldsTooLarge)
                }
            case .trailerLF:
                trailerBytes &+= 1
                if b != lf { return fail(.badRequest("bare CR in trailer section")) }
                state = .trailerLineStart
            case .finalLF:
                if b != lf { return fail(.badRequest("bare CR at end of chunked body")) }
                state = .done
                return .done(consumed: i)
            case .data, .done, .failed:
                break  // handled above
            }
        }
        return .needMore(consumed: n)
    }
}

/// True for a field name (given in lower case) that must never come in a trailer
/// section: RFC 9110 section 6.5.1 forbids trailers that frame the message
/// (Content-Length, Transfer-Encoding), route it (Host), modify the request
/// (the controls and conditionals: Cache-Control, Expect, Max-Forwards, Pragma,
/// Range, TE, If-*), authenticate (Authorization, Proxy-Authorization,
/// Cookie), control the response (Age, Date, Expires, Location, Retry-After,
/// Vary, Warning) or say how to process the content (Content-Encoding,
/// Content-Type, Content-Range, Trailer).
@usableFromInline
func isForbiddenTrailer(_ name: UnsafeRawBufferPointer) -> Bool {
    let all = 0..<name.count
    func its(_ s: StaticString) -> Bool { equalsExactly(name, all, s) }
    switch name.count {
    case 2: return its("te")
    case 3: return its("age")
    case 4: return its("host") || its("date") || its("vary")
    case 5: return its("range")
    case 6: return its("cookie") || its("expect") || its("pragma")
    case 7: return its("expires") || its("trailer") || its("warning")
    case 8: return its("if-match") || its("if-range") || its("location")
    case 11: return its("retry-after")
    case 12: return its("content-type") || its("max-forwards")
    case 13: return its("authorization") || its("cache-control") || its("content-range") || its("if-none-match")
    case 14: return its("content-length")
    case 16: return its("content-encoding")
    case 17: return its("transfer-encoding") || its("if-modified-since")
    case 19: return its("proxy-authorization") || its("if-unmodified-since")
    default: return false
    }
}
