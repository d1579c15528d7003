// The access log's format, compiled once at start from `--log-format` into literal bytes
// and variable ops; each worker then appends a line per request from bytes alone. The
// escaping of values (LogEscape.swift) is chosen by the format: JSON for the `json`
// preset, nginx-style \xNN for every other format. See docs/observability.md.

/// A value an access line can carry. Names are uWSGI's (`%(uri)`), with a few more.
public enum LogVariable: Sendable, Equatable {
    case method, uri, path, query, proto, status
    /// Response body bytes; `sizeCLF` writes "-" for 0 (Apache's %b, the common format's).
    case size, sizeCLF
    case msecs, usecs
    /// The client address: the socket peer (after a trusted PROXY header), or with
    /// --log-x-forwarded-for the first address of X-Forwarded-For when there is one.
    case addr
    case requestID
    /// The worker's number 1...N (`apus.worker_id()`, uWSGI's `wid`), its generation, its pid.
    case worker, generation, pid
    /// Unix seconds (uWSGI's `time` and `epoch`).
    case epoch
    /// "03/Dec/2026:13:21:49 +0000", the common log format's (uWSGI's `ltime`).
    case ltime
    /// "2026-12-03T13:21:49Z".
    case iso8601
}

/// One step of a compiled format.
public enum LogOp: Sendable, Equatable {
    case literal([UInt8])
    case variable(LogVariable)
    /// A request header: its lower-case name for HTTP, and the uwsgi packet var that holds
    /// it (`HTTP_X_FOO`, `CONTENT_TYPE`). The first field of that name is logged.
    case requestHeader(name: [UInt8], uwsgiKey: [UInt8])
    /// A response header: the index of its lower-case name in `LogFormat.responseHeaders`.
    case responseHeader(Int)
}

/// How values are escaped so that no value can forge a field or a line.
public enum LogEscaping: Sendable, Equatable {
    /// Bytes below 0x20, `"`, `\` and bytes 0x7f and up as \xNN (nginx's escaping): an
    /// ASCII line.
    case text
    /// A JSON string's content, valid UTF-8 (see `appendJSONEscaped`).
    case json
}

/// A compiled `--log-format`.
public struct LogFormat: Sendable, Equatable {
    public var ops: [LogOp]
    public var escaping: LogEscaping
    /// Lower-case names of the response headers the format logs (empty: none is captured).
    public var responseHeaders: [[UInt8]]
    /// What was given, for --print-config.
    public var source: String

    /// Apache's common log format, the default.
    public static let commonFormat = #"%(addr) - - [%(ltime)] "%(method) %(uri) %(proto)" %(status) %(size_clf)"#
    /// The common format with the referer and user agent (Apache's combined).
    public static let combinedFormat = commonFormat + #" "%(referer)" "%(uagent)""#
    /// One JSON object a line; numbers unquoted. Keys are documented in docs/observability.md.
    public static let jsonFormat = #"{"time":"%(iso8601)","addr":"%(addr)","method":"%(method)","uri":"%(uri)","proto":"%(proto)","status":%(status),"size":%(size),"usecs":%(usecs),"referer":"%(referer)","uagent":"%(uagent)","request_id":"%(request_id)","worker":%(worker),"generation":%(generation),"pid":%(pid)}"#

    public static let common = try! LogFormat(compiling: "common")
    public static let json = try! LogFormat(compiling: "json")

    /// `spec` is a preset name (common, combined, json) or a format with `%(name)`
    /// variables and `%%` for a percent sign; a format after `json:` has its values escaped
    /// for JSON strings (the user writes the quotes). Throws the first unknown variable or a
    /// malformed `%(`; the message names it.
    public init(compiling spec: String) throws(LogFormatError) {
        source = spec
        let text: String
        switch spec {
        case "common": text = Self.commonFormat; escaping = .text
        case "combined": text = Self.combinedFormat; escaping = .text
        case "json": text = Self.jsonFormat; escaping = .json
        default:
            if spec.hasPrefix("json:") { text = String(spec.dropFirst(5)); escaping = .json } else { text = spec; escaping = .text }
        }
        ops = []
        responseHeaders = []
        let bytes = Array(text.utf8)
        var literal: [UInt8] = []
        var i = 0
        func flush() { if !literal.isEmpty { ops.append(.literal(literal)); literal = [] } }
        while i < bytes.count {
            let b = bytes[i]
            guard b == UInt8(ascii: "%"), i + 1 < bytes.count else { literal.append(b); i += 1; continue }
            if bytes[i + 1] == UInt8(ascii: "%") { literal.append(b); i += 2; continue }
            guard bytes[i + 1] == UInt8(ascii: "(") else { literal.append(b); i += 1; continue }
            guard let close = bytes[(i + 2)...].firstIndex(of: UInt8(ascii: ")")) else {
                throw LogFormatError(message: "unterminated %( at byte \(i + 1)")
            }
            let name = String(decoding: bytes[(i + 2)..<close], as: UTF8.self)
            flush()
            ops.append(try op(named: name))
            i = close + 1
        }
        flush()
    }

    private mutating func op(named name: String) throws(LogFormatError) -> LogOp {
        if let v = Self.variables[name] { return .variable(v) }
        if name == "uagent" || name == "user_agent" { return Self.header("user-agent") }
        if name == "referer" { return Self.header("referer") }
        if name == "host" { return Self.header("host") }
        if name.hasPrefix("var.") {
            let key = name.dropFirst(4)
            guard !key.isEmpty, key.utf8.allSatisfy({ isTchar($0) }) else { throw LogFormatError(message: "bad variable %(\(name))") }
            // uWSGI's request vars: HTTP_X_FOO is the header x-foo; CONTENT_TYPE and
            // CONTENT_LENGTH are theirs; other vars exist only in uwsgi packets.
            var header = ""
            if key.hasPrefix("HTTP_") { header = String(key.dropFirst(5)) } else if key == "CONTENT_TYPE" || key == "CONTENT_LENGTH" { header = String(key) }
            let lower = header.utf8.map { $0 == UInt8(ascii: "_") ? UInt8(ascii: "-") : asciiLower($0) }
            return .requestHeader(name: lower, uwsgiKey: Array(key.utf8))
        }
        for (prefix, response) in [("req:", false), ("resp:", true)] where name.hasPrefix(prefix) {
            let field = name.dropFirst(prefix.count)
            guard !field.isEmpty, field.utf8.allSatisfy({ isTchar($0) }) else {
                throw LogFormatError(message: "bad header name in %(\(name)): expected a token such as X-Request-Start")
            }
            let lower = field.utf8.map(asciiLower)
            if !response { return Self.header(String(decoding: lower, as: UTF8.self)) }
            if let at = responseHeaders.firstIndex(of: lower) { return .responseHeader(at) }
            responseHeaders.append(lower)
            return .responseHeader(responseHeaders.count - 1)
        }
        throw LogFormatError(message: "unknown variable %(\(name)) (known: \(Self.knownNames))")
    }

    /// A request header by lower-case name, with the uwsgi var that carries it.
    static func header(_ lower: String) -> LogOp {
        let upper = lower.utf8.map { $0 == UInt8(ascii: "-") ? UInt8(ascii: "_") : ($0 >= 0x61 && $0 <= 0x7a ? $0 - 0x20 : $0) }
        let key = lower == "content-type" || lower == "content-length" ? upper : Array("HTTP_".utf8) + upper
        return .requestHeader(name: Array(lower.utf8), uwsgiKey: key)
    }

    static let variables: [String: LogVariable] = [
        "method": .method, "uri": .uri, "path": .path, "query": .query, "proto": .proto, "status": .status,
        "size": .size, "rsize": .size, "size_clf": .sizeCLF, "msecs": .msecs, "usecs": .usecs, "micros": .usecs,
        "addr": .addr, "request_id": .requestID, "worker": .worker, "wid": .worker, "generation": .generation,
        "pid": .pid, "time": .epoch, "epoch": .epoch, "ltime": .ltime, "iso8601": .iso8601,
    ]

    static let knownNames = (variables.keys.sorted() + ["host", "referer", "uagent", "user_agent", "var.NAME", "req:Header", "resp:Header"])
        .joined(separator: ", ")
}

/// A `--log-format` that cannot be compiled; `message` names the culprit.
public struct LogFormatError: Error, Equatable, Sendable {
    public var message: String
}
