// What the subscription router needs to pass a request on: the uwsgi packet made from an
// HTTP request head (the vars nginx's uwsgi_params send), and the head of the HTTP response
// a node sends back, read strictly because a node's bytes go on to the client.

// MARK: - HTTP request → uwsgi packet

/// Where the request came from and arrived, as the router saw it.
public struct ProxiedConnection: Sendable {
    public var remoteAddress: [UInt8]
    public var remotePort: [UInt8]
    /// The router's port the request came in on (SERVER_PORT when the Host has none).
    public var serverPort: [UInt8]
    public init(remoteAddress: [UInt8], remotePort: [UInt8], serverPort: [UInt8]) {
        self.remoteAddress = remoteAddress
        self.remotePort = remotePort
        self.serverPort = serverPort
    }
}

/// The Host the request names: the absolute-form target's authority, else the Host field.
public func requestHost(_ buffer: UnsafeRawBufferPointer, _ head: HTTPRequestHead) -> Range<Int>? {
    if let authority = head.authority { return authority }
    for field in head.headers where equalsIgnoringCase(buffer, field.name, "host") { return field.value }
    return nil
}

/// The uwsgi packet head (header and vars, no body) for `head`, as nginx's uwsgi_params
/// would send it: REQUEST_METHOD, REQUEST_URI, PATH_INFO (percent-decoded), QUERY_STRING,
/// SERVER_PROTOCOL, CONTENT_TYPE, CONTENT_LENGTH, REMOTE_ADDR, REMOTE_PORT, SERVER_NAME,
/// SERVER_PORT, then one HTTP_* var per header name (repeated fields joined with `, `,
/// Cookie with `; `; names with `_` left out, as the workers do). `contentLength` is the
/// body's length (a de-chunked body's too); Transfer-Encoding is not passed on, nor Expect
/// (the router answers `100-continue` itself, and the whole body follows the packet).
/// nil when the vars do not fit in a packet (65535 bytes).
public func uwsgiPacket(_ buffer: UnsafeRawBufferPointer, _ head: HTTPRequestHead, contentLength: Int,
                        connection: ProxiedConnection, modifier1: UInt8 = 0, modifier2: UInt8 = 0) -> [UInt8]? {
    var vars: [([UInt8], [UInt8])] = []
    func bytes(_ r: Range<Int>) -> [UInt8] { Array(buffer[r]) }
    func add(_ key: StaticString, _ value: [UInt8]) {
        vars.append((Array(UnsafeRawBufferPointer(start: key.utf8Start, count: key.utf8CodeUnitCount)), value))
    }
    add("REQUEST_METHOD", bytes(head.method))
    add("REQUEST_URI", bytes(head.target))
    let path = head.path.isEmpty && head.authority != nil ? [UInt8(ascii: "/")] : bytes(head.path)
    add("PATH_INFO", path.withUnsafeBytes { needsPercentDecoding($0) ? percentDecode($0) : path })
    add("QUERY_STRING", head.query.map(bytes) ?? [])
    add("SERVER_PROTOCOL", Array((head.versionMinor == 0 ? "HTTP/1.0" : "HTTP/1.1").utf8))
    var contentType: [UInt8] = []
    for field in head.headers where equalsIgnoringCase(buffer, field.name, "content-type") { contentType = bytes(field.value) }
    add("CONTENT_TYPE", contentType)
    var length: [UInt8] = []
    if contentLength > 0 || head.framing != .none { appendDecimal(contentLength, to: &length) }
    add("CONTENT_LENGTH", length)
    add("REMOTE_ADDR", connection.remoteAddress)
    add("REMOTE_PORT", connection.remotePort)
    var serverName: [UInt8] = []
    var serverPort = connection.serverPort
    if let host = requestHost(buffer, head) {
        let h = bytes(host)
        // `[v6]:port`, `name:port` or a bare name
        let end = h.first == UInt8(ascii: "[") ? (h.firstIndex(of: UInt8(ascii: "]")).map { $0 + 1 } ?? h.count) : 0
        if let colon = h[end...].lastIndex(of: UInt8(ascii: ":")) {
            serverName = Array(h[..<colon])
            serverPort = Array(h[(colon + 1)...])
        } else {
            serverName = h
        }
    }
    add("SERVER_NAME", serverName)
    add("SERVER_PORT", serverPort)

    // HTTP_* vars: one per name, in order of first appearance.
    var done = Set<Int>()
    for (i, field) in head.headers.enumerated() where !done.contains(i) {
        let name = buffer[field.name]
        if name.contains(UInt8(ascii: "_")) { continue }
        if equalsIgnoringCase(buffer, field.name, "content-type") || equalsIgnoringCase(buffer, field.name, "content-length")
            || equalsIgnoringCase(buffer, field.name, "transfer-encoding")
            || equalsIgnoringCase(buffer, field.name, "expect") { continue }
        let isCookie = equalsIgnoringCase(buffer, field.name, "cookie")
        var value = bytes(field.value)
        for j in (i + 1)..<head.headers.count where !done.contains(j) {
            let other = head.headers[j]
            guard other.name.count == field.name.count,
                  zip(buffer[other.name], name).allSatisfy({ asciiLower($0) == asciiLower($1) }) else { continue }
            done.insert(j)
            value += isCookie ? [0x3B, 0x20] : [0x2C, 0x20]
            value += bytes(other.value)
        }
        var key = Array("HTTP_".utf8)
        for b in name { key.append(b == UInt8(ascii: "-") ? UInt8(ascii: "_") : (b >= 0x61 && b <= 0x7A ? b - 32 : b)) }
        vars.append((key, value))
    }
    var size = 0
    for (k, v) in vars {
        guard k.count <= 0xFFFF, v.count <= 0xFFFF else { return nil }
        size += 4 + k.count + v.count
    }
    guard size <= 0xFFFF else { return nil }
    var packet = encodeUWSGIPacket(rawVars: vars, modifier1: modifier1)
    packet[3] = modifier2
    return packet
}

// MARK: - A node's response head

/// A node's response head, as byte ranges into the buffer it was parsed from.
public struct NodeResponseHead: Sendable, Equatable {
    /// The status code.
    public var status: Int
    /// The code and reason phrase after the version: `200 OK`.
    public var statusText: Range<Int>
    /// Every field but the ones the router sets itself (Connection, Keep-Alive,
    /// Proxy-Connection, Transfer-Encoding, Content-Length).
    public var fields: [HTTPHeaderField]
    public var contentLength: Int?
    /// `Transfer-Encoding: chunked` (the last coding).
    public var chunked: Bool
    /// The body starts here.
    public var headLength: Int
}

public enum NodeResponseParse: Sendable, Equatable {
    case incomplete
    case complete(NodeResponseHead)
    /// Not a response the router passes on (a 502 for the client), with a reason for the log.
    case failure(String)
}

/// Parses the head of a node's response. Strict: `HTTP/1.x` and a three-digit status,
/// CRLF line ends only, token names, values without control bytes but HTAB, at most
/// `maxFields` fields and `maxBytes` bytes, one Content-Length, not both Content-Length
/// and Transfer-Encoding, no 1xx (the router asks for no interim answer). The result for
/// a prefix of a buffer is `.incomplete` or the result for the whole buffer.
public func parseNodeResponseHead(_ buffer: UnsafeRawBufferPointer, maxBytes: Int = 65536,
                                  maxFields: Int = 100) -> NodeResponseParse {
    let n = min(buffer.count, maxBytes)
    func tooLarge() -> NodeResponseParse { buffer.count >= maxBytes ? .failure("response head too large") : .incomplete }
    // Status line: HTTP/1.x SP DDD [SP reason] CRLF
    guard let lineEnd = findCRLF(buffer, from: 0, to: n) else {
        return hasBareLineEnd(buffer, from: 0, to: n) ? .failure("bare CR or LF in the status line") : tooLarge()
    }
    guard lineEnd >= 12, equalsExactly(buffer, 0..<7, "HTTP/1."), buffer[7] >= 0x30, buffer[7] <= 0x39,
          buffer[8] == sp, (9..<12).allSatisfy({ buffer[$0] >= 0x30 && buffer[$0] <= 0x39 }),
          lineEnd == 12 || buffer[12] == sp else { return .failure("malformed status line") }
    for i in 12..<lineEnd where (buffer[i] < sp && buffer[i] != ht) || buffer[i] == del {
        return .failure("control byte in the status line")
    }
    let status = (Int(buffer[9]) - 0x30) * 100 + (Int(buffer[10]) - 0x30) * 10 + (Int(buffer[11]) - 0x30)
    guard status >= 200 else { return .failure("status \(status) (an interim or invalid status)") }
    var head = NodeResponseHead(status: status, statusText: 9..<lineEnd, fields: [], contentLength: nil,
                                chunked: false, headLength: 0)
    var sawTransferEncoding = false
    var p = lineEnd + 2
    while true {
        guard let end = findCRLF(buffer, from: p, to: n) else {
            return hasBareLineEnd(buffer, from: p, to: n) ? .failure("bare CR or LF in a header") : tooLarge()
        }
        if end == p { p += 2; break }
        var c = p
        while c < end && isTchar(buffer[c]) { c += 1 }
        guard c > p, c < end, buffer[c] == colon else { return .failure("malformed header line") }
        let name = p..<c
        var vs = c + 1
        while vs < end && isOWS(buffer[vs]) { vs += 1 }
        var ve = end
        while ve > vs && isOWS(buffer[ve - 1]) { ve -= 1 }
        for i in vs..<ve where (buffer[i] < sp && buffer[i] != ht) || buffer[i] == del {
            return .failure("control byte in a header value")
        }
        let value = vs..<ve
        p = end + 2
        if equalsIgnoringCase(buffer, name, "content-length") {
            guard head.contentLength == nil, let v = parseDecimal(buffer, value), value.count <= 18 else {
                return .failure("invalid or repeated Content-Length")
            }
            head.contentLength = v
        } else if equalsIgnoringCase(buffer, name, "transfer-encoding") {
            sawTransferEncoding = true
            // chunked must be the last coding
            var last = ve
            while last > vs && buffer[last - 1] != comma { last -= 1 }
            var ls = last
            while ls < ve && isOWS(buffer[ls]) { ls += 1 }
            head.chunked = equalsIgnoringCase(buffer, ls..<ve, "chunked")
        } else if equalsIgnoringCase(buffer, name, "connection") || equalsIgnoringCase(buffer, name, "keep-alive")
                    || equalsIgnoringCase(buffer, name, "proxy-connection") {
            continue
        } else {
            guard head.fields.count < maxFields else { return .failure("too many header fields") }
            head.fields.append(HTTPHeaderField(name: name, value: value))
        }
    }
    if sawTransferEncoding && head.contentLength != nil { return .failure("both Content-Length and Transfer-Encoding") }
    if sawTransferEncoding && !head.chunked { return .failure("a transfer coding other than chunked") }
    head.headLength = p
    return .complete(head)
}

/// The index of the next CR that is followed by LF, before `to`; nil if none (or a bare CR
/// or LF comes first: the caller looks for those).
private func findCRLF(_ buffer: UnsafeRawBufferPointer, from: Int, to: Int) -> Int? {
    var i = from
    while i + 1 < to {
        let b = buffer[i]
        if b == cr { return buffer[i + 1] == lf ? i : nil }
        if b == lf { return nil }
        i += 1
    }
    return nil
}

/// When `findCRLF` found nothing: whether that is because the first CR or LF is bare (a CR
/// as the last byte may still get its LF).
private func hasBareLineEnd(_ buffer: UnsafeRawBufferPointer, from: Int, to: Int) -> Bool {
    var i = from
    while i < to {
        if buffer[i] == lf { return true }
        if buffer[i] == cr { return i + 1 < to }
        i += 1
    }
    return false
}

/// How the router frames the body it passes on.
public enum ProxiedBodyFraming: Sendable, Equatable {
    case none
    case contentLength(Int)
    /// The node's chunked body, passed on as it is; the client connection closes after it.
    case chunkedAsIs
    /// The node ends its body by closing; wrapped in chunks for an HTTP/1.1 client.
    case rechunk
    /// The node ends its body by closing; so does the router (HTTP/1.0 client).
    case untilClose
}

/// The head the router sends the client for `head`, and how the body follows. `keepAlive`:
/// the client's request allows keeping the connection; the result says whether it stays.
public func clientResponseHead(_ buffer: UnsafeRawBufferPointer, _ head: NodeResponseHead, requestIsHEAD: Bool,
                               requestVersionMinor: Int, keepAlive: Bool)
    -> (bytes: [UInt8], framing: ProxiedBodyFraming, keepAlive: Bool) {
    var out = Array("HTTP/1.1 ".utf8)
    out += buffer[head.statusText]
    out += [cr, lf]
    for field in head.fields {
        out += buffer[field.name]
        out += [colon, sp]
        out += buffer[field.value]
        out += [cr, lf]
    }
    var framing: ProxiedBodyFraming
    var keep = keepAlive
    if requestIsHEAD || head.status == 204 || head.status == 304 {
        framing = .none
        if let length = head.contentLength, head.status != 204 {
            out += Array("Content-Length: ".utf8)
            appendDecimal(length, to: &out)
            out += [cr, lf]
        }
    } else if let length = head.contentLength {
        framing = .contentLength(length)
        out += Array("Content-Length: ".utf8)
        appendDecimal(length, to: &out)
        out += [cr, lf]
    } else if head.chunked {
        framing = .chunkedAsIs
        keep = false
        out += Array("Transfer-Encoding: chunked\r\n".utf8)
    } else if requestVersionMinor >= 1 {
        framing = .rechunk
        out += Array("Transfer-Encoding: chunked\r\n".utf8)
    } else {
        framing = .untilClose
        keep = false
    }
    if !keep { out += Array("Connection: close\r\n".utf8) }
    else if requestVersionMinor == 0 { out += Array("Connection: keep-alive\r\n".utf8) }
    out += [cr, lf]
    return (out, framing, keep)
}
