// The pure rules of `--static-map`: which file a request path names (or none), which
// precompressed variant a client accepts, what a Range header asks for, whether a
// conditional request is answered 304, and the response head. No system call: the worker
// opens and sends the file (Sources/ApusWorker/StaticFileServer.swift).

/// How a request path maps to a file under a `--static-map` directory.
public enum StaticPath: Equatable, Sendable {
    /// The path is not under the mount: the next mapping, or the app.
    case notMounted
    /// Under the mount, but it names no servable file (`..`, an encoded `/` or NUL, the
    /// mount itself or a path ending in `/`): the app answers, as uWSGI does.
    case refused
    /// The file's path relative to the directory: segments joined by `/`, no leading `/`,
    /// no empty, `.` or `..` segment, no NUL.
    case file([UInt8])

    /// Maps `path` (the request path without its query) under `mount` (segments, e.g.
    /// ["static"] for `/static`; [] for `/`). `decoded`: the path is already percent-decoded
    /// (uwsgi's PATH_INFO from nginx); otherwise each segment is decoded here, and a segment
    /// that decodes to a `/` is refused, so `%2F` never splits a name into directories.
    public static func resolve(_ path: UnsafeRawBufferPointer, mount: [[UInt8]], decoded: Bool) -> StaticPath {
        guard path.first == UInt8(ascii: "/") else { return .notMounted }
        var segments: [[UInt8]] = []
        var i = 1
        var trailingSlash = false
        while i <= path.count {
            var j = i
            while j < path.count && path[j] != UInt8(ascii: "/") { j += 1 }
            let raw = UnsafeRawBufferPointer(rebasing: path[i..<j])
            trailingSlash = raw.isEmpty
            if !raw.isEmpty {
                let segment: [UInt8]
                if !decoded && needsPercentDecoding(raw) {
                    segment = percentDecode(raw)
                    if segment.contains(UInt8(ascii: "/")) { return mounted(segments, mount) ? .refused : .notMounted }
                } else {
                    segment = Array(raw)
                }
                segments.append(segment)
            }
            i = j + 1
        }
        // The mount is matched whole segments at a time against the path as it will be
        // opened ("/static/./a" is under /static; "/staticfoo" is not).
        let visible = segments.filter { $0 != [UInt8(ascii: ".")] }
        guard mounted(visible, mount) else { return .notMounted }
        let rest = visible[mount.count...]
        if rest.isEmpty || trailingSlash { return .refused }
        var out: [UInt8] = []
        for segment in rest {
            if segment == [UInt8(ascii: "."), UInt8(ascii: ".")] || segment.contains(0) { return .refused }
            if !out.isEmpty { out.append(UInt8(ascii: "/")) }
            out.append(contentsOf: segment)
        }
        return .file(out)
    }

    private static func mounted(_ segments: [[UInt8]], _ mount: [[UInt8]]) -> Bool {
        segments.count >= mount.count && zip(segments, mount).allSatisfy { $0 == $1 }
    }

    /// `/static` → ["static"]; `/` → []; `/a//b/` → ["a", "b"].
    public static func mountSegments(_ mount: String) -> [[UInt8]] {
        mount.utf8.split(separator: UInt8(ascii: "/")).map(Array.init)
    }
}

/// A precompressed variant of a static file (`FILE.br`, `FILE.gz`).
public enum StaticEncoding: Equatable, Sendable {
    case identity
    case br
    case gzip

    /// The suffix of the variant's file name.
    public var suffix: StaticString {
        switch self {
        case .identity: ""
        case .br: ".br"
        case .gzip: ".gz"
        }
    }
}

/// The encodings an Accept-Encoding value allows, best first among br and gzip: each with
/// a q-value above 0, explicitly or through `*` (RFC 9110 section 12.5.3). An explicit
/// `q=0` refuses a coding even when `*` allows others; on equal q, br first (smaller).
public func acceptedEncodings(_ value: UnsafeRawBufferPointer) -> [StaticEncoding] {
    var br: Int? = nil
    var gzip: Int? = nil
    var star: Int? = nil
    var i = 0
    let n = value.count
    while i < n {
        var end = i
        while end < n && value[end] != UInt8(ascii: ",") { end += 1 }
        let element = trimOWS(value, i..<end)
        i = end + 1
        if element.isEmpty { continue }
        var nameEnd = element.lowerBound
        while nameEnd < element.upperBound && value[nameEnd] != UInt8(ascii: ";") { nameEnd += 1 }
        let name = trimOWS(value, element.lowerBound..<nameEnd)
        guard let q = qValue(value, nameEnd..<element.upperBound) else { continue }
        if equalsIgnoringCase(value, name, "br") { br = q }
        else if equalsIgnoringCase(value, name, "gzip") || equalsIgnoringCase(value, name, "x-gzip") { gzip = q }
        else if equalsExactly(value, name, "*") { star = q }
    }
    let qb = br ?? star ?? 0
    let qg = gzip ?? star ?? 0
    var out: [StaticEncoding] = []
    if qb > 0 && qb >= qg { out.append(.br) }
    if qg > 0 { out.append(.gzip) }
    if qb > 0 && qb < qg { out.append(.br) }
    return out
}

/// The q-value (in thousandths) of an Accept-Encoding element's parameters (`;q=0.5`),
/// 1000 when absent; nil when malformed (the element is then ignored).
private func qValue(_ b: UnsafeRawBufferPointer, _ params: Range<Int>) -> Int? {
    var p = params.lowerBound
    var q = 1000
    while p < params.upperBound {
        // p is at a ';'
        p += 1
        var end = p
        while end < params.upperBound && b[end] != UInt8(ascii: ";") { end += 1 }
        let param = trimOWS(b, p..<end)
        p = end
        if param.isEmpty { continue }
        guard param.count >= 2, asciiLower(b[param.lowerBound]) == UInt8(ascii: "q") else { continue }
        var k = param.lowerBound + 1
        while k < param.upperBound && isOWS(b[k]) { k += 1 }
        guard k < param.upperBound, b[k] == UInt8(ascii: "=") else { continue }
        k += 1
        while k < param.upperBound && isOWS(b[k]) { k += 1 }
        guard k < param.upperBound else { return nil }
        // qvalue = ( "0" [ "." 0*3DIGIT ] ) / ( "1" [ "." 0*3("0") ] )
        let first = b[k]
        guard first == UInt8(ascii: "0") || first == UInt8(ascii: "1") else { return nil }
        var value = Int(first - UInt8(ascii: "0")) * 1000
        k += 1
        if k < param.upperBound {
            guard b[k] == UInt8(ascii: ".") else { return nil }
            k += 1
            var scale = 100
            var digits = 0
            while k < param.upperBound {
                let d = b[k]
                guard d >= UInt8(ascii: "0") && d <= UInt8(ascii: "9"), digits < 3 else { return nil }
                value += Int(d - UInt8(ascii: "0")) * scale
                scale /= 10
                digits += 1
                k += 1
            }
        }
        guard value <= 1000 else { return nil }
        q = value
    }
    return q
}

/// What a Range header asks of a representation of `size` bytes (RFC 9110 section 14).
public enum StaticRange: Equatable, Sendable {
    /// No usable Range: the whole representation, 200. A header that does not parse, names
    /// another unit, or asks for several ranges is answered this way (several ranges would
    /// need multipart/byteranges; a client must accept the whole instead).
    case whole
    /// 206 with `bytes first-last/size`.
    case part(first: Int, last: Int)
    /// 416 with `bytes */size`.
    case unsatisfiable

    public static func parse(_ value: UnsafeRawBufferPointer, size: Int) -> StaticRange {
        let r = trimOWS(value, 0..<value.count)
        guard r.count > 6, equalsIgnoringCase(value, r.lowerBound..<(r.lowerBound + 6), "bytes=") else { return .whole }
        let spec = trimOWS(value, (r.lowerBound + 6)..<r.upperBound)
        guard !spec.isEmpty, !value[spec].contains(UInt8(ascii: ",")) else { return .whole }
        guard let dash = value[spec].firstIndex(of: UInt8(ascii: "-")) else { return .whole }
        let firstText = trimOWS(value, spec.lowerBound..<dash)
        let lastText = trimOWS(value, (dash + 1)..<spec.upperBound)
        if firstText.isEmpty {
            // bytes=-N: the last N bytes.
            guard !lastText.isEmpty, let n = digits(value, lastText) else { return .whole }
            if n == 0 || size == 0 { return .unsatisfiable }
            return .part(first: size - min(n, size), last: size - 1)
        }
        guard let first = digits(value, firstText) else { return .whole }
        var last = Int.max
        if !lastText.isEmpty {
            guard let l = digits(value, lastText) else { return .whole }
            last = l
        }
        if last < first { return .whole }  // invalid: ignored
        if first >= size { return .unsatisfiable }
        return .part(first: first, last: min(last, size - 1))
    }

    /// Decimal digits only; an absurdly long number saturates (it is past any file's end).
    private static func digits(_ b: UnsafeRawBufferPointer, _ r: Range<Int>) -> Int? {
        var n = 0
        for k in r {
            let d = b[k]
            guard d >= UInt8(ascii: "0") && d <= UInt8(ascii: "9") else { return nil }
            n = n > (Int.max - 9) / 10 ? Int.max / 2 : n * 10 + Int(d - UInt8(ascii: "0"))
        }
        return n
    }
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`) as a Unix time; nil for anything else
/// (the obsolete RFC 850 and asctime forms included: the condition is then ignored).
public func parseIMFFixdate(_ b: UnsafeRawBufferPointer) -> Int64? {
    let r = trimOWS(b, 0..<b.count)
    guard r.count == HTTPDate.length else { return nil }
    let s = UnsafeRawBufferPointer(rebasing: b[r])
    func num(_ at: Int, _ count: Int) -> Int? {
        var n = 0
        for k in at..<(at + count) {
            guard s[k] >= UInt8(ascii: "0") && s[k] <= UInt8(ascii: "9") else { return nil }
            n = n * 10 + Int(s[k] - UInt8(ascii: "0"))
        }
        return n
    }
    guard s[3] == UInt8(ascii: ","), s[4] == 0x20, s[7] == 0x20, s[11] == 0x20, s[16] == 0x20,
          s[19] == UInt8(ascii: ":"), s[22] == UInt8(ascii: ":"), s[25] == 0x20,
          s[26] == UInt8(ascii: "G"), s[27] == UInt8(ascii: "M"), s[28] == UInt8(ascii: "T"),
          let day = num(5, 2), let year = num(12, 4), let hour = num(17, 2), let minute = num(20, 2),
          let second = num(23, 2) else { return nil }
    let months: [StaticString] = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"]
    guard let m = months.firstIndex(where: { equalsIgnoringCase(s, 8..<11, $0) }) else { return nil }
    guard (1...31).contains(day), hour < 24, minute < 60, second < 61 else { return nil }
    // Days from the civil date (the inverse of HTTPDate's algorithm).
    let month = m + 1
    let y = year - (month <= 2 ? 1 : 0)
    let era = (y >= 0 ? y : y - 399) / 400
    let yoe = y - era * 400
    let mp = (month + 9) % 12
    let doy = (153 * mp + 2) / 5 + day - 1
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
    let days = era * 146_097 + doe - 719_468
    return Int64(days) * 86_400 + Int64(hour * 3600 + minute * 60 + second)
}

/// What the worker knows of the file it is about to serve.
public struct StaticFileFacts: Equatable, Sendable {
    public var size: Int
    public var mtimeSeconds: Int64
    public var mtimeNanoseconds: Int64
    public var encoding: StaticEncoding
    public init(size: Int, mtimeSeconds: Int64, mtimeNanoseconds: Int64, encoding: StaticEncoding) {
        self.size = size
        self.mtimeSeconds = mtimeSeconds
        self.mtimeNanoseconds = mtimeNanoseconds
        self.encoding = encoding
    }

    /// A strong validator from size and modification time to the nanosecond (no inode: the
    /// same deployed file has the same tag on every host behind a load balancer), with the
    /// variant's encoding: `"1a2b-5f3c9e1d2a4b8-br"`. Strong, so If-Range can use it; a file
    /// rewritten with the same size within one clock tick would keep its tag (as nginx's,
    /// which counts whole seconds).
    public var etag: [UInt8] {
        var out: [UInt8] = [UInt8(ascii: "\"")]
        appendHex(UInt64(size), &out)
        out.append(UInt8(ascii: "-"))
        appendHex(UInt64(bitPattern: mtimeSeconds &* 1_000_000_000 &+ mtimeNanoseconds), &out)
        switch encoding {
        case .identity: break
        case .br: appendLiteral("-br", &out)
        case .gzip: appendLiteral("-gz", &out)
        }
        out.append(UInt8(ascii: "\""))
        return out
    }
}

private func appendHex(_ v: UInt64, _ out: inout [UInt8]) {
    let hex: StaticString = "0123456789abcdef"
    var digits: [UInt8] = []
    var n = v
    repeat {
        digits.append(hex.utf8Start[Int(n & 15)])
        n >>= 4
    } while n > 0
    out.append(contentsOf: digits.reversed())
}

/// The request headers that decide a static answer (raw values; nil when absent; a header
/// given several times is joined with ", ").
public struct StaticConditions: Sendable {
    public var isHEAD = false
    public var ifNoneMatch: [UInt8]? = nil
    public var ifModifiedSince: [UInt8]? = nil
    public var range: [UInt8]? = nil
    public var ifRange: [UInt8]? = nil
    public init() {}
}

/// The answer to a static request: its status, which bytes of the file follow the head.
public struct StaticAnswer: Equatable, Sendable {
    public var status: Int
    /// The body: `count` bytes of the file from `offset` (0 for 304, 416 and HEAD).
    public var offset: Int
    public var count: Int
    /// For Content-Length: the bytes a GET would get (HEAD included).
    public var contentLength: Int
    /// 206: `bytes first-last/size`; 416: `bytes */size`.
    public var contentRange: StaticRange?

    /// Decides 304, 206, 416 or 200 (RFC 9110 section 13.2.2's order: If-None-Match, then
    /// If-Modified-Since only without it; Range only for a 200 and only while If-Range, if
    /// any, still matches).
    public static func decide(_ c: StaticConditions, _ file: StaticFileFacts, etag: [UInt8]) -> StaticAnswer {
        var notModified = false
        if let inm = c.ifNoneMatch {
            notModified = inm.withUnsafeBytes { etagListMatches($0, etag) }
        } else if let ims = c.ifModifiedSince, let date = ims.withUnsafeBytes({ parseIMFFixdate($0) }) {
            notModified = file.mtimeSeconds <= date
        }
        if notModified { return StaticAnswer(status: 304, offset: 0, count: 0, contentLength: 0, contentRange: nil) }
        var range = StaticRange.whole
        if let value = c.range {
            var honour = true
            if let ifRange = c.ifRange {
                honour = ifRange.withUnsafeBytes { ifRangeMatches($0, etag: etag, mtime: file.mtimeSeconds) }
            }
            if honour { range = value.withUnsafeBytes { StaticRange.parse($0, size: file.size) } }
        }
        switch range {
        case .whole:
            return StaticAnswer(status: 200, offset: 0, count: c.isHEAD ? 0 : file.size, contentLength: file.size, contentRange: nil)
        case let .part(first, last):
            let n = last - first + 1
            return StaticAnswer(status: 206, offset: first, count: c.isHEAD ? 0 : n, contentLength: n, contentRange: range)
        case .unsatisfiable:
            return StaticAnswer(status: 416, offset: 0, count: 0, contentLength: 0, contentRange: range)
        }
    }
}

/// If-None-Match: `*`, or a list of entity tags compared weakly (a `W/` prefix ignored).
func etagListMatches(_ b: UnsafeRawBufferPointer, _ etag: [UInt8]) -> Bool {
    let all = trimOWS(b, 0..<b.count)
    if all.count == 1 && b[all.lowerBound] == UInt8(ascii: "*") { return true }
    var i = 0
    while i < b.count {
        var end = i
        // Commas may not appear inside an entity tag (etagc excludes nothing but DQUOTE, so
        // scan to the closing quote first).
        var k = i
        while k < b.count && isOWS(b[k]) { k += 1 }
        if k + 1 < b.count && b[k] == UInt8(ascii: "W") && b[k + 1] == UInt8(ascii: "/") { k += 2 }
        if k < b.count && b[k] == UInt8(ascii: "\"") {
            var q = k + 1
            while q < b.count && b[q] != UInt8(ascii: "\"") { q += 1 }
            if q < b.count && b[k...q].elementsEqual(etag) { return true }
            end = q
        }
        while end < b.count && b[end] != UInt8(ascii: ",") { end += 1 }
        i = end + 1
    }
    return false
}

/// If-Range: a strong entity tag that equals ours, or a date that equals Last-Modified.
func ifRangeMatches(_ b: UnsafeRawBufferPointer, etag: [UInt8], mtime: Int64) -> Bool {
    let r = trimOWS(b, 0..<b.count)
    if r.isEmpty { return false }
    if b[r.lowerBound] == UInt8(ascii: "\"") { return b[r].elementsEqual(etag) }
    if b[r.lowerBound] == UInt8(ascii: "W") { return false }  // weak tags never match here
    guard let date = parseIMFFixdate(UnsafeRawBufferPointer(rebasing: b[r])) else { return false }
    return date == mtime
}

/// The Content-Type for a file name, from its extension (case-insensitive); text types
/// say `charset=utf-8`. Unknown: application/octet-stream.
public func staticContentType(_ name: [UInt8]) -> StaticString {
    guard let dot = name.lastIndex(of: UInt8(ascii: ".")), dot + 1 < name.count,
          !name[(dot + 1)...].contains(UInt8(ascii: "/")) else { return "application/octet-stream" }
    let ext = String(decoding: name[(dot + 1)...].map(asciiLower), as: UTF8.self)
    switch ext {
    case "html", "htm": return "text/html; charset=utf-8"
    case "css": return "text/css; charset=utf-8"
    case "js", "mjs": return "text/javascript; charset=utf-8"
    case "json", "map": return "application/json"
    case "txt": return "text/plain; charset=utf-8"
    case "csv": return "text/csv; charset=utf-8"
    case "md": return "text/markdown; charset=utf-8"
    case "xml": return "application/xml"
    case "svg": return "image/svg+xml"
    case "png": return "image/png"
    case "jpg", "jpeg": return "image/jpeg"
    case "gif": return "image/gif"
    case "webp": return "image/webp"
    case "avif": return "image/avif"
    case "ico": return "image/vnd.microsoft.icon"
    case "bmp": return "image/bmp"
    case "woff": return "font/woff"
    case "woff2": return "font/woff2"
    case "ttf": return "font/ttf"
    case "otf": return "font/otf"
    case "eot": return "application/vnd.ms-fontobject"
    case "pdf": return "application/pdf"
    case "zip": return "application/zip"
    case "gz": return "application/gzip"
    case "tar": return "application/x-tar"
    case "wasm": return "application/wasm"
    case "webmanifest": return "application/manifest+json"
    case "mp4": return "video/mp4"
    case "webm": return "video/webm"
    case "ogg": return "audio/ogg"
    case "mp3": return "audio/mpeg"
    case "wav": return "audio/wav"
    default: return "application/octet-stream"
    }
}

/// The response head of a static answer, ready for the wire. `date`: the IMF-fixdate of
/// now; `keepAlive` and `versionMinor`: the connection's, as for an app response.
public func staticResponseHead(_ answer: StaticAnswer, file: StaticFileFacts, etag: [UInt8], contentType: StaticString,
                               date: [UInt8], keepAlive: Bool, versionMinor: Int, into out: inout [UInt8]) {
    switch answer.status {
    case 200: appendLiteral("HTTP/1.1 200 OK\r\n", &out)
    case 206: appendLiteral("HTTP/1.1 206 Partial Content\r\n", &out)
    case 304: appendLiteral("HTTP/1.1 304 Not Modified\r\n", &out)
    default: appendLiteral("HTTP/1.1 416 Range Not Satisfiable\r\n", &out)
    }
    appendLiteral("Server: apus\r\nDate: ", &out)
    out.append(contentsOf: date)
    appendLiteral("\r\n", &out)
    if answer.status != 416 {
        appendLiteral("Last-Modified: ", &out)
        HTTPDate.append(unixTime: file.mtimeSeconds, to: &out)
        appendLiteral("\r\nETag: ", &out)
        out.append(contentsOf: etag)
        appendLiteral("\r\n", &out)
    }
    appendLiteral("Vary: Accept-Encoding\r\n", &out)
    if answer.status != 304 {
        appendLiteral("Accept-Ranges: bytes\r\n", &out)
        if answer.status != 416 {
            appendLiteral("Content-Type: ", &out)
            out.append(contentsOf: UnsafeRawBufferPointer(start: contentType.utf8Start, count: contentType.utf8CodeUnitCount))
            appendLiteral("\r\n", &out)
            switch file.encoding {
            case .identity: break
            case .br: appendLiteral("Content-Encoding: br\r\n", &out)
            case .gzip: appendLiteral("Content-Encoding: gzip\r\n", &out)
            }
        }
        appendLiteral("Content-Length: ", &out)
        appendDecimal(answer.contentLength, to: &out)
        appendLiteral("\r\n", &out)
        switch answer.contentRange {
        case let .part(first, last)?:
            appendLiteral("Content-Range: bytes ", &out)
            appendDecimal(first, to: &out)
            out.append(UInt8(ascii: "-"))
            appendDecimal(last, to: &out)
            out.append(UInt8(ascii: "/"))
            appendDecimal(file.size, to: &out)
            appendLiteral("\r\n", &out)
        case .unsatisfiable?:
            appendLiteral("Content-Range: bytes */", &out)
            appendDecimal(file.size, to: &out)
            appendLiteral("\r\n", &out)
        default:
            break
        }
    }
    if !keepAlive { appendLiteral("Connection: close\r\n", &out) }
    else if versionMinor == 0 { appendLiteral("Connection: keep-alive\r\n", &out) }
    appendLiteral("\r\n", &out)
}
