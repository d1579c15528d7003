import ApusProtocols

/// Builds the PEP 3333 environ dict for one request. Keys and constant values are made
/// once per interpreter; per request only the varying values are new objects.
final class WSGIEnviron {
    let api: CPythonAPI
    private let template: PyRef      // constant entries, copied per request
    private let k: Keys
    private var headerKeys: EnvironKeyTable
    private let methods: [KnownMethod]
    private let http10: PyRef
    private let http11: PyRef
    private let schemeHTTP: PyRef
    private let schemeHTTPS: PyRef
    private let empty: PyRef
    let scriptName: PyRef
    private let scriptNameBytes: [UInt8]
    private let trustedProxies: TrustedProxies
    private var varKeys: EnvironKeyTable
    private let httpHost: PyRef
    private let slash: PyRef
    private let get: PyRef

    struct Keys {
        let requestMethod, scriptName, pathInfo, queryString, contentType, contentLength,
            serverName, serverPort, serverProtocol, remoteAddr, remotePort, requestURI, rawURI,
            urlScheme, input, https: PyRef
    }

    init(api: CPythonAPI, constants: [EnvironConstant], scriptName: String, trustedProxies: TrustedProxies) {
        self.api = api
        self.trustedProxies = trustedProxies
        varKeys = EnvironKeyTable(api: api, kind: .uwsgiVar)
        httpHost = api.interned("HTTP_HOST")
        slash = api.interned("/")
        get = api.interned("GET")
        func key(_ s: StaticString) -> PyRef { api.interned(s) }
        k = Keys(requestMethod: key("REQUEST_METHOD"), scriptName: key("SCRIPT_NAME"),
                 pathInfo: key("PATH_INFO"), queryString: key("QUERY_STRING"),
                 contentType: key("CONTENT_TYPE"), contentLength: key("CONTENT_LENGTH"),
                 serverName: key("SERVER_NAME"), serverPort: key("SERVER_PORT"),
                 serverProtocol: key("SERVER_PROTOCOL"), remoteAddr: key("REMOTE_ADDR"),
                 remotePort: key("REMOTE_PORT"), requestURI: key("REQUEST_URI"), rawURI: key("RAW_URI"),
                 urlScheme: key("wsgi.url_scheme"), input: key("wsgi.input"), https: key("HTTPS"))
        headerKeys = EnvironKeyTable(api: api, kind: .httpHeader)
        methods = [KnownMethod(api, "GET"), KnownMethod(api, "POST"), KnownMethod(api, "HEAD"),
                   KnownMethod(api, "PUT"), KnownMethod(api, "DELETE"), KnownMethod(api, "PATCH"),
                   KnownMethod(api, "OPTIONS")]
        http10 = api.interned("HTTP/1.0")
        http11 = api.interned("HTTP/1.1")
        schemeHTTP = api.interned("http")
        schemeHTTPS = api.interned("https")
        empty = api.interned("")
        self.scriptName = api.string(scriptName)
        scriptNameBytes = Array(scriptName.utf8)
        template = api.PyDict_New()!
        for c in constants {
            _ = api.PyDict_SetItemString(template, cstr(c.name), c.value)
        }
    }

    /// A new environ dict (new reference). `input` is borrowed.
    func build(_ buf: UnsafeRawBufferPointer, _ head: borrowing HTTPRequestHead,
               _ conn: WSGIConnectionInfo, contentLength: Int?, input: PyRef) -> PyRef {
        if let vars = conn.uwsgiVars { return buildFromVars(buf, vars, conn, input: input) }
        let api = self.api
        let env = api.PyDict_Copy(template)!
        @inline(__always) func put(_ key: PyRef, _ value: PyRef) {
            _ = api.PyDict_SetItem(env, key, value)
        }
        @inline(__always) func putNew(_ key: PyRef, _ value: PyRef) {
            _ = api.PyDict_SetItem(env, key, value)
            api.decref(value)
        }
        @inline(__always) func slice(_ r: Range<Int>) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: buf[r])
        }

        let method = slice(head.method)
        if let m = methods.first(where: { $0.name.elementsEqual(method) }) {
            put(k.requestMethod, m.object)
        } else {
            putNew(k.requestMethod, api.latin1(method))
        }
        put(k.serverProtocol, head.versionMinor == 0 ? http10 : http11)
        put(k.scriptName, scriptName)
        putNew(k.pathInfo, pathInfo(slice(head.path)))
        if let q = head.query { putNew(k.queryString, api.latin1(slice(q))) } else { put(k.queryString, empty) }
        let target = api.latin1(slice(head.target))
        put(k.requestURI, target)
        putNew(k.rawURI, target)
        put(k.remoteAddr, conn.remoteAddr)
        put(k.remotePort, conn.remotePort)
        put(k.urlScheme, conn.https ? schemeHTTPS : schemeHTTP)
        if conn.https { putNew(k.https, api.string("on")) }
        put(k.input, input)
        if let n = contentLength { putNew(k.contentLength, decimalString(n)) }

        // absolute-form: the target's authority stands for the Host header, which is
        // ignored (RFC 9112 section 3.2.2).
        var hostValue: Range<Int>? = head.authority
        if let a = hostValue { putNew(httpHost, api.latin1(slice(a))) }
        var forwarded: ForwardedFields? = nil
        for field in head.headers {
            let name = slice(field.name)
            // A header name with "_" could pose as another after the dash-to-underscore
            // mapping (X_Forwarded_For vs X-Forwarded-For): such headers are dropped.
            if name.contains(UInt8(ascii: "_")) { continue }
            if name.count == 14, asciiEqualsLower(name, "content-length") { continue }  // set from the framing
            if conn.trustedPeer, let kind = ForwardedFields.kind(of: name) {
                if forwarded == nil { forwarded = ForwardedFields() }
                forwarded!.add(kind, field.value)
            }
            let key: PyRef
            if name.count == 12, asciiEqualsLower(name, "content-type") {
                key = k.contentType
            } else {
                if name.count == 4, asciiEqualsLower(name, "host") {
                    if head.authority != nil { continue }
                    hostValue = field.value
                }
                key = headerKeys.key(for: name)
            }
            let value = api.latin1(slice(field.value))
            if let prior = api.PyDict_GetItem(env, key) {
                // Repeated field: combine as one comma-separated value (RFC 9110 5.3);
                // cookies use "; " as RFC 6265 asks.
                let sep = asciiEqualsLower(name, "cookie") ? "; " : ", "
                let joined = joinLatin1(prior, sep, value)
                api.decref(value)
                putNew(key, joined)
            } else {
                putNew(key, value)
            }
        }
        if let h = hostValue {
            let (name, port) = splitHost(slice(h))
            putNew(k.serverName, api.latin1(name))
            if let p = port { putNew(k.serverPort, api.latin1(p)) } else { putNew(k.serverPort, api.string(conn.https ? "443" : "80")) }
        } else {
            put(k.serverName, conn.serverName)
            put(k.serverPort, conn.serverPort)
        }
        if let forwarded { applyForwarded(forwarded, buf, conn, env) }
        return env
    }

    /// A trusted proxy said who the client is: REMOTE_ADDR, the scheme, the host and port.
    private func applyForwarded(_ f: ForwardedFields, _ buf: UnsafeRawBufferPointer, _ conn: WSGIConnectionInfo, _ env: PyRef) {
        func text(_ r: Range<Int>) -> String { String(decoding: buf[r], as: UTF8.self) }
        guard let peer = api.utf8(conn.remoteAddr).map({ String(decoding: $0, as: UTF8.self) }) else { return }
        let input = ForwardedInput(peer: peer, xForwardedFor: f.xForwardedFor.map(text),
                                   xForwardedProto: f.xForwardedProto.map(text), xForwardedHost: f.xForwardedHost.map(text),
                                   xForwardedPort: f.xForwardedPort.map(text), forwarded: f.forwarded.map(text))
        let r = resolveForwarded(input, trusted: trustedProxies)
        func set(_ key: PyRef, _ value: String) {
            let v = api.string(value)
            _ = api.PyDict_SetItem(env, key, v)
            api.decref(v)
        }
        set(k.remoteAddr, r.remoteAddr)
        if let port = r.remotePort { set(k.remotePort, port) }
        if let scheme = r.scheme {
            _ = api.PyDict_SetItem(env, k.urlScheme, scheme == "https" ? schemeHTTPS : schemeHTTP)
            if scheme == "https" { set(k.https, "on") }
        }
        if let host = r.host {
            set(httpHost, host)
            host.utf8CString.withUnsafeBytes { raw in
                let bytes = UnsafeRawBufferPointer(rebasing: raw[0..<(raw.count - 1)])
                let (name, port) = splitHost(bytes)
                let n = api.latin1(name)
                _ = api.PyDict_SetItem(env, k.serverName, n)
                api.decref(n)
                if let port, r.port == nil {
                    let p = api.latin1(port)
                    _ = api.PyDict_SetItem(env, k.serverPort, p)
                    api.decref(p)
                }
            }
        }
        if let port = r.port { set(k.serverPort, port) }
        else if r.host != nil, r.scheme != nil, api.PyDict_GetItem(env, k.serverPort) == nil {
            set(k.serverPort, r.scheme == "https" ? "443" : "80")
        }
    }

    /// The environ of a uwsgi request: the packet's vars as they are (nginx already decoded
    /// PATH_INFO and speaks for the client), completed with what PEP 3333 requires.
    private func buildFromVars(_ buf: UnsafeRawBufferPointer, _ vars: [UWSGIVar], _ conn: WSGIConnectionInfo, input: PyRef) -> PyRef {
        let api = self.api
        let env = api.PyDict_Copy(template)!
        var https = false
        for v in vars {
            let keyBytes = UnsafeRawBufferPointer(rebasing: buf[v.key])
            let key = varKeys.key(for: keyBytes)
            let value = api.latin1(UnsafeRawBufferPointer(rebasing: buf[v.value]))
            _ = api.PyDict_SetItem(env, key, value)
            api.decref(value)
            if keyBytes.elementsEqual("HTTPS".utf8) {
                let val = buf[v.value]
                https = val.elementsEqual("on".utf8) || val.elementsEqual("ON".utf8) || val.elementsEqual("1".utf8)
            } else if keyBytes.elementsEqual("REQUEST_SCHEME".utf8) || keyBytes.elementsEqual("UWSGI_SCHEME".utf8) {
                if buf[v.value].elementsEqual("https".utf8) { https = true }
            }
        }
        _ = api.PyDict_SetItem(env, k.urlScheme, https ? schemeHTTPS : schemeHTTP)
        _ = api.PyDict_SetItem(env, k.input, input)
        func setDefault(_ key: PyRef, _ value: PyRef) {
            if api.PyDict_GetItem(env, key) == nil { _ = api.PyDict_SetItem(env, key, value) }
        }
        if api.PyDict_GetItem(env, k.scriptName) == nil {
            _ = api.PyDict_SetItem(env, k.scriptName, scriptName)
            // --mount: the prefix moves from PATH_INFO to SCRIPT_NAME, as uWSGI does.
            if !scriptNameBytes.isEmpty, let path = api.PyDict_GetItem(env, k.pathInfo), let p = api.utf8(path),
               p.starts(with: scriptNameBytes), p.count == scriptNameBytes.count || p[scriptNameBytes.count] == UInt8(ascii: "/") {
                let rest = api.latin1(UnsafeRawBufferPointer(rebasing: p[scriptNameBytes.count..<p.count]))
                _ = api.PyDict_SetItem(env, k.pathInfo, rest)
                api.decref(rest)
            }
        }
        setDefault(k.pathInfo, slash)
        setDefault(k.queryString, empty)
        setDefault(k.requestMethod, get)
        setDefault(k.serverProtocol, http10)
        setDefault(k.serverName, conn.serverName)
        setDefault(k.serverPort, conn.serverPort)
        setDefault(k.remoteAddr, conn.remoteAddr)
        if let cl = api.PyDict_GetItem(env, k.contentLength), let c = api.utf8(cl), c.count == 0 {
            _ = api.PyDict_SetItem(env, k.contentLength, empty)
        }
        return env
    }

    private func joinLatin1(_ a: PyRef, _ sep: String, _ b: PyRef) -> PyRef {
        var out: [UInt8] = []
        appendLatin1(a, to: &out)
        out.append(contentsOf: sep.utf8)
        appendLatin1(b, to: &out)
        return out.withUnsafeBytes { api.latin1($0) }
    }

    private func appendLatin1(_ s: PyRef, to out: inout [UInt8]) {
        guard let u = api.utf8(s) else { return }
        _ = utf8ToLatin1(u, into: &out)
    }

    /// PATH_INFO: the percent-decoded path below SCRIPT_NAME, as latin-1.
    private func pathInfo(_ raw: UnsafeRawBufferPointer) -> PyRef {
        var decoded: [UInt8]
        if raw.contains(UInt8(ascii: "%")) {
            decoded = percentDecode(raw)
        } else {
            decoded = Array(raw)
        }
        if decoded.isEmpty { decoded = [UInt8(ascii: "/")] }  // absolute-form with no path
        if !scriptNameBytes.isEmpty, decoded.starts(with: scriptNameBytes),
           decoded.count == scriptNameBytes.count || decoded[scriptNameBytes.count] == UInt8(ascii: "/") {
            decoded.removeFirst(scriptNameBytes.count)
        }
        return decoded.withUnsafeBytes { api.latin1($0) }
    }
}

@inline(__always) func asciiEqualsLower(_ b: UnsafeRawBufferPointer, _ lower: StaticString) -> Bool {
    guard b.count == lower.utf8CodeUnitCount else { return false }
    let l = lower.utf8Start
    for i in 0..<b.count where b[i] | 0x20 != l[i] | 0x20 { return false }
    // "|0x20" folds letters; the names compared here are letters and '-' (0x2d), which is unchanged.
    return true
}

extension WSGIEnviron {
    /// A new `str` holding the decimal digits of `n` (n >= 0), without a Swift String.
    func decimalString(_ n: Int) -> PyRef {
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { buf in
            var v = n
            var i = 20
            repeat {
                i -= 1
                buf[i] = UInt8(48 + v % 10)
                v /= 10
            } while v > 0
            return api.latin1(UnsafeRawBufferPointer(start: buf.baseAddress! + i, count: 20 - i))
        }
    }
}

/// Host header value → (name, port?) for SERVER_NAME / SERVER_PORT.
func splitHost(_ v: UnsafeRawBufferPointer) -> (UnsafeRawBufferPointer, UnsafeRawBufferPointer?) {
    if v.first == UInt8(ascii: "[") {
        if let close = v.firstIndex(of: UInt8(ascii: "]")) {
            // Half-open ranges only: a closed or partial range here goes through the
            // standard library's unspecialized range code on every request.
            let name = UnsafeRawBufferPointer(rebasing: v[0..<(close + 1)])
            if close + 1 < v.count, v[close + 1] == UInt8(ascii: ":") {
                return (name, UnsafeRawBufferPointer(rebasing: v[(close + 2)..<v.count]))
            }
            return (name, nil)
        }
        return (v, nil)
    }
    if let colon = v.lastIndex(of: UInt8(ascii: ":")) {
        return (UnsafeRawBufferPointer(rebasing: v[0..<colon]), UnsafeRawBufferPointer(rebasing: v[(colon + 1)..<v.count]))
    }
    return (v, nil)
}

/// UTF-8 (from a Python str) to latin-1; false if a character is above U+00FF.
func utf8ToLatin1(_ u: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Bool {
    var i = 0
    while i < u.count {
        let c = u[i]
        if c < 0x80 {
            out.append(c)
            i += 1
        } else if (c == 0xC2 || c == 0xC3), i + 1 < u.count {
            out.append((c & 0x03) << 6 | (u[i + 1] & 0x3F))
            i += 2
        } else {
            return false
        }
    }
    return true
}

/// An environ entry every request starts with (`wsgi.version`, ...).
struct EnvironConstant {
    let name: StaticString
    let value: PyRef
}

/// A method seen often enough to keep its str: its bytes, and the interned str.
struct KnownMethod {
    let name: [UInt8]
    let object: PyRef

    init(_ api: CPythonAPI, _ name: StaticString) {
        self.name = Array(UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        object = api.interned(name)
    }
}

/// The forwarding headers of one request (ranges in its buffer), collected while the
/// environ is built, for a trusted peer only.
struct ForwardedFields {
    enum Kind { case xForwardedFor, xForwardedProto, xForwardedHost, xForwardedPort, forwarded }
    var xForwardedFor: [Range<Int>] = []
    var xForwardedProto: Range<Int>?
    var xForwardedHost: Range<Int>?
    var xForwardedPort: Range<Int>?
    var forwarded: [Range<Int>] = []

    static func kind(of name: UnsafeRawBufferPointer) -> Kind? {
        switch name.count {
        case 9 where asciiEqualsLower(name, "forwarded"): return .forwarded
        case 15 where asciiEqualsLower(name, "x-forwarded-for"): return .xForwardedFor
        case 16 where asciiEqualsLower(name, "x-forwarded-host"): return .xForwardedHost
        case 16 where asciiEqualsLower(name, "x-forwarded-port"): return .xForwardedPort
        case 17 where asciiEqualsLower(name, "x-forwarded-proto"): return .xForwardedProto
        default: return nil
        }
    }

    mutating func add(_ kind: Kind, _ value: Range<Int>) {
        switch kind {
        case .xForwardedFor: xForwardedFor.append(value)
        case .xForwardedProto: xForwardedProto = value
        case .xForwardedHost: xForwardedHost = value
        case .xForwardedPort: xForwardedPort = value
        case .forwarded: forwarded.append(value)
        }
    }
}
