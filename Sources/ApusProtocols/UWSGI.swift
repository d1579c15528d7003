// The uwsgi wire protocol as a front end (nginx `uwsgi_pass`, Apache
// mod_proxy_uwsgi, uWSGI's own routers) sends it to an application server:
//
//     modifier1 (u8)  datasize (u16 LE)  modifier2 (u8)
//     datasize bytes of vars: { key_size (u16 LE) key  val_size (u16 LE) value }*
//     CONTENT_LENGTH bytes of request body
//
// Only modifier1 = 0 (a WSGI request) is accepted. modifier2 is not looked at
// (it is 0 for WSGI requests; uWSGI ignores it too). The vars are CGI-style
// environ entries (REQUEST_METHOD, PATH_INFO, HTTP_HOST, ...): the parser
// records their byte ranges in order, duplicates included, and pulls out the
// few the server itself needs. Like `HTTPRequestParser` it keeps no state
// between calls and never copies bytes.

/// Limits enforced by `UWSGIRequestParser`.
public struct UWSGIParserLimits: Sendable, Equatable {
    /// Maximum size of the vars block (the header's `datasize`). The header
    /// can express at most 65535. Zero or less: no limit beyond that.
    public var maxVarsBytes = 65535
    /// Maximum number of vars. Zero or less: unlimited.
    public var maxVars = 200
    /// Maximum CONTENT_LENGTH; 0 = unlimited.
    public var maxBodyBytes = 1 << 30
    public init() {}
}

/// One var of the vars block: byte ranges of the key and of the value in the
/// buffer given to `parseHead` (the value may be empty, the key never is).
public struct UWSGIVar: Sendable, Equatable {
    public var key: Range<Int>
    public var value: Range<Int>
    public init(key: Range<Int>, value: Range<Int>) {
        self.key = key
        self.value = value
    }
}

/// A parsed uwsgi request head. Reuse one value per connection: `reset()`
/// keeps the capacity of `vars`.
public struct UWSGIRequestHead: Sendable {
    /// Every var in packet order, duplicates kept: the caller decides which
    /// wins when building the environ (a dict assignment keeps the last).
    public var vars: [UWSGIVar]
    /// `4 + datasize`: the body starts at this offset.
    public var headLength: Int
    /// Body size from CONTENT_LENGTH; 0 when the var is absent or empty.
    public var contentLength: Int
    /// Value of REQUEST_METHOD (the last one if repeated), nil if absent.
    public var method: Range<Int>?
    /// Value of PATH_INFO (the last one if repeated), nil if absent.
    public var pathInfo: Range<Int>?
    /// Value of REQUEST_URI (the last one if repeated), nil if absent.
    public var requestURI: Range<Int>?
    /// Value of QUERY_STRING (the last one if repeated), nil if absent.
    public var queryString: Range<Int>?
    /// The front end saw TLS: the (last) HTTPS var is `on` or `1`, or the
    /// (last) REQUEST_SCHEME or UWSGI_SCHEME is `https` (all case-insensitive).
    public var https: Bool

    public init() {
        vars = []
        headLength = 0
        contentLength = 0
        https = false
    }

    /// Clears every field; keeps the capacity of `vars`.
    public mutating func reset() {
        vars.removeAll(keepingCapacity: true)
        headLength = 0
        contentLength = 0
        method = nil
        pathInfo = nil
        requestURI = nil
        queryString = nil
        https = false
    }
}

/// Why a uwsgi packet was refused. There is no HTTP status to answer with in
/// most setups (the front end turns a closed connection into a 502), so the
/// server logs `logDescription` and closes.
public enum UWSGIParseError: Error, Sendable, Equatable {
    /// modifier1 is not 0 (not a WSGI request).
    case badModifier(UInt8)
    /// `datasize` (given) is above `maxVarsBytes`.
    case varsTooLarge(Int)
    /// A key or value length runs past the end of the vars block (or the
    /// block ends in the middle of a length).
    case truncatedVar
    /// More than `maxVars` vars.
    case tooManyVars
    /// CONTENT_LENGTH is not a plain decimal number (or overflows), or two
    /// CONTENT_LENGTH vars disagree.
    case badContentLength
    /// CONTENT_LENGTH is above `maxBodyBytes`.
    case bodyTooLarge
    /// A var with a zero-length key.
    case emptyKey

    /// One line for the log.
    public var logDescription: String {
        switch self {
        case .badModifier(let m): return "uwsgi: modifier1 \(m) is not a WSGI request (expected 0)"
        case .varsTooLarge(let n): return "uwsgi: vars block of \(n) bytes is over the limit"
        case .truncatedVar: return "uwsgi: a var runs past the end of the vars block"
        case .tooManyVars: return "uwsgi: too many vars"
        case .badContentLength: return "uwsgi: invalid CONTENT_LENGTH"
        case .bodyTooLarge: return "uwsgi: CONTENT_LENGTH is over the body size limit"
        case .emptyKey: return "uwsgi: var with an empty key"
        }
    }
}

/// Outcome of `UWSGIRequestParser.parseHead`.
public enum UWSGIParseResult: Sendable, Equatable {
    /// The header or the vars block is not complete yet and nothing wrong was
    /// seen so far: read more and call again with the whole buffer.
    case incomplete
    /// The head was parsed; the body (`contentLength` bytes) starts at `headLength`.
    case complete
    /// The packet is refused; log and close.
    case failure(UWSGIParseError)
}

public struct UWSGIRequestParser: Sendable {
    public var limits: UWSGIParserLimits

    public init(limits: UWSGIParserLimits = UWSGIParserLimits()) {
        self.limits = limits
    }

    /// Parses a uwsgi packet head at the start of `buffer` into `head` (reset
    /// first; unspecified on `.failure`).
    ///
    /// Decisions are taken as early as the bytes allow: a bad modifier1 at
    /// the first byte, an oversized `datasize` as soon as the header is in;
    /// the vars themselves are checked once the whole block is present. So
    /// the result for a prefix of a buffer is `.incomplete` or the result
    /// for the whole buffer.
    public func parseHead(_ buffer: UnsafeRawBufferPointer, into head: inout UWSGIRequestHead) -> UWSGIParseResult {
        head.reset()
        let n = buffer.count
        if n < 1 { return .incomplete }
        let modifier1 = buffer[0]
        if modifier1 != 0 { return .failure(.badModifier(modifier1)) }
        if n < 3 { return .incomplete }
        let datasize = Int(buffer[1]) | (Int(buffer[2]) << 8)
        if limits.maxVarsBytes > 0 && datasize > limits.maxVarsBytes {
            return .failure(.varsTooLarge(datasize))
        }
        let end = 4 &+ datasize
        if n < end { return .incomplete }

        let maxVars = limits.maxVars > 0 ? limits.maxVars : Int.max
        var contentLength = -1
        var httpsVar: Range<Int>? = nil
        var requestScheme: Range<Int>? = nil
        var uwsgiScheme: Range<Int>? = nil
        var p = 4
        while p < end {
            if end &- p < 2 { return .failure(.truncatedVar) }
            let keySize = Int(buffer[p]) | (Int(buffer[p &+ 1]) << 8)
            if keySize == 0 { return .failure(.emptyKey) }
            let keyStart = p &+ 2
            let keyEnd = keyStart &+ keySize
            // the value's own length field must fit too
            if keyEnd &+ 2 > end { return .failure(.truncatedVar) }
            let valueSize = Int(buffer[keyEnd]) | (Int(buffer[keyEnd &+ 1]) << 8)
            let valueStart = keyEnd &+ 2
            let valueEnd = valueStart &+ valueSize
            if valueEnd > end { return .failure(.truncatedVar) }
            if head.vars.count >= maxVars { return .failure(.tooManyVars) }
            let key = keyStart..<keyEnd
            let value = valueStart..<valueEnd
            head.vars.append(UWSGIVar(key: key, value: value))
            p = valueEnd

            switch keySize {
            case 5:
                if equalsExactly(buffer, key, "HTTPS") { httpsVar = value }
            case 9:
                if equalsExactly(buffer, key, "PATH_INFO") { head.pathInfo = value }
            case 11:
                if equalsExactly(buffer, key, "REQUEST_URI") { head.requestURI = value }
            case 12:
                if equalsExactly(buffer, key, "QUERY_STRING") { head.queryString = value }
                else if equalsExactly(buffer, key, "UWSGI_SCHEME") { uwsgiScheme = value }
            case 14:
                if equalsExactly(buffer, key, "REQUEST_METHOD") {
                    head.method = value
                } else if equalsExactly(buffer, key, "REQUEST_SCHEME") {
                    requestScheme = value
                } else if equalsExactly(buffer, key, "CONTENT_LENGTH") {
                    let length: Int
                    if value.isEmpty {
                        length = 0
                    } else {
                        guard let v = parseDecimal(buffer, value) else { return .failure(.badContentLength) }
                        length = v
                    }
                    if contentLength >= 0 && contentLength != length { return .failure(.badContentLength) }
                    contentLength = length
                }
            default:
                break
            }
        }

        if contentLength < 0 { contentLength = 0 }
        if limits.maxBodyBytes > 0 && contentLength > limits.maxBodyBytes {
            return .failure(.bodyTooLarge)
        }
        var https = false
        if let v = httpsVar, equalsIgnoringCase(buffer, v, "on") || equalsExactly(buffer, v, "1") { https = true }
        if let v = requestScheme, equalsIgnoringCase(buffer, v, "https") { https = true }
        if let v = uwsgiScheme, equalsIgnoringCase(buffer, v, "https") { https = true }
        head.https = https
        head.contentLength = contentLength
        head.headLength = end
        return .complete
    }
}

/// Builds a uwsgi packet head (header and vars block, no body) from string
/// vars, each key and value written as its UTF-8 bytes (plain ASCII for the
/// usual CGI vars; use `rawVars:` for exact bytes such as latin-1).
/// For tests and test clients: traps if a key, a value or the whole vars
/// block is longer than 65535 bytes.
public func encodeUWSGIPacket(vars: [(String, String)], modifier1: UInt8 = 0) -> [UInt8] {
    encodeUWSGIPacket(rawVars: vars.map { (Array($0.0.utf8), Array($0.1.utf8)) }, modifier1: modifier1)
}

/// Builds a uwsgi packet head (header and vars block, no body) from raw byte
/// keys and values, in the given order. Traps on lengths over 65535.
public func encodeUWSGIPacket(rawVars: [([UInt8], [UInt8])], modifier1: UInt8 = 0) -> [UInt8] {
    var size = 0
    for (k, v) in rawVars {
        precondition(k.count <= 0xFFFF && v.count <= 0xFFFF, "uwsgi var longer than 65535 bytes")
        size += 4 + k.count + v.count
    }
    precondition(size <= 0xFFFF, "uwsgi vars block longer than 65535 bytes")
    var out: [UInt8] = []
    out.reserveCapacity(4 + size)
    out.append(modifier1)
    out.append(UInt8(size & 0xFF))
    out.append(UInt8(size >> 8))
    out.append(0)
    for (k, v) in rawVars {
        out.append(UInt8(k.count & 0xFF))
        out.append(UInt8(k.count >> 8))
        out.append(contentsOf: k)
        out.append(UInt8(v.count & 0xFF))
        out.append(UInt8(v.count >> 8))
        out.append(contentsOf: v)
    }
    return out
}

extension HTTPRequestHead {
    /// Fills the fields the request path uses (framing, method, target, HEAD) from a uwsgi
    /// packet, so a uwsgi request flows through the same body reading, app call and
    /// response writing as an HTTP one. The environ comes from the packet's vars.
    public mutating func adoptUWSGI(_ u: UWSGIRequestHead, in buffer: UnsafeRawBufferPointer) {
        reset()
        method = u.method ?? 0..<0
        target = u.requestURI ?? u.pathInfo ?? 0..<0
        path = u.pathInfo ?? 0..<0
        query = u.queryString
        // One request per connection, answered as HTTP/1.0 would be: Content-Length when the
        // app gives one, else the body ends when the connection closes. nginx's uwsgi module
        // reads exactly that.
        versionMinor = 0
        headLength = u.headLength
        framing = u.contentLength > 0 ? .contentLength(u.contentLength) : .none
        keepAlive = false
        expectContinue = false
        isHEAD = method.count == 4 && buffer[method].elementsEqual("HEAD".utf8)
    }
}
