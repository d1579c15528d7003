import ApusProtocols

/// Builds the PEP 3333 environ dict for one request. Keys and constant values are made
/// once per interpreter and kept for the process; per request only the varying values are
/// new objects.
final class WSGIEnviron {
    let api: CPythonAPI
    private let template: PyBorrowed      // constant entries, copied per request
    private let k: Keys
    private var headerKeys: EnvironKeyTable
    private let methods: [KnownMethod]
    private let http10: PyBorrowed
    private let http11: PyBorrowed
    private let schemeHTTP: PyBorrowed
    private let schemeHTTPS: PyBorrowed
    private let empty: PyBorrowed
    private let on: PyBorrowed
    private let port80: PyBorrowed
    private let port443: PyBorrowed
    let scriptName: PyBorrowed
    private let scriptNameBytes: [UInt8]
    private let trustedProxies: TrustedProxies
    private var varKeys: EnvironKeyTable
    private let httpHost: PyBorrowed
    private let slash: PyBorrowed
    private let get: PyBorrowed

    struct Keys {
        let requestMethod, scriptName, pathInfo, queryString, contentType, contentLength,
            serverName, serverPort, serverProtocol, remoteAddr, remotePort, requestURI, rawURI,
            urlScheme, input, https: PyBorrowed
    }

    init(api: CPythonAPI, constants: [EnvironConstant], scriptName: String, trustedProxies: TrustedProxies) {
        self.api = api
        self.trustedProxies = trustedProxies
        func kept(_ s: StaticString) -> PyBorrowed { api.interned(s).keepForever() }
        varKeys = EnvironKeyTable(api: api, kind: .uwsgiVar)
        httpHost = kept("HTTP_HOST")
        slash = kept("/")
        get = kept("GET")
        k = Keys(requestMethod: kept("REQUEST_METHOD"), scriptName: kept("SCRIPT_NAME"),
                 pathInfo: kept("PATH_INFO"), queryString: kept("QUERY_STRING"),
                 contentType: kept("CONTENT_TYPE"), contentLength: kept("CONTENT_LENGTH"),
                 serverName: kept("SERVER_NAME"), serverPort: kept("SERVER_PORT"),
                 serverProtocol: kept("SERVER_PROTOCOL"), remoteAddr: kept("REMOTE_ADDR"),
                 remotePort: kept("REMOTE_PORT"), requestURI: kept("REQUEST_URI"), rawURI: kept("RAW_URI"),
                 urlScheme: kept("wsgi.url_scheme"), input: kept("wsgi.input"), https: kept("HTTPS"))
        headerKeys = EnvironKeyTable(api: api, kind: .httpHeader)
        methods = [KnownMethod(api, "GET"), KnownMethod(api, "POST"), KnownMethod(api, "HEAD"),
                   KnownMethod(api, "PUT"), KnownMethod(api, "DELETE"), KnownMethod(api, "PATCH"),
                   KnownMethod(api, "OPTIONS")]
        http10 = kept("HTTP/1.0")
        http11 = kept("HTTP/1.1")
        schemeHTTP = kept("http")
        schemeHTTPS = kept("https")
        empty = kept("")
        on = kept("on")
        port80 = kept("80")
        port443 = kept("443")
        self.scriptName = api.string(scriptName).keepForever()
        scriptNameBytes = Array(scriptName.utf8)
        template = api.dictionary()!.keepForever()
        for c in constants {
            api.setItem(template, c.name, c.value)
        }
    }

    /// A new environ dict. `input` is the `wsgi.input` stream.
    func build(_ buf: UnsafeRawBufferPointer, _ head: borrowing HTTPRequestHead,
               _ conn: WSGIConnectionInfo, contentLength: Int?, input: borrowing PyOwned) -> PyOwned {
        if let vars = conn.uwsgiVars { return buildFromVars(buf, vars, conn, input: input) }
        let api = self.api
        let env = api.copy(dictionary: template)!
        let dict = env.borrow
        @inline(__always) func put(_ key: PyBorrowed, _ value: borrowing some PyRef & ~Copyable) {
            api.setItem(dict, key, value)
        }
        @inline(__always) func slice(_ r: Range<Int>) -> UnsafeRawBufferPointer {
            UnsafeRawBufferPointer(rebasing: buf[r])
        }

        let method = slice(head.method)
        if let m = methods.first(where: { $0.name.elementsEqual(method) }) {
            put(k.requestMethod, m.object)
        } else {
            put(k.requestMethod, api.latin1(method))
        }
        put(k.serverProtocol, head.versionMinor == 0 ? http10 : http11)
        put(k.scriptName, scriptName)
        put(k.pathInfo, pathInfo(slice(head.path)))
        if let q = head.query { put(k.queryString, api.latin1(slice(q))) } else { put(k.queryString, empty) }
        let target = api.latin1(slice(head.target))
        put(k.requestURI, target)
        put(k.rawURI, target)
        put(k.remoteAddr, api.latin1(conn.remoteAddress))
        put(k.remotePort, api.port(conn.remotePort))
        put(k.urlScheme, conn.https ? schemeHTTPS : schemeHTTP)
        if conn.https { put(k.https, on) }
        put(k.input, input)
        if let n = contentLength { put(k.contentLength, api.decimal(n)) }

        // absolute-form: the target's authority stands for the Host header, which is
        // ignored (RFC 9112 section 3.2.2).
        var hostValue: Range<Int>? = head.authority
        if let a = hostValue { put(httpHost, api.latin1(slice(a))) }
        var forwarded: ForwardedFields? = nil
        for field in head.headers {
            let name = slice(field.name)
            // A header name with "_" could pose as another after the dash-to-underscore
            // mapping (X_Forwarded_For vs X-Forwarded-For): such headers are dropped.
            if name.contains(UInt8(ascii: "_")) { continue }
            if equalsIgnoringCase(name, "content-length") { continue }  // set from the framing
            if conn.trustedPeer, let kind = ForwardedFields.kind(of: name) {
                if forwarded == nil { forwarded = ForwardedFields() }
                forwarded!.add(kind, field.value)
            }
            let key: PyBorrowed
            if equalsIgnoringCase(name, "content-type") {
                key = k.contentType
            } else {
                if equalsIgnoringCase(name, "host") {
                    if head.authority != nil { continue }
                    hostValue = field.value
                }
                key = headerKeys.key(for: name)
            }
            let value = api.latin1(slice(field.value))
            if let prior = api.item(dict, key) {
                // Repeated field: combine as one comma-separated value (RFC 9110 5.3);
                // cookies use "; " as RFC 6265 asks.
                let sep: StaticString = equalsIgnoringCase(name, "cookie") ? "; " : ", "
                put(key, joinLatin1(prior, sep, value))
            } else {
                put(key, value)
            }
        }
        if let h = hostValue {
            let (name, port) = splitHost(slice(h))
            put(k.serverName, api.latin1(name))
            if let p = port { put(k.serverPort, api.latin1(p)) } else { put(k.serverPort, conn.https ? port443 : port80) }
        } else {
            let server = conn.listener.pythonStrings(api)
            put(k.serverName, server.name)
            put(k.serverPort, server.port)
        }
        if let forwarded { applyForwarded(forwarded, buf, conn, dict) }
        return env
    }

    /// A trusted proxy said who the client is: REMOTE_ADDR, the scheme, the host and port.
    private func applyForwarded(_ f: ForwardedFields, _ buf: UnsafeRawBufferPointer, _ conn: WSGIConnectionInfo, _ env: PyBorrowed) {
        func text(_ r: Range<Int>) -> String { String(decoding: buf[r], as: UTF8.self) }
        let peer = String(decoding: conn.remoteAddress, as: UTF8.self)
        let input = ForwardedInput(peer: peer, xForwardedFor: f.xForwardedFor.map(text),
                                   xForwardedProto: f.xForwardedProto.map(text), xForwardedHost: f.xForwardedHost.map(text),
                                   xForwardedPort: f.xForwardedPort.map(text), forwarded: f.forwarded.map(text))
        let r = resolveForwarded(input, trusted: trustedProxies)
        func set(_ key: PyBorrowed, _ value: String) {
            api.setItem(env, key, api.string(value))
        }
        set(k.remoteAddr, r.remoteAddr)
        if let port = r.remotePort { set(k.remotePort, port) }
        if let scheme = r.scheme {
            api.setItem(env, k.urlScheme, scheme == "https" ? schemeHTTPS : schemeHTTP)
            if scheme == "https" { set(k.https, "on") }
        }
        if let host = r.host {
            set(httpHost, host)
            host.utf8CString.withUnsafeBytes { raw in
                let bytes = UnsafeRawBufferPointer(rebasing: raw[0..<(raw.count - 1)])
                let (name, port) = splitHost(bytes)
                api.setItem(env, k.serverName, api.latin1(name))
                if let port, r.port == nil {
                    api.setItem(env, k.serverPort, api.latin1(port))
                }
            }
        }
        if let port = r.port { set(k.serverPort, port) }
        else if r.host != nil, r.scheme != nil, api.item(env, k.serverPort) == nil {
            set(k.serverPort, r.scheme == "https" ? "443" : "80")
        }
    }

    /// The environ of a uwsgi request: the packet's vars as they are (nginx already decoded
    /// PATH_INFO and speaks for the client), completed with what PEP 3333 requires.
    private func buildFromVars(_ buf: UnsafeRawBufferPointer, _ vars: [UWSGIVar], _ conn: WSGIConnectionInfo,
                               input: borrowing PyOwned) -> PyOwned {
        let api = self.api
        let env = api.copy(dictionary: template)!
        let dict = env.borrow
        for v in vars {
            let key = varKeys.key(for: UnsafeRawBufferPointer(rebasing: buf[v.key]))
            api.setItem(dict, key, api.latin1(UnsafeRawBufferPointer(rebasing: buf[v.value])))
        }
        // The scheme as the uwsgi parser read it from HTTPS, REQUEST_SCHEME and UWSGI_SCHEME.
        api.setItem(dict, k.urlScheme, conn.https ? schemeHTTPS : schemeHTTP)
        api.setItem(dict, k.input, input)
        func setDefault(_ key: PyBorrowed, _ value: PyBorrowed) {
            if api.item(dict, key) == nil { api.setItem(dict, key, value) }
        }
        if api.item(dict, k.scriptName) == nil {
            api.setItem(dict, k.scriptName, scriptName)
            // --mount: the prefix moves from PATH_INFO to SCRIPT_NAME, as uWSGI does.
            if !scriptNameBytes.isEmpty, let path = api.item(dict, k.pathInfo), let p = api.utf8(path),
               p.starts(with: scriptNameBytes), p.count == scriptNameBytes.count || p[scriptNameBytes.count] == UInt8(ascii: "/") {
                api.setItem(dict, k.pathInfo, api.latin1(UnsafeRawBufferPointer(rebasing: p[scriptNameBytes.count..<p.count])))
            }
        }
        setDefault(k.pathInfo, slash)
        setDefault(k.queryString, empty)
        setDefault(k.requestMethod, get)
        setDefault(k.serverProtocol, http10)
        if api.item(dict, k.serverName) == nil || api.item(dict, k.serverPort) == nil {
            let server = conn.listener.pythonStrings(api)
            setDefault(k.serverName, server.name)
            setDefault(k.serverPort, server.port)
        }
        if api.item(dict, k.remoteAddr) == nil { api.setItem(dict, k.remoteAddr, api.latin1(conn.remoteAddress)) }
        if let cl = api.item(dict, k.contentLength), let c = api.utf8(cl), c.count == 0 {
            api.setItem(dict, k.contentLength, empty)
        }
        return env
    }

    private func joinLatin1(_ a: PyBorrowed, _ sep: StaticString, _ b: borrowing PyOwned) -> PyOwned {
        var out: [UInt8] = []
        appendLatin1(a, to: &out)
        appendLiteral(sep, &out)
        appendLatin1(b.borrow, to: &out)
        return api.latin1(out)
    }

    private func appendLatin1(_ s: PyBorrowed, to out: inout [UInt8]) {
        guard let u = api.utf8(s) else { return }
        _ = utf8ToLatin1(u, into: &out)
    }

    /// PATH_INFO: the percent-decoded path below SCRIPT_NAME, as latin-1.
    private func pathInfo(_ raw: UnsafeRawBufferPointer) -> PyOwned {
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
        return api.latin1(decoded)
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
    let value: PyBorrowed
}

/// A method seen often enough to keep its str: its bytes, and the interned str.
struct KnownMethod {
    let name: [UInt8]
    let object: PyBorrowed

    init(_ api: CPythonAPI, _ name: StaticString) {
        self.name = Array(UnsafeBufferPointer(start: name.utf8Start, count: name.utf8CodeUnitCount))
        object = api.interned(name).keepForever()
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
        case 9 where equalsIgnoringCase(name, "forwarded"): return .forwarded
        case 15 where equalsIgnoringCase(name, "x-forwarded-for"): return .xForwardedFor
        case 16 where equalsIgnoringCase(name, "x-forwarded-host"): return .xForwardedHost
        case 16 where equalsIgnoringCase(name, "x-forwarded-port"): return .xForwardedPort
        case 17 where equalsIgnoringCase(name, "x-forwarded-proto"): return .xForwardedProto
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
