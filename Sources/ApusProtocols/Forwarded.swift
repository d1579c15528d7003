// Which peers may tell us who the client is (`--forwarded-allow-ips`), and
// the rules that turn `Forwarded` (RFC 7239) or the X-Forwarded-* family
// into REMOTE_ADDR, wsgi.url_scheme, the host and the port. Pure rules: the
// worker applies the result to the environ.

// MARK: trusted proxies

/// A `--forwarded-allow-ips` item that could not be understood.
public struct TrustedProxiesError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The offending item, trimmed.
    public var item: String
    /// Why it was refused.
    public var reason: String

    public init(item: String, reason: String) {
        self.item = item
        self.reason = reason
    }

    /// One line: `forwarded-allow-ips item "10.0.0.1/8": host bits set (use 10.0.0.0/8)`.
    public var description: String { "forwarded-allow-ips item \"\(item)\": \(reason)" }
}

/// The set of peers whose forwarding headers are believed.
public struct TrustedProxies: Sendable, Equatable {
    enum Rule: Sendable, Equatable {
        case everyone
        case unixPeers
        /// network bytes (host bits zero) and prefix length
        case v4([UInt8], Int)
        case v6([UInt8], Int)
    }

    let rules: [Rule]

    init(rules: [Rule]) { self.rules = rules }

    /// Parses `--forwarded-allow-ips`: a comma list of
    /// - IPv4 or IPv6 addresses (`127.0.0.1`, `::1`);
    /// - CIDR networks (`10.0.0.0/8`, `fd00::/8`, `0.0.0.0/0`); host bits
    ///   must be zero (`10.0.0.1/8` is refused as a likely mistake);
    /// - `*`: every peer, unix-socket peers included;
    /// - `unix`: peers on unix sockets (REMOTE_ADDR "").
    /// Whitespace around items is allowed; an empty or blank spec trusts
    /// nobody, but an empty item inside a list is an error. IPv6 rules inside
    /// `::ffff:0:0/96` are turned into the IPv4 rules they mean.
    /// Throws a one-line reason naming the bad item.
    public init(parsing spec: String) throws(TrustedProxiesError) {
        var rules: [Rule] = []
        let bytes = Array(spec.utf8)
        if bytes.allSatisfy({ isOWS($0) || $0 == cr || $0 == lf }) {
            self.rules = []
            return
        }
        for rawItem in bytes.split(separator: comma, omittingEmptySubsequences: false) {
            var lo = rawItem.startIndex
            var hi = rawItem.endIndex
            func blank(_ b: UInt8) -> Bool { isOWS(b) || b == cr || b == lf }
            while lo < hi && blank(rawItem[lo]) { lo += 1 }
            while hi > lo && blank(rawItem[hi - 1]) { hi -= 1 }
            let item = Array(rawItem[lo..<hi])
            let itemText = String(decoding: item, as: UTF8.self)
            func fail(_ reason: String) -> TrustedProxiesError { TrustedProxiesError(item: itemText, reason: reason) }
            if item.isEmpty { throw fail("empty item") }
            if item == [0x2A] { rules.append(.everyone); continue }
            if item.withUnsafeBytes({ equalsIgnoringCase($0, "unix") }) { rules.append(.unixPeers); continue }

            let slash = item.firstIndex(of: 0x2F)
            let addressPart = Array(item[..<(slash ?? item.count)])
            let isV6 = addressPart.contains(colon)
            let parsed: [UInt8]? = addressPart.withUnsafeBytes { buf in
                isV6 ? parseIPv6(buf, 0..<buf.count) : parseIPv4(buf, 0..<buf.count)
            }
            guard var address = parsed else {
                throw fail(isV6 ? "not a valid IPv6 address or network" : "not a valid IP address, network, \"*\" or \"unix\"")
            }
            var prefix: Int? = nil
            if let slash {
                let digits = item[(slash + 1)...]
                guard !digits.isEmpty, digits.count <= 3, digits.allSatisfy(isDigit) else {
                    throw fail("invalid prefix length")
                }
                prefix = digits.reduce(0) { $0 * 10 + Int($1 - 0x30) }
            }
            let bits = address.count * 8
            let length = prefix ?? bits
            if length > bits { throw fail("prefix length over \(bits)") }
            let masked = maskAddress(address, length)
            if masked != address {
                let suggestion = formatIPAddress(isV6 ? .ipv6(masked) : .ipv4(masked))
                throw fail("host bits set (use \(suggestion)/\(length))")
            }
            address = masked
            if isV6 && length >= 96, let v4 = mappedIPv4(address) {
                rules.append(.v4(v4, length - 96))
            } else {
                rules.append(isV6 ? .v6(address, length) : .v4(address, length))
            }
        }
        self.rules = rules
    }

    /// Whether `address` (REMOTE_ADDR text: "127.0.0.1", "::1", "" for a
    /// unix-socket peer) is a trusted proxy. IPv4-mapped IPv6 addresses
    /// (`::ffff:1.2.3.4`) are matched against the IPv4 rules; an IPv6 zone
    /// (`fe80::1%eth0`) is ignored. Text that is not an address is trusted
    /// only under `*`.
    public func trusts(_ address: String) -> Bool {
        var text = address
        return text.withUTF8 { trusts(UnsafeRawBufferPointer($0)) }
    }

    /// `address` as text ("10.1.2.3", "::1", "fe80::1%eth0"; empty for a unix-socket peer),
    /// as bytes: this runs for every connection.
    public func trusts(_ address: UnsafeRawBufferPointer) -> Bool {
        if rules.contains(.everyone) { return true }
        if address.isEmpty { return rules.contains(.unixPeers) }
        guard let parsed = parseIPAddress(address, zoned: true) else { return false }
        var v4: [UInt8]? = nil
        var v6: [UInt8]? = nil
        switch parsed {
        case .ipv4(let b): v4 = b
        case .ipv6(let b): if let m = mappedIPv4(b) { v4 = m } else { v6 = b }
        case .unix: return false
        }
        for rule in rules {
            switch rule {
            case .v4(let net, let len): if let v4, maskAddress(v4, len) == net { return true }
            case .v6(let net, let len): if let v6, maskAddress(v6, len) == net { return true }
            case .everyone, .unixPeers: break
            }
        }
        return false
    }

    /// `127.0.0.1,::1`: the local host only.
    public static let `default` = TrustedProxies(rules: [.v4([127, 0, 0, 1], 32), .v6([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 128)])

    /// Trusts nobody.
    public static let none = TrustedProxies(rules: [])
}

/// `address` with every bit after the first `prefix` cleared.
func maskAddress(_ address: [UInt8], _ prefix: Int) -> [UInt8] {
    var out = address
    for k in 0..<out.count {
        let keep = prefix - k * 8
        if keep >= 8 { continue }
        out[k] = keep <= 0 ? 0 : out[k] & UInt8(truncatingIfNeeded: 0xFF << (8 - keep))
    }
    return out
}

// MARK: forwarded headers

/// What the worker read from the connection and the request.
public struct ForwardedInput: Sendable, Equatable {
    /// REMOTE_ADDR of the direct peer ("" for a unix-socket peer).
    public var peer: String
    /// Every X-Forwarded-For field value, in order (each may be a comma list).
    public var xForwardedFor: [String]
    /// X-Forwarded-Proto (several fields joined with commas).
    public var xForwardedProto: String?
    /// X-Forwarded-Host (several fields joined with commas).
    public var xForwardedHost: String?
    /// X-Forwarded-Port (several fields joined with commas).
    public var xForwardedPort: String?
    /// Every Forwarded field value, in order.
    public var forwarded: [String]

    public init(peer: String, xForwardedFor: [String] = [], xForwardedProto: String? = nil,
                xForwardedHost: String? = nil, xForwardedPort: String? = nil, forwarded: [String] = []) {
        self.peer = peer
        self.xForwardedFor = xForwardedFor
        self.xForwardedProto = xForwardedProto
        self.xForwardedHost = xForwardedHost
        self.xForwardedPort = xForwardedPort
        self.forwarded = forwarded
    }
}

/// What the worker should put in the environ. nil fields: keep what the
/// connection and the request say.
public struct ForwardedResult: Sendable, Equatable {
    /// REMOTE_ADDR: an address in canonical text form (RFC 5952 for IPv6),
    /// the peer unchanged, or an RFC 7239 identifier (`unknown`, `_hidden`).
    public var remoteAddr: String
    /// REMOTE_PORT, when the chosen hop carried a numeric port.
    public var remotePort: String?
    /// wsgi.url_scheme: "http" or "https".
    public var scheme: String?
    /// The original Host (may include ":port"); for HTTP_HOST and SERVER_NAME.
    public var host: String?
    /// SERVER_PORT, from X-Forwarded-Port (decimal, no leading zeros).
    public var port: String?

    public init(remoteAddr: String, remotePort: String? = nil, scheme: String? = nil, host: String? = nil, port: String? = nil) {
        self.remoteAddr = remoteAddr
        self.remotePort = remotePort
        self.scheme = scheme
        self.host = host
        self.port = port
    }
}

/// Applies the forwarding headers, Gunicorn-like but walking the hops:
///
/// 1. Nothing is taken unless the direct peer is trusted: the result is then
///    the peer, with no port, scheme, host or port.
/// 2. If any `Forwarded` field has content, it wins and the X-Forwarded-*
///    fields are ignored. The elements of all fields are read in order
///    (comma-separated, each a `;` list of `name=value` pairs, values a token
///    or a quoted-string with `\` escapes; as a leniency unquoted values may
///    also hold `:`, `[` and `]`). The hops are walked from the right: each
///    `for` that is a trusted address is a proxy and the walk goes on; the
///    first `for` that is not trusted is the client and the walk stops. An
///    obfuscated (`_hidden`) or `unknown` node is never trusted: it is the
///    client, and REMOTE_ADDR is that identifier. If every hop is trusted,
///    the left-most is the client. `proto` and `host` come from the client's
///    element or, failing that, the nearest element to its right that has
///    them (those were all written by trusted proxies); `proto` other than
///    http/https and hosts with characters outside a host name are ignored.
///    A malformed element (bad syntax, a parameter given twice, a `for` that
///    is not a node) or one without `for` stops the walk: the client is then
///    the last hop verified so far (the peer if it is the right-most
///    element), and a malformed element contributes nothing, while one
///    without `for` may still give `proto` and `host`.
/// 3. Otherwise X-Forwarded-For (all fields joined into one comma list) is
///    walked the same way; its items are IPv4, IPv6, `[IPv6]`, and either
///    with `:port`; anything else stops the walk. X-Forwarded-Proto gives the
///    scheme if its right-most item is http or https, X-Forwarded-Host the
///    host (right-most item, host characters only), X-Forwarded-Port the port
///    (right-most item, 1-5 digits, at most 65535).
///
/// Malformed input never traps and never lets an untrusted peer set anything.
public func resolveForwarded(_ input: ForwardedInput, trusted: TrustedProxies) -> ForwardedResult {
    var result = ForwardedResult(remoteAddr: input.peer)
    guard trusted.trusts(input.peer) else { return result }

    let forwardedValues = input.forwarded.map { Array($0.utf8) }.filter { !$0.allSatisfy(isOWS) }
    if !forwardedValues.isEmpty {
        var elements: [ForwardedElement?] = []
        for v in forwardedValues { parseForwardedField(v, into: &elements) }
        var start = elements.count
        var i = elements.count - 1
        while i >= 0 {
            guard let e = elements[i] else { break }
            start = i
            guard let node = e.node else { break }
            result.remoteAddr = node.text
            result.remotePort = node.port
            if !node.isAddress || !trusted.trusts(node.text) { break }
            i -= 1
        }
        var k = start
        while k < elements.count {
            if let e = elements[k] {
                if result.scheme == nil { result.scheme = e.proto }
                if result.host == nil { result.host = e.host }
            }
            k += 1
        }
        return result
    }

    // X-Forwarded-For
    var items: [[UInt8]] = []
    for v in input.xForwardedFor {
        let b = Array(v.utf8)
        if b.allSatisfy(isOWS) { continue }
        for piece in b.split(separator: comma, omittingEmptySubsequences: false) { items.append(trimmed(piece)) }
    }
    var i = items.count - 1
    while i >= 0 {
        guard let node = parseNode(items[i], allowIdentifiers: false) else { break }
        result.remoteAddr = node.text
        result.remotePort = node.port
        if !trusted.trusts(node.text) { break }
        i -= 1
    }
    if let p = input.xForwardedProto.flatMap(lastItem) { result.scheme = httpScheme(p) }
    if let h = input.xForwardedHost.flatMap(lastItem), isValidHost(h) { result.host = String(decoding: h, as: UTF8.self) }
    if let p = input.xForwardedPort.flatMap(lastItem), p.count >= 1, p.count <= 5, p.allSatisfy(isDigit) {
        let value = p.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        if value <= 65535 { result.port = String(value) }
    }
    return result
}

// MARK: helpers

struct ForwardedNode: Equatable {
    /// canonical address text, or the identifier (`unknown`, `_hidden`)
    var text: String
    var port: String?
    var isAddress: Bool
}

struct ForwardedElement: Equatable {
    var node: ForwardedNode?
    var proto: String?
    var host: String?
}

private let quote: UInt8 = 0x22
private let backslash: UInt8 = 0x5C
private let semicolon: UInt8 = 0x3B
private let equals: UInt8 = 0x3D

private func trimmed(_ c: ArraySlice<UInt8>) -> [UInt8] {
    var lo = c.startIndex
    var hi = c.endIndex
    while lo < hi && isOWS(c[lo]) { lo += 1 }
    while hi > lo && isOWS(c[hi - 1]) { hi -= 1 }
    return Array(c[lo..<hi])
}

/// The right-most item of a comma list, trimmed; nil if empty.
private func lastItem(_ s: String) -> [UInt8]? {
    let b = Array(s.utf8)
    let start = (b.lastIndex(of: comma).map { $0 + 1 }) ?? 0
    let item = trimmed(b[start...])
    return item.isEmpty ? nil : item
}

private func httpScheme(_ b: [UInt8]) -> String? {
    b.withUnsafeBytes { v in
        if equalsIgnoringCase(v, "https") { return "https" }
        if equalsIgnoringCase(v, "http") { return "http" }
        return nil
    }
}

/// Host name, IPv4, `[IPv6]`, each with an optional `:port`: letters,
/// digits and `-._~%!$&'()*+=:[]` only, 1-261 bytes.
func isValidHost(_ b: [UInt8]) -> Bool {
    if b.isEmpty || b.count > 261 { return false }
    for c in b {
        let l = c | 0x20
        if (l >= 0x61 && l <= 0x7A) || isDigit(c) { continue }
        switch c {
        case 0x2D, 0x2E, 0x5F, 0x7E, 0x25, 0x21, 0x24, 0x26, 0x27, 0x28, 0x29, 0x2A, 0x2B, 0x3D, 0x3A, 0x5B, 0x5D: continue
        default: return false
        }
    }
    return true
}

private func isObfuscatedChar(_ c: UInt8) -> Bool {
    let l = c | 0x20
    return (l >= 0x61 && l <= 0x7A) || isDigit(c) || c == dot || c == 0x5F || c == 0x2D
}

/// A port: 1-5 digits up to 65535 gives its text; an obfuscated port
/// (`_abc`) is accepted and gives nil. Anything else: `valid` false.
private func parsePort(_ b: ArraySlice<UInt8>) -> (valid: Bool, port: String?) {
    if b.first == 0x5F { return (b.count > 1 && b.allSatisfy(isObfuscatedChar), nil) }
    guard b.count >= 1, b.count <= 5, b.allSatisfy(isDigit) else { return (false, nil) }
    let value = b.reduce(0) { $0 * 10 + Int($1 - 0x30) }
    return value <= 65535 ? (true, String(value)) : (false, nil)
}

/// A node: IPv4, `[IPv6]` or (leniently) a bare IPv6, with an optional
/// `:port`; with `allowIdentifiers`, also `unknown` and `_obfuscated`.
func parseNode(_ b: [UInt8], allowIdentifiers: Bool) -> ForwardedNode? {
    if b.isEmpty { return nil }
    func address(_ a: ArraySlice<UInt8>, v6: Bool) -> String? {
        let bytes = Array(a)
        return bytes.withUnsafeBytes { buf -> String? in
            if v6 { return parseIPv6(buf, 0..<buf.count).map { formatIPAddress(.ipv6($0)) } }
            return parseIPv4(buf, 0..<buf.count).map { formatIPAddress(.ipv4($0)) }
        }
    }
    if b[0] == 0x5B {  // '['
        guard let close = b.firstIndex(of: 0x5D), let text = address(b[1..<close], v6: true) else { return nil }
        var port: String? = nil
        if close + 1 < b.count {
            guard b[close + 1] == colon else { return nil }
            let p = parsePort(b[(close + 2)...])
            guard p.valid else { return nil }
            port = p.port
        }
        return ForwardedNode(text: text, port: port, isAddress: true)
    }
    let colons = b.lazy.filter { $0 == colon }.count
    if colons >= 2 {
        guard let text = address(b[...], v6: true) else { return nil }
        return ForwardedNode(text: text, port: nil, isAddress: true)
    }
    let nameEnd = b.firstIndex(of: colon) ?? b.count
    let name = b[..<nameEnd]
    var port: String? = nil
    if nameEnd < b.count {
        let p = parsePort(b[(nameEnd + 1)...])
        guard p.valid else { return nil }
        port = p.port
    }
    if let text = address(name, v6: false) { return ForwardedNode(text: text, port: port, isAddress: true) }
    guard allowIdentifiers else { return nil }
    if name.withUnsafeBytes({ equalsIgnoringCase($0, "unknown") }) {
        return ForwardedNode(text: "unknown", port: port, isAddress: false)
    }
    if name.first == 0x5F && name.count > 1 && name.allSatisfy(isObfuscatedChar) {
        return ForwardedNode(text: String(decoding: name, as: UTF8.self), port: port, isAddress: false)
    }
    return nil
}

/// Splits `b` at `separator` bytes outside quoted-strings (a backslash
/// inside quotes escapes the next byte). An unterminated quote runs to the end.
private func splitOutsideQuotes(_ b: ArraySlice<UInt8>, _ separator: UInt8) -> [ArraySlice<UInt8>] {
    var parts: [ArraySlice<UInt8>] = []
    var start = b.startIndex
    var i = b.startIndex
    var inQuote = false
    while i < b.endIndex {
        let c = b[i]
        if inQuote {
            if c == backslash { i += 1 } else if c == quote { inQuote = false }
        } else if c == quote {
            inQuote = true
        } else if c == separator {
            parts.append(b[start..<i])
            start = i + 1
        }
        i += 1
    }
    parts.append(b[start..<b.endIndex])
    return parts
}

/// A pair value: a token (plus `:[]`, leniently) or a whole quoted-string,
/// decoded. nil if malformed.
private func parseValue(_ v: ArraySlice<UInt8>) -> [UInt8]? {
    guard let first = v.first else { return nil }
    if first != quote {
        for c in v where !(isTchar(c) || c == colon || c == 0x5B || c == 0x5D) { return nil }
        return Array(v)
    }
    var out: [UInt8] = []
    var i = v.startIndex + 1
    while i < v.endIndex {
        let c = v[i]
        if c == quote { return i == v.endIndex - 1 ? out : nil }
        if c == backslash {
            i += 1
            guard i < v.endIndex else { return nil }
            let e = v[i]
            guard e == ht || e >= sp, e != del else { return nil }
            out.append(e)
        } else {
            guard c == ht || c >= sp, c != del else { return nil }
            out.append(c)
        }
        i += 1
    }
    return nil  // no closing quote
}

/// Appends the elements of one Forwarded field value; nil for a malformed
/// element. Empty list elements are skipped.
func parseForwardedField(_ b: [UInt8], into elements: inout [ForwardedElement?]) {
    for raw in splitOutsideQuotes(b[...], comma) {
        let element = trimmed(raw)
        if element.isEmpty { continue }
        elements.append(parseForwardedElement(element))
    }
}

private func parseForwardedElement(_ b: [UInt8]) -> ForwardedElement? {
    var e = ForwardedElement()
    var seen: Set<[UInt8]> = []
    for raw in splitOutsideQuotes(b[...], semicolon) {
        let pair = trimmed(raw)
        if pair.isEmpty { continue }
        guard let eq = pair.firstIndex(of: equals), eq > 0 else { return nil }
        let name = pair[..<eq].map(asciiLower)
        guard name.allSatisfy(isTchar), seen.insert(name).inserted else { return nil }
        guard let value = parseValue(pair[(eq + 1)...]) else { return nil }
        switch String(decoding: name, as: UTF8.self) {
        case "for":
            guard let node = parseNode(value, allowIdentifiers: true) else { return nil }
            e.node = node
        case "proto":
            e.proto = httpScheme(value)
        case "host":
            if isValidHost(value) { e.host = String(decoding: value, as: UTF8.self) }
        default:
            break  // "by" and extensions: syntax checked, content unused
        }
    }
    return e
}
