import ApusProtocols

/// The values of the response headers a `--log-format` names (`%(resp:Content-Type)`),
/// taken by the ResponseWriter from the app's header lines; nothing is taken when the
/// format names none. The first field of each name counts.
struct ResponseHeaderCapture {
    let names: [[UInt8]]
    private(set) var values: [[UInt8]]
    private(set) var present: [Bool]

    init(names: [[UInt8]]) {
        self.names = names
        values = names.map { _ in [] }
        present = names.map { _ in false }
    }

    var isEmpty: Bool { names.isEmpty }

    mutating func reset() {
        for i in present.indices where present[i] {
            present[i] = false
            values[i].removeAll(keepingCapacity: true)
        }
    }

    /// `lines`: "Name: value\r\n" fields, as WSGIResponseHead.headerLines holds them.
    mutating func take(_ lines: [UInt8]) {
        lines.withUnsafeBytes { all in
            var i = 0
            while i < all.count {
                var end = i
                while end < all.count && all[end] != 13 { end += 1 }
                var colon = i
                while colon < end && all[colon] != UInt8(ascii: ":") { colon += 1 }
                if colon < end {
                    for k in names.indices where !present[k] && names[k].count == colon - i {
                        var same = true
                        for j in 0..<(colon - i) where asciiLower(all[i + j]) != names[k][j] { same = false; break }
                        guard same else { continue }
                        var v = colon + 1
                        while v < end && (all[v] == 32 || all[v] == 9) { v += 1 }
                        values[k].append(contentsOf: UnsafeRawBufferPointer(rebasing: all[v..<end]))
                        present[k] = true
                    }
                }
                i = end + 2
            }
        }
    }
}

extension AccessLog {
    /// Appends one line (without its newline) for `conn`'s request; the lock is held.
    func appendLine(conn: Connection, raw: UnsafeRawBufferPointer, status: Int, bytes: Int, seconds: Double,
                    response: ResponseHeaderCapture?) {
        let head = conn.head
        let json = format.escaping == .json
        func value(_ v: UnsafeRawBufferPointer) {
            if v.isEmpty {
                if !json { pending.append(UInt8(ascii: "-")) }
            } else if json {
                appendJSONEscaped(v, to: &pending)
            } else {
                appendTextEscaped(v, to: &pending)
            }
        }
        func value(_ range: Range<Int>) { value(UnsafeRawBufferPointer(rebasing: raw[range])) }
        func value(_ bytes: [UInt8]) { bytes.withUnsafeBytes { value($0) } }
        for op in format.ops {
            switch op {
            case let .literal(bytes):
                pending.append(contentsOf: bytes)
            case let .requestHeader(name, key):
                value(requestHeader(conn, raw, name: name, uwsgiKey: key) ?? 0..<0)
            case let .responseHeader(k):
                if let response, response.present[k] { value(response.values[k]) } else { value(0..<0) }
            case let .variable(v):
                switch v {
                case .method: value(head.method)
                case .uri: value(head.target)
                case .path: value(head.path)
                case .query: value(head.query ?? 0..<0)
                case .proto: appendLiteral(head.versionMinor == 0 ? "HTTP/1.0" : "HTTP/1.1", &pending)
                case .status: appendDecimal(status, to: &pending)
                case .size: appendDecimal(bytes, to: &pending)
                case .sizeCLF: if bytes == 0 { pending.append(UInt8(ascii: "-")) } else { appendDecimal(bytes, to: &pending) }
                case .msecs: appendDecimal(Int(max(0, seconds) * 1000), to: &pending)
                case .usecs: appendDecimal(Int(max(0, seconds) * 1_000_000), to: &pending)
                case .addr:
                    if forwardedFor, let xff = forwardedClient(conn, raw) { value(xff) } else { value(conn.peerAddress) }
                case .requestID:
                    if let given = requestHeader(conn, raw, name: Self.requestIDName, uwsgiKey: Self.requestIDKey),
                       given.count <= 128, raw[given].allSatisfy(Self.isIDByte) {
                        value(given)
                    } else {
                        idCounter += 1
                        pending.append(contentsOf: idPrefix)
                        appendLowerHex(UInt64(idCounter), to: &pending)
                    }
                case .worker: pending.append(contentsOf: workerDigits)
                case .generation: pending.append(contentsOf: generationDigits)
                case .pid: pending.append(contentsOf: pidDigits)
                case .epoch: appendDecimal(epoch, to: &pending)
                case .ltime: pending.append(contentsOf: stamp)
                case .iso8601: pending.append(contentsOf: isoStamp)
                }
            }
        }
    }

    static let requestIDName = Array("x-request-id".utf8)
    static let requestIDKey = Array("HTTP_X_REQUEST_ID".utf8)
    static let forwardedName = Array("x-forwarded-for".utf8)
    static let forwardedKey = Array("HTTP_X_FORWARDED_FOR".utf8)

    /// What a request id may hold when a client or proxy gives one: letters, digits and
    /// `-_.:+/=@` (UUIDs, nginx's $request_id, base64 ids).
    static func isIDByte(_ b: UInt8) -> Bool {
        switch b {
        case 0x30...0x39, 0x41...0x5a, 0x61...0x7a: true
        case UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."), UInt8(ascii: ":"), UInt8(ascii: "+"),
             UInt8(ascii: "/"), UInt8(ascii: "="), UInt8(ascii: "@"): true
        default: false
        }
    }

    /// The first address of X-Forwarded-For (up to its first comma, spaces trimmed), or nil
    /// when the header is absent or that address is empty.
    func forwardedClient(_ conn: Connection, _ raw: UnsafeRawBufferPointer) -> Range<Int>? {
        guard let all = requestHeader(conn, raw, name: Self.forwardedName, uwsgiKey: Self.forwardedKey) else { return nil }
        var lo = all.lowerBound
        var hi = lo
        while hi < all.upperBound && raw[hi] != UInt8(ascii: ",") { hi += 1 }
        while lo < hi && (raw[lo] == 32 || raw[lo] == 9) { lo += 1 }
        while hi > lo && (raw[hi - 1] == 32 || raw[hi - 1] == 9) { hi -= 1 }
        return lo < hi ? lo..<hi : nil
    }

    /// The first request header called `name` (lower case): an HTTP field, or for a uwsgi
    /// packet the var `uwsgiKey`. Nil when there is none.
    func requestHeader(_ conn: Connection, _ raw: UnsafeRawBufferPointer, name: [UInt8], uwsgiKey: [UInt8]) -> Range<Int>? {
        if conn.machine.wire == .uwsgi {
            for v in conn.uwsgiHead.vars where v.key.count == uwsgiKey.count && raw[v.key].elementsEqual(uwsgiKey) {
                return v.value
            }
            return nil
        }
        guard !name.isEmpty else { return nil }
        for field in conn.head.headers where field.name.count == name.count {
            var same = true
            for j in 0..<name.count where asciiLower(raw[field.name.lowerBound + j]) != name[j] { same = false; break }
            if same { return field.value }
        }
        return nil
    }
}
