// Response side: framing decision, validation of what the application gave,
// head encoding and chunk framing. The application's status line and headers
// are raw bytes (PEP 3333 native strings encoded as latin-1 by the caller).

/// How the response body is delimited on the wire.
public enum ResponseFraming: Sendable, Equatable {
    /// The application gave a Content-Length; send exactly that many bytes.
    case contentLength(Int)
    /// `Transfer-Encoding: chunked` (HTTP/1.1 only).
    case chunked
    /// No length: the body ends when the connection closes (HTTP/1.0).
    case closeDelimited
    /// No body at all (HEAD, 1xx, 204, 304).
    case noBody
}

/// Decides framing and keep-alive for a response.
///
/// No body for HEAD, 1xx, 204 and 304 (a Content-Length given by the app is
/// still sent as a header for HEAD/304; `ResponseHeadWriter` drops it for 1xx/204).
/// With no app Content-Length: chunked on HTTP/1.1, close-delimited (and
/// keepAlive = false) on HTTP/1.0. keepAlive is false if the request did not
/// keep alive or the app sent `Connection: close`.
public func decideResponseFraming(requestVersionMinor: Int, requestKeepAlive: Bool, isHEAD: Bool,
                                  status: Int, appContentLength: Int?, appWantsClose: Bool)
    -> (framing: ResponseFraming, keepAlive: Bool) {
    let keepAlive = requestKeepAlive && !appWantsClose
    if isHEAD || (status >= 100 && status < 200) || status == 204 || status == 304 {
        return (.noBody, keepAlive)
    }
    if let length = appContentLength {
        return (.contentLength(length), keepAlive)
    }
    if requestVersionMinor >= 1 {
        return (.chunked, keepAlive)
    }
    return (.closeDelimited, false)
}

/// Classification of a response header name given by the application.
public enum ResponseHeaderKind: Sendable, Equatable {
    case contentLength
    /// Keep-Alive, Transfer-Encoding, TE, Trailer, Upgrade,
    /// Proxy-Authenticate, Proxy-Authorization: dropped.
    case hopByHop
    /// Connection: dropped (hop-by-hop), but `close` in it is honoured.
    case connection
    case server
    case date
    case other
}

/// Classifies a header name, case-insensitively.
public func classifyResponseHeader(_ name: UnsafeRawBufferPointer) -> ResponseHeaderKind {
    let r = 0..<name.count
    switch name.count {
    case 2: if equalsIgnoringCase(name, r, "te") { return .hopByHop }
    case 4: if equalsIgnoringCase(name, r, "date") { return .date }
    case 6: if equalsIgnoringCase(name, r, "server") { return .server }
    case 7:
        if equalsIgnoringCase(name, r, "trailer") || equalsIgnoringCase(name, r, "upgrade") { return .hopByHop }
    case 10:
        if equalsIgnoringCase(name, r, "connection") { return .connection }
        if equalsIgnoringCase(name, r, "keep-alive") { return .hopByHop }
    case 14: if equalsIgnoringCase(name, r, "content-length") { return .contentLength }
    case 17: if equalsIgnoringCase(name, r, "transfer-encoding") { return .hopByHop }
    case 18: if equalsIgnoringCase(name, r, "proxy-authenticate") { return .hopByHop }
    case 19: if equalsIgnoringCase(name, r, "proxy-authorization") { return .hopByHop }
    default: break
    }
    return .other
}

/// True if a Connection header value contains the token `close` (case-insensitive).
public func connectionValueHasClose(_ value: UnsafeRawBufferPointer) -> Bool {
    var close = false
    var keepAlive = false
    scanConnection(value, 0..<value.count, close: &close, keepAlive: &keepAlive)
    return close
}

/// RFC 9110 token: non-empty, tchar only.
public func isValidHeaderName(_ bytes: UnsafeRawBufferPointer) -> Bool {
    if bytes.isEmpty { return false }
    for b in bytes where !isTchar(b) { return false }
    return true
}

/// No CR, LF, NUL, nor any other control character except HTAB (DEL is
/// rejected too). Bytes 0x80-0xFF (latin-1) are allowed.
public func isValidHeaderValue(_ bytes: UnsafeRawBufferPointer) -> Bool {
    for b in bytes where (b < sp && b != ht) || b == del { return false }
    return true
}

/// `DDD reason`: three digits (first 1-9), a space, then a reason phrase
/// (possibly empty) that passes `isValidHeaderValue`.
public func isValidStatusLine(_ bytes: UnsafeRawBufferPointer) -> Bool {
    guard bytes.count >= 4 else { return false }
    let d0 = bytes[0], d1 = bytes[1], d2 = bytes[2]
    guard d0 >= 0x31 && d0 <= 0x39, d1 >= 0x30 && d1 <= 0x39, d2 >= 0x30 && d2 <= 0x39,
          bytes[3] == sp else { return false }
    return isValidHeaderValue(UnsafeRawBufferPointer(rebasing: bytes[4...]))
}

/// The status code of a valid status line (`isValidStatusLine`), else nil.
public func statusCode(ofStatusLine bytes: UnsafeRawBufferPointer) -> Int? {
    guard isValidStatusLine(bytes) else { return nil }
    return Int(bytes[0] &- 0x30) * 100 + Int(bytes[1] &- 0x30) * 10 + Int(bytes[2] &- 0x30)
}

/// Content-Length value from the application: digits only (surrounding
/// SP/HTAB tolerated), no sign, no overflow; nil if invalid.
public func parseContentLength(_ bytes: UnsafeRawBufferPointer) -> Int? {
    parseDecimal(bytes, trimOWS(bytes, 0..<bytes.count))
}

/// The bytes that end a chunked body: `0\r\n\r\n`.
public let lastChunk: [UInt8] = [0x30, 0x0D, 0x0A, 0x0D, 0x0A]

/// Appends a chunk-size line: the size in lower-case hex, then CRLF.
public func appendChunkHeader(size: Int, to out: inout [UInt8]) {
    precondition(size >= 0, "negative chunk size")
    let digits: StaticString = "0123456789abcdef"
    var shift = 0
    while shift < 60 && (size >> (shift + 4)) != 0 { shift += 4 }
    while shift >= 0 {
        out.append(digits.utf8Start[(size >> shift) & 0xF])
        shift -= 4
    }
    out.append(cr)
    out.append(lf)
}

/// Appends one chunk (hex size CRLF data CRLF); appends nothing for empty data
/// (an empty chunk would end the body).
public func appendChunk(_ data: UnsafeRawBufferPointer, to out: inout [UInt8]) {
    if data.isEmpty { return }
    appendChunkHeader(size: data.count, to: &out)
    out.append(contentsOf: data)
    out.append(cr)
    out.append(lf)
}

/// Appends one chunk; see `appendChunk(_:to:)` for raw buffers.
public func appendChunk(_ data: [UInt8], to out: inout [UInt8]) {
    data.withUnsafeBytes { appendChunk($0, to: &out) }
}

/// Encodes a response head into a byte array, in three steps:
///
///     var w = ResponseHeadWriter()
///     w.begin(statusLine: status, into: &out)            // "HTTP/1.1 200 OK\r\n"
///     for (name, value) in appHeaders { w.appendAppHeader(name: name, value: value, into: &out) }
///     let d = decideResponseFraming(..., status: w.status, appContentLength: w.appContentLength,
///                                   appWantsClose: w.appWantsClose)
///     w.finish(framing: d.framing, keepAlive: d.keepAlive, requestVersionMinor: v, date: cache.bytes, into: &out)
///
/// The writer does not validate: check names, values and the status line
/// with `isValidHeaderName`, `isValidHeaderValue`, `isValidStatusLine` first.
public struct ResponseHeadWriter: Sendable {
    /// Status code parsed from the status line given to `begin` (0 if invalid).
    public private(set) var status = 0
    /// The app's Content-Length (the first one if it sent several).
    public private(set) var appContentLength: Int? = nil
    /// The app sent a Content-Length that `parseContentLength` rejects, or
    /// several different ones.
    public private(set) var appContentLengthInvalid = false
    /// The app sent `Connection: close`.
    public private(set) var appWantsClose = false
    public private(set) var appSentServer = false
    public private(set) var appSentDate = false

    public init() {}

    /// Appends `HTTP/1.1 `, the status line (`200 OK`) and CRLF.
    public mutating func begin(statusLine: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        self = ResponseHeadWriter()
        status = statusCode(ofStatusLine: statusLine) ?? 0
        out.append(contentsOf: [0x48, 0x54, 0x54, 0x50, 0x2F, 0x31, 0x2E, 0x31, 0x20])  // "HTTP/1.1 "
        out.append(contentsOf: statusLine)
        out.append(cr)
        out.append(lf)
    }

    /// Appends `Name: value\r\n` unless the header is hop-by-hop (dropped;
    /// `Connection: close` is remembered in `appWantsClose`) or a
    /// Content-Length on a 1xx/204 response (dropped). Returns the kind.
    @discardableResult
    public mutating func appendAppHeader(name: UnsafeRawBufferPointer, value: UnsafeRawBufferPointer,
                                         into out: inout [UInt8]) -> ResponseHeaderKind {
        let kind = classifyResponseHeader(name)
        switch kind {
        case .hopByHop:
            return kind
        case .connection:
            if connectionValueHasClose(value) { appWantsClose = true }
            return kind
        case .contentLength:
            if let length = parseContentLength(value) {
                if let previous = appContentLength {
                    if previous != length { appContentLengthInvalid = true }
                    return kind  // never send it twice
                }
                appContentLength = length
            } else {
                appContentLengthInvalid = true
                return kind
            }
            if (status >= 100 && status < 200) || status == 204 { return kind }
        case .server:
            appSentServer = true
        case .date:
            appSentDate = true
        case .other:
            break
        }
        out.append(contentsOf: name)
        out.append(colon)
        out.append(sp)
        out.append(contentsOf: value)
        out.append(cr)
        out.append(lf)
        return kind
    }

    /// Appends `Date` (`date` must be an IMF-fixdate, e.g. `HTTPDateCache.bytes`)
    /// and `Server: apus` unless the app sent its own, then
    /// `Transfer-Encoding: chunked` for chunked framing, `Connection: close`
    /// when not keeping alive or `Connection: keep-alive` for a kept-alive
    /// HTTP/1.0 request, and the final CRLF.
    public func finish(framing: ResponseFraming, keepAlive: Bool, requestVersionMinor: Int,
                       date: UnsafeRawBufferPointer, into out: inout [UInt8]) {
        if !appSentDate {
            appendLiteral("Date: ", &out)
            out.append(contentsOf: date)
            out.append(cr)
            out.append(lf)
        }
        if !appSentServer { appendLiteral("Server: apus\r\n", &out) }
        if framing == .chunked { appendLiteral("Transfer-Encoding: chunked\r\n", &out) }
        if !keepAlive {
            appendLiteral("Connection: close\r\n", &out)
        } else if requestVersionMinor == 0 {
            appendLiteral("Connection: keep-alive\r\n", &out)
        }
        out.append(cr)
        out.append(lf)
    }
}

/// The server's own short answer (an error it gives instead of the app): status line,
/// `Server`, a text/plain body of `text` (left out for HEAD, its length kept), and
/// `Connection: close`.
public func plainResponse(status: Int, reason: String, text: String, includeBody: Bool = true) -> [UInt8] {
    var out = Array("HTTP/1.1 \(status) \(reason)\r\nServer: apus\r\nContent-Type: text/plain\r\nContent-Length: \(text.utf8.count)\r\nConnection: close\r\n\r\n".utf8)
    if includeBody { out.append(contentsOf: text.utf8) }
    return out
}
