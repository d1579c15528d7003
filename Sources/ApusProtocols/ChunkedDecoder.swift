// Incremental decoder for `Transfer-Encoding: chunked` request bodies
// (RFC 9112 section 7.1). Keeps its state between calls, so input may be
// split anywhere; de-chunked data is handed to a sink without copying.

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
        case trailerLineStart, trailerLine, trailerLF, finalLF
        case done, failed
    }

    @usableFromInline var state: State = .size
    @usableFromInline var chunkSize = 0        // size being parsed, then bytes left in the chunk
    @usableFromInline var digits = 0
    @usableFromInline var lineBytes = 0
    @usableFromInline var trailerBytes = 0
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
        decodedBytes = 0
        error = .badRequest("")
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
                } else if (b < sp && b != ht) || b == del {
                    return fail(.badRequest("invalid character in trailer section"))
                } else {
                    if trailerBytes > ChunkedDecoder.maxTrailerBytes { return fail(.headerFieldsTooLarge) }
                    state = .trailerLine
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
