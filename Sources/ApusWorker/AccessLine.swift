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
                        appendBytes(UnsafeRawBufferPointer(rebasing: all[v..<end]), to: &values[k])
                        present[k] = true
                    }
                }
                i = end + 2
            }
        }
    }
}

/// A format's ops as the per-request loop reads them: no reference-counted payload (a
/// literal or a header name is a range of one pool), in memory that lives as long as the
/// worker, so running the ops retains nothing.
struct AccessPlan {
    enum Op {
        case literal(Int, Int)
        case variable(LogVariable)
        /// Index into `headers`.
        case requestHeader(Int)
        case responseHeader(Int)
    }

    let ops: UnsafeMutableBufferPointer<Op>
    /// Literal bytes, header names (lower case) and uwsgi keys.
    let pool: UnsafeMutableBufferPointer<UInt8>
    /// Ranges of `pool`: each request header's name and uwsgi key. The first two are
    /// X-Request-ID and X-Forwarded-For.
    let headers: UnsafeMutableBufferPointer<(name: Range<Int>, key: Range<Int>)>
    static let requestID = 0
    static let forwardedFor = 1

    /// The index in `headers` of the request header `name` (lower case), if the format logs it.
    func headerIndex(named name: String) -> Int? {
        let wanted = Array(name.utf8)
        return headers.indices.dropFirst(2).first { pool[headers[$0].name].elementsEqual(wanted) }
    }

    init(_ format: LogFormat) {
        var bytes: [UInt8] = []
        var ops: [Op] = []
        var headers: [(name: Range<Int>, key: Range<Int>)] = []
        func add(_ b: [UInt8]) -> Range<Int> {
            bytes.append(contentsOf: b)
            return (bytes.count - b.count)..<bytes.count
        }
        headers.append((add(Array("x-request-id".utf8)), add(Array("HTTP_X_REQUEST_ID".utf8))))
        headers.append((add(Array("x-forwarded-for".utf8)), add(Array("HTTP_X_FORWARDED_FOR".utf8))))
        for op in format.ops {
            switch op {
            case let .literal(b):
                let r = add(b)
                ops.append(.literal(r.lowerBound, r.count))
            case let .variable(v): ops.append(.variable(v))
            case let .requestHeader(name, key):
                headers.append((add(name), add(key)))
                ops.append(.requestHeader(headers.count - 1))
            case let .responseHeader(k): ops.append(.responseHeader(k))
            }
        }
        func keep<T>(_ a: [T]) -> UnsafeMutableBufferPointer<T> {
            let p = UnsafeMutableBufferPointer<T>.allocate(capacity: max(1, a.count))
            _ = p.initialize(from: a)
            return UnsafeMutableBufferPointer(rebasing: p[0..<a.count])
        }
        self.ops = keep(ops)
        pool = keep(bytes)
        self.headers = keep(headers)
    }
}

extension AccessLog {
    /// The default format's line, the same bytes as `appendLine` writes for
    /// `LogFormat.commonFormat` (test_access_log_format.py compares the two), without the
    /// general loop over ops: most servers log in it, and the loop costs about as many
    /// instructions as the line itself.
    func appendCommonLine(to out: inout LineBuffer, conn: Connection, raw: UnsafeRawBufferPointer, status: Int, bytes: Int) {
        let method = conn.head.method
        let target = conn.head.target
        let minor = conn.head.versionMinor
        conn.peerAddress.withUnsafeBytes { peer in
            if peer.isEmpty { out.append(UInt8(ascii: "-")) } else { out.textEscaped(peer) }
        }
        out.append(" - - [")
        out.append(stamp)
        out.append("] \"")
        if method.isEmpty { out.append(UInt8(ascii: "-")) } else { out.textEscaped(UnsafeRawBufferPointer(rebasing: raw[method])) }
        out.append(UInt8(ascii: " "))
        if target.isEmpty { out.append(UInt8(ascii: "-")) } else { out.textEscaped(UnsafeRawBufferPointer(rebasing: raw[target])) }
        out.append(minor == 0 ? " HTTP/1.0\" " : " HTTP/1.1\" ")
        out.decimal(status)
        out.append(UInt8(ascii: " "))
        if bytes == 0 { out.append(UInt8(ascii: "-")) } else { out.decimal(bytes) }
    }

    /// The json preset's line, the same bytes as `appendLine` writes for
    /// `LogFormat.jsonFormat` (test_access_log_format.py compares the two), without the loop
    /// over its 31 ops. `headers`: the plan's indices of referer and user-agent.
    func appendJSONLine(to out: inout LineBuffer, conn: Connection, raw: UnsafeRawBufferPointer, status: Int, bytes: Int,
                        seconds: Double, headers: (referer: Int, agent: Int)) {
        let head = conn.head
        let uwsgi = conn.machine.wire == .uwsgi ? conn : nil
        let pool = UnsafeRawBufferPointer(plan.pool)
        @inline(__always) func header(_ k: Int) -> Range<Int>? {
            let h = plan.headers[k]
            return requestHeader(head, uwsgi, raw, name: UnsafeRawBufferPointer(rebasing: pool[h.name]),
                                 uwsgiKey: UnsafeRawBufferPointer(rebasing: pool[h.key]))
        }
        @inline(__always) func value(_ r: Range<Int>?) {
            if let r, !r.isEmpty { out.jsonEscaped(UnsafeRawBufferPointer(rebasing: raw[r])) }
        }
        out.append("{\"time\":\"")
        out.append(isoStamp)
        out.append("\",\"addr\":\"")
        conn.peerAddress.withUnsafeBytes { if !$0.isEmpty { out.jsonEscaped($0) } }
        out.append("\",\"method\":\"")
        value(head.method)
        out.append("\",\"uri\":\"")
        value(head.target)
        out.append(head.versionMinor == 0 ? "\",\"proto\":\"HTTP/1.0\",\"status\":" : "\",\"proto\":\"HTTP/1.1\",\"status\":")
        out.decimal(status)
        out.append(",\"size\":")
        out.decimal(bytes)
        out.append(",\"usecs\":")
        out.decimal(Int(max(0, seconds) * 1_000_000))
        out.append(",\"referer\":\"")
        value(header(headers.referer))
        out.append("\",\"uagent\":\"")
        value(header(headers.agent))
        out.append("\",\"request_id\":\"")
        if let given = saneRequestID(header(AccessPlan.requestID), raw) { value(given) } else { appendGeneratedID(to: &out) }
        out.append("\",\"worker\":")
        out.append(workerDigits)
        out.append(",\"generation\":")
        out.append(generationDigits)
        out.append(",\"pid\":")
        out.append(pidDigits)
        out.append(UInt8(ascii: "}"))
    }

    /// Writes one line (without its newline) for `conn`'s request to `out`; the lock is held.
    func appendLine(to out: inout LineBuffer, conn: Connection, raw: UnsafeRawBufferPointer, status: Int, bytes: Int,
                    seconds: Double, response: ResponseHeaderCapture?) {
        let head = conn.head
        let uwsgi = conn.machine.wire == .uwsgi
        let json = format.escaping == .json
        let pool = UnsafeRawBufferPointer(plan.pool)
        @inline(__always) func value(_ v: UnsafeRawBufferPointer) {
            if v.isEmpty {
                if !json { out.append(UInt8(ascii: "-")) }
            } else if json {
                out.jsonEscaped(v)
            } else {
                out.textEscaped(v)
            }
        }
        @inline(__always) func value(_ range: Range<Int>) { value(UnsafeRawBufferPointer(rebasing: raw[range])) }
        @inline(__always) func header(_ k: Int) -> Range<Int>? {
            let h = plan.headers[k]
            return requestHeader(head, uwsgi ? conn : nil, raw, name: UnsafeRawBufferPointer(rebasing: pool[h.name]),
                                 uwsgiKey: UnsafeRawBufferPointer(rebasing: pool[h.key]))
        }
        for op in plan.ops {
            switch op {
            case let .literal(at, count):
                out.append(UnsafeRawBufferPointer(rebasing: pool[at..<(at + count)]))
            case let .requestHeader(k):
                value(header(k) ?? 0..<0)
            case let .responseHeader(k):
                if let response, response.present[k] {
                    response.values[k].withUnsafeBytes { value($0) }
                } else {
                    value(0..<0)
                }
            case let .variable(v):
                switch v {
                case .method: value(head.method)
                case .uri: value(head.target)
                case .path: value(head.path)
                case .query: value(head.query ?? 0..<0)
                case .proto: out.append(head.versionMinor == 0 ? "HTTP/1.0" : "HTTP/1.1")
                case .status: out.decimal(status)
                case .size: out.decimal(bytes)
                case .sizeCLF: if bytes == 0 { out.append(UInt8(ascii: "-")) } else { out.decimal(bytes) }
                case .msecs: out.decimal(Int(max(0, seconds) * 1000))
                case .usecs: out.decimal(Int(max(0, seconds) * 1_000_000))
                case .addr:
                    if forwardedFor, let xff = header(AccessPlan.forwardedFor).flatMap({ firstAddress(raw, $0) }) {
                        value(xff)
                    } else {
                        conn.peerAddress.withUnsafeBytes { value($0) }
                    }
                case .requestID:
                    if let given = saneRequestID(header(AccessPlan.requestID), raw) { value(given) } else { appendGeneratedID(to: &out) }
                case .worker: out.append(workerDigits)
                case .generation: out.append(generationDigits)
                case .pid: out.append(pidDigits)
                case .epoch: out.decimal(epoch)
                case .ltime: out.append(stamp)
                case .iso8601: out.append(isoStamp)
                }
            }
        }
    }

    /// A request's X-Request-ID when it is one to log: at most 128 bytes, each an id byte.
    @inline(__always)
    func saneRequestID(_ given: Range<Int>?, _ raw: UnsafeRawBufferPointer) -> Range<Int>? {
        guard let given, given.count <= 128, raw[given].allSatisfy(Self.isIDByte) else { return nil }
        return given
    }

    /// The next generated request id: the worker's prefix and a counter, in hex.
    @inline(__always)
    func appendGeneratedID(to out: inout LineBuffer) {
        idCounter += 1
        out.append(idPrefix)
        out.hex(UInt64(idCounter))
    }

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

    /// The first address of an X-Forwarded-For value (up to its first comma, spaces
    /// trimmed), or nil when it is empty.
    func firstAddress(_ raw: UnsafeRawBufferPointer, _ all: Range<Int>) -> Range<Int>? {
        var lo = all.lowerBound
        var hi = lo
        while hi < all.upperBound && raw[hi] != UInt8(ascii: ",") { hi += 1 }
        while lo < hi && (raw[lo] == 32 || raw[lo] == 9) { lo += 1 }
        while hi > lo && (raw[hi - 1] == 32 || raw[hi - 1] == 9) { hi -= 1 }
        return lo < hi ? lo..<hi : nil
    }

    /// The first request header called `name` (lower case): an HTTP field of `head`, or
    /// with `uwsgi` (the connection of a uwsgi packet) the packet's var `uwsgiKey`.
    func requestHeader(_ head: HTTPRequestHead, _ uwsgi: Connection?, _ raw: UnsafeRawBufferPointer,
                       name: UnsafeRawBufferPointer, uwsgiKey: UnsafeRawBufferPointer) -> Range<Int>? {
        if let uwsgi {
            for v in uwsgi.uwsgiHead.vars where v.key.count == uwsgiKey.count && raw[v.key].elementsEqual(uwsgiKey) {
                return v.value
            }
            return nil
        }
        guard !name.isEmpty else { return nil }
        for field in head.headers where field.name.count == name.count {
            var same = true
            for j in 0..<name.count where asciiLower(raw[field.name.lowerBound + j]) != name[j] { same = false; break }
            if same { return field.value }
        }
        return nil
    }
}
