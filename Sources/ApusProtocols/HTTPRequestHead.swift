// Types describing a parsed HTTP/1.x request head. All positions are byte
// offsets into the buffer that was given to `HTTPRequestParser.parseHead`;
// the bytes themselves are never copied or re-encoded (PEP 3333 wants header
// values as latin-1, i.e. exactly the raw bytes).

/// Limits enforced by `HTTPRequestParser` and `ChunkedDecoder`.
public struct HTTPParserLimits: Sendable, Equatable {
    /// Maximum length of the request line, CRLF excluded (414 beyond).
    public var maxRequestLine = 8190
    /// Maximum size of the whole head: leading empty lines, request line,
    /// header lines and the final CRLF (431 beyond).
    public var maxHeaderBytes = 65536
    /// Maximum number of header fields (431 beyond).
    public var maxHeaderCount = 100
    /// Maximum size of one header line, its CRLF included as Gunicorn counts it
    /// (431 beyond). 0 means only `maxHeaderBytes` applies.
    public var maxFieldBytes = 8190
    /// Maximum body size, for Content-Length and for decoded chunked bodies
    /// (413 beyond). 0 means unlimited.
    public var maxBodyBytes = 1 << 30
    /// Maximum number of empty lines (CRLF) tolerated before the request line (400 beyond).
    public var maxLeadingEmptyLines = 4
    public init() {}
}

/// One header field: byte ranges of the name and of the value (value trimmed
/// of leading and trailing SP/HTAB; an empty value is an empty range).
public struct HTTPHeaderField: Sendable, Equatable {
    public var name: Range<Int>
    public var value: Range<Int>
    public init(name: Range<Int>, value: Range<Int>) {
        self.name = name
        self.value = value
    }
}

/// How the request body is delimited.
public enum BodyFraming: Sendable, Equatable {
    /// No body (neither Content-Length nor Transfer-Encoding).
    case none
    /// Exactly this many bytes follow the head (may be 0).
    case contentLength(Int)
    /// `Transfer-Encoding: chunked`; decode with `ChunkedDecoder`.
    case chunked
}

/// A parsed request head. Reuse one value per connection: `reset()` keeps the
/// capacity of `headers`, so steady-state parsing does not allocate.
public struct HTTPRequestHead: Sendable {
    /// The method token (case-sensitive).
    public var method: Range<Int>
    /// The raw request-target, a `#fragment` included.
    public var target: Range<Int>
    /// The path part of the target (never includes a `#fragment`):
    /// - origin-form `/p?q#f`: `/p`;
    /// - absolute-form `http://h/p?q`: `/p`; for `http://h` or `http://h?q`
    ///   the range is EMPTY (positioned right after the authority) and the
    ///   caller must treat it as `/`;
    /// - asterisk-form: `*`;
    /// - authority-form (CONNECT): empty range at the end of the target.
    public var path: Range<Int>
    /// The query after `?` up to a `#` or the end (possibly empty), nil if the
    /// target has no `?` before any `#`.
    public var query: Range<Int>?
    /// absolute-form only: the host and optional port of the target's
    /// authority (`h:8080` in `http://user@h:8080/p`, userinfo left out),
    /// which stands for the Host header (RFC 9112 section 3.2.2); nil for
    /// the other forms.
    public var authority: Range<Int>?
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    public var versionMinor: Int
    /// The header fields in order of appearance (duplicates kept).
    public var headers: [HTTPHeaderField]
    /// Bytes consumed through the blank line ending the head, including any
    /// skipped leading CRLFs. The body (if any) starts at this offset.
    public var headLength: Int
    public var framing: BodyFraming
    /// HTTP/1.1: true unless `Connection: close`. HTTP/1.0: true only with
    /// `Connection: keep-alive` (and no `close`).
    public var keepAlive: Bool
    /// `Expect: 100-continue` on an HTTP/1.1 request.
    public var expectContinue: Bool
    /// The method is exactly `HEAD`.
    public var isHEAD: Bool

    public init() {
        method = 0..<0
        target = 0..<0
        path = 0..<0
        query = nil
        authority = nil
        versionMinor = 1
        headers = []
        headLength = 0
        framing = .none
        keepAlive = false
        expectContinue = false
        isHEAD = false
    }

    /// Clears every field; keeps the capacity of `headers`.
    public mutating func reset() {
        method = 0..<0
        target = 0..<0
        path = 0..<0
        query = nil
        authority = nil
        versionMinor = 1
        headers.removeAll(keepingCapacity: true)
        headLength = 0
        framing = .none
        keepAlive = false
        expectContinue = false
        isHEAD = false
    }
}

/// A request the server must refuse, with the status to answer.
public enum HTTPRequestError: Error, Sendable, Equatable {
    /// 400, with a short reason for the log (never sent to the client as is).
    case badRequest(String)
    /// 414: request line longer than `maxRequestLine`.
    case uriTooLong
    /// 431: head larger than `maxHeaderBytes`, a header line larger than
    /// `maxFieldBytes`, more than `maxHeaderCount` fields, or a chunked trailer
    /// section that is too large.
    case headerFieldsTooLarge
    /// 413: body larger than `maxBodyBytes`.
    case payloadTooLarge
    /// 505: a well-formed `HTTP/x.y` version other than 1.0 and 1.1.
    case versionNotSupported
    /// 501: a well-formed Transfer-Encoding that names a coding other than
    /// `chunked` (gzip, deflate, compress, identity, unknown tokens).
    case notImplemented

    /// The HTTP status code to answer with.
    public var status: Int {
        switch self {
        case .badRequest: return 400
        case .uriTooLong: return 414
        case .headerFieldsTooLarge: return 431
        case .payloadTooLarge: return 413
        case .versionNotSupported: return 505
        case .notImplemented: return 501
        }
    }

    /// The standard reason phrase for `status`.
    public var reasonPhrase: String {
        switch self {
        case .badRequest: return "Bad Request"
        case .uriTooLong: return "URI Too Long"
        case .headerFieldsTooLarge: return "Request Header Fields Too Large"
        case .payloadTooLarge: return "Content Too Large"
        case .versionNotSupported: return "HTTP Version Not Supported"
        case .notImplemented: return "Not Implemented"
        }
    }
}

/// Outcome of `HTTPRequestParser.parseHead`.
public enum HeadParseResult: Sendable, Equatable {
    /// The head is not complete yet and no error was found so far: read more
    /// bytes and call again with the whole buffer.
    case incomplete
    /// The head was parsed into the `HTTPRequestHead`.
    case complete
    /// The request must be refused with `error.status`; close the connection after answering.
    case failure(HTTPRequestError)
}
