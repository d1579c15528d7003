// TEMPORARY stand-in with the agreed API, replaced by the real parser on merge.
public struct HTTPParserLimits: Sendable { public var maxRequestLine = 8190; public var maxHeaderBytes = 65536; public var maxHeaderCount = 100; public var maxBodyBytes = 1 << 30; public init() {} }
public struct HTTPHeaderField: Sendable, Equatable { public var name: Range<Int>; public var value: Range<Int> }
public enum BodyFraming: Sendable, Equatable { case none, contentLength(Int), chunked }
public struct HTTPRequestHead: Sendable {
    public var method: Range<Int> = 0..<0; public var target: Range<Int> = 0..<0
    public var path: Range<Int> = 0..<0; public var query: Range<Int>? = nil
    public var versionMinor = 1; public var headers: [HTTPHeaderField] = []
    public var headLength = 0; public var framing: BodyFraming = .none
    public var keepAlive = true; public var expectContinue = false; public var isHEAD = false
    public init() {}
    public mutating func reset() { headers.removeAll(keepingCapacity: true); query = nil; framing = .none; keepAlive = true; expectContinue = false; isHEAD = false }
}
public enum HTTPRequestError: Error, Sendable, Equatable {
    case badRequest(String), uriTooLong, headerFieldsTooLarge, payloadTooLarge, versionNotSupported
    public var status: Int { switch self { case .badRequest: 400; case .uriTooLong: 414; case .headerFieldsTooLarge: 431; case .payloadTooLarge: 413; case .versionNotSupported: 505 } }
    public var reasonPhrase: String { switch self { case .badRequest: "Bad Request"; case .uriTooLong: "URI Too Long"; case .headerFieldsTooLarge: "Request Header Fields Too Large"; case .payloadTooLarge: "Content Too Large"; case .versionNotSupported: "HTTP Version Not Supported" } }
}
public enum HeadParseResult: Sendable, Equatable { case incomplete, complete, failure(HTTPRequestError) }
public struct HTTPRequestParser: Sendable {
    let limits: HTTPParserLimits
    public init(limits: HTTPParserLimits) { self.limits = limits }
    public func parseHead(_ b: UnsafeRawBufferPointer, into h: inout HTTPRequestHead) -> HeadParseResult {
        h.reset()
        var end = -1
        if b.count >= 4 { for i in 0...(b.count - 4) where b[i] == 13 && b[i+1] == 10 && b[i+2] == 13 && b[i+3] == 10 { end = i; break } }
        if end < 0 { return b.count > limits.maxHeaderBytes ? .failure(.headerFieldsTooLarge) : .incomplete }
        var i = 0
        while b[i] != 32 { i += 1 }
        h.method = 0..<i; i += 1; let ts = i
        while b[i] != 32 { i += 1 }
        h.target = ts..<i
        if let q = b[ts..<i].firstIndex(of: 63) { h.path = ts..<q; h.query = (q+1)..<i } else { h.path = ts..<i }
        h.versionMinor = Int(b[i + 8]) - 48
        h.isHEAD = i - ts >= 0 && h.method.count == 4 && b[0] == 72 && b[1] == 69
        while b[i] != 10 { i += 1 }
        i += 1
        while i < end + 2 {
            let ns = i
            while b[i] != 58 { i += 1 }
            let ne = i; i += 1
            while b[i] == 32 { i += 1 }
            let vs = i
            while b[i] != 13 { i += 1 }
            h.headers.append(HTTPHeaderField(name: ns..<ne, value: vs..<i))
            let lname = String(decoding: b[ns..<ne], as: UTF8.self).lowercased()
            let v = String(decoding: b[vs..<i], as: UTF8.self)
            if lname == "content-length" { h.framing = .contentLength(Int(v) ?? 0) }
            if lname == "transfer-encoding" { h.framing = .chunked }
            if lname == "connection" && v.lowercased() == "close" { h.keepAlive = false }
            if lname == "expect" { h.expectContinue = true }
            i += 2
        }
        if h.versionMinor == 0 { h.keepAlive = false }
        h.headLength = end + 4
        return .complete
    }
}
public struct ChunkedDecoder: Sendable {
    public init(maxBodyBytes: Int) {}
    public mutating func decode(_ input: UnsafeRawBufferPointer, sink: (UnsafeRawBufferPointer) -> Void) -> ChunkedResult { .failure(.badRequest("stub")) }
    public var decodedBytes: Int { 0 }
}
public enum ChunkedResult: Sendable, Equatable { case needMore(consumed: Int), done(consumed: Int), failure(HTTPRequestError) }
public enum ResponseFraming: Sendable, Equatable { case contentLength(Int), chunked, closeDelimited, noBody }
public func decideResponseFraming(requestVersionMinor: Int, requestKeepAlive: Bool, isHEAD: Bool, status: Int, appContentLength: Int?, appWantsClose: Bool) -> (framing: ResponseFraming, keepAlive: Bool) {
    let keep = requestKeepAlive && !appWantsClose
    if isHEAD || status < 200 || status == 204 || status == 304 { return (.noBody, keep) }
    if let n = appContentLength { return (.contentLength(n), keep) }
    if requestVersionMinor >= 1 { return (.chunked, keep) }
    return (.closeDelimited, false)
}
