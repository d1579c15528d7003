// The subscription system's settings: `--subscribe-to` on an instance, and the router's
// `--subscription-server`. The wire format is in ApusProtocols/Subscription.swift.

/// A UDP address: a router's subscription server.
public enum DatagramAddress: Equatable, Hashable, Sendable, CustomStringConvertible {
    /// `host` is an IPv4 or IPv6 literal.
    case inet(host: String, port: Int)
    case unix(path: String)

    public var description: String {
        switch self {
        case let .inet(host, port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        case let .unix(path): return path
        }
    }
}

/// One `--subscribe-to`: announce `address` under `key` to the router at `server`.
public struct Subscription: Equatable, Sendable {
    public var server: DatagramAddress
    /// What the router matches the Host header against (`example.com`, `example.com:8080`).
    public var key: String
    /// The uwsgi socket announced; nil until resolved (the first `--socket`).
    public var address: String?
    public var modifier1: UInt8 = 0
    public var weight: Int = 1

    public init(server: DatagramAddress, key: String, address: String? = nil, modifier1: UInt8 = 0, weight: Int = 1) {
        self.server = server
        self.key = key
        self.address = address
        self.modifier1 = modifier1
        self.weight = weight
    }
}

/// How the router picks a node among the live ones of a key (`--subscription-algo`).
public enum RouterAlgorithm: String, Equatable, Sendable {
    /// uWSGI's `wrr`: each node in turn, a node of weight w w times in a row.
    case weightedRoundRobin = "wrr"
    /// uWSGI's `lrc`: the node with the fewest requests in flight.
    case leastConnections = "lrc"
}

/// A router's own settings (`apus router`).
public struct RouterSettings: Equatable, Sendable {
    /// `--subscription-server`: where subscription packets arrive (UDP).
    public var subscriptionServer: DatagramAddress?
    public var algorithm = RouterAlgorithm.weightedRoundRobin
    /// `--subscription-tolerance`: a node that has not announced itself for this long is dropped.
    public var tolerance = 17.0
    public init() {}
}

/// `HOST:PORT` (IPv4 literal, or `[IPV6]:PORT`) or a unix socket path starting with `/`.
func parseDatagramAddress(_ raw: Substring, _ ctx: SetContext) throws(ConfigError) -> DatagramAddress {
    if raw.hasPrefix("/") { return .unix(path: String(raw)) }
    let host: String
    let portText: Substring
    if raw.hasPrefix("[") {
        guard let close = raw.firstIndex(of: "]"), raw[raw.index(after: close)...].hasPrefix(":") else {
            throw ctx.fail("expected [IPV6]:PORT, got \(quoted(String(raw)))")
        }
        host = String(raw[raw.index(after: raw.startIndex)..<close])
        guard isIPv6Literal(host) else { throw ctx.fail("invalid IPv6 address \(quoted(host))") }
        portText = raw[raw.index(close, offsetBy: 2)...]
    } else {
        guard let colon = raw.lastIndex(of: ":") else {
            throw ctx.fail("expected HOST:PORT or a unix socket path, got \(quoted(String(raw)))")
        }
        let h = String(raw[..<colon])
        let labels = h.split(separator: ".", omittingEmptySubsequences: false)
        guard h.isEmpty || (labels.count == 4 && isHostName(h)) else {
            throw ctx.fail("expected an IPv4 address such as 127.0.0.1, got \(quoted(h)) (names are not resolved)")
        }
        host = h.isEmpty ? "127.0.0.1" : h
        portText = raw[raw.index(after: colon)...]
    }
    guard let port = parsePort(portText) else {
        throw ctx.fail("port must be between 1 and 65535, got \(quoted(String(portText)))")
    }
    return .inet(host: host, port: port)
}

/// uWSGI's `--subscribe-to` forms:
/// - `SERVER:KEY` where SERVER is `HOST:PORT`, `[IPV6]:PORT` or a unix path (`/run/r.sock:KEY`);
///   the key is everything after the server's port, colons included (`127.0.0.1:7000:example.com:8080`);
/// - `ADDRESS=SERVER:KEY`: announce ADDRESS instead of the first `--socket`;
/// - `SERVER:KEY,MODIFIER1`: ask the router for that modifier1 in requests;
/// - the key=value form of uWSGI's `--subscribe2`: `server=SERVER,key=KEY[,addr=ADDRESS][,weight=N][,modifier1=N]`.
func parseSubscription(_ raw: String, _ ctx: SetContext) throws(ConfigError) -> Subscription {
    if raw.hasPrefix("server=") || raw.hasPrefix("key=") || raw.hasPrefix("addr=") {
        return try parseKeyValueSubscription(raw, ctx)
    }
    var rest = raw[...]
    var address: String?
    if let eq = rest.firstIndex(of: "=") {
        address = String(rest[..<eq])
        rest = rest[rest.index(after: eq)...]
    }
    let keyColon: Substring.Index?
    if rest.hasPrefix("/") {
        keyColon = rest.firstIndex(of: ":")
    } else if rest.hasPrefix("["), let close = rest.firstIndex(of: "]") {
        let afterPort = rest[rest.index(after: close)...].dropFirst()
        keyColon = afterPort.firstIndex(of: ":")
    } else if let portColon = rest.firstIndex(of: ":") {
        keyColon = rest[rest.index(after: portColon)...].firstIndex(of: ":")
    } else {
        keyColon = nil
    }
    guard let keyColon else {
        throw ctx.fail("expected ROUTER_HOST:PORT:KEY (or ADDRESS=ROUTER_HOST:PORT:KEY), got \(quoted(raw))")
    }
    let server = try parseDatagramAddress(rest[..<keyColon], ctx)
    var key = rest[rest.index(after: keyColon)...]
    var modifier1: UInt8 = 0
    if let comma = key.firstIndex(of: ",") {
        let extra = key[key.index(after: comma)...]
        guard !extra.contains(","), let m = UInt8(extra) else {
            throw ctx.fail("expected KEY or KEY,MODIFIER1 (signed subscriptions are not supported), got \(quoted(String(key)))")
        }
        modifier1 = m
        key = key[..<comma]
    }
    return try validated(Subscription(server: server, key: String(key), address: address, modifier1: modifier1), ctx)
}

private func parseKeyValueSubscription(_ raw: String, _ ctx: SetContext) throws(ConfigError) -> Subscription {
    var server: DatagramAddress?
    var key: String?
    var address: String?
    var weight = 1
    var modifier1: UInt8 = 0
    for item in raw.split(separator: ",") {
        guard let eq = item.firstIndex(of: "=") else { throw ctx.fail("expected NAME=VALUE, got \(quoted(String(item)))") }
        let name = item[..<eq]
        let value = item[item.index(after: eq)...]
        switch name {
        case "server": server = try parseDatagramAddress(value, ctx)
        case "key": key = String(value)
        case "addr": address = String(value)
        case "weight":
            guard let w = Int(value), (1...1_000_000).contains(w) else { throw ctx.fail("weight must be between 1 and 1000000, got \(quoted(String(value)))") }
            weight = w
        case "modifier1":
            guard let m = UInt8(value) else { throw ctx.fail("modifier1 must be between 0 and 255, got \(quoted(String(value)))") }
            modifier1 = m
        default:
            throw ctx.fail("\(quoted(String(name))) is not supported (server, key, addr, weight, modifier1)")
        }
    }
    guard let server, let key else { throw ctx.fail("server= and key= are required, got \(quoted(raw))") }
    return try validated(Subscription(server: server, key: key, address: address, modifier1: modifier1, weight: weight), ctx)
}

private func validated(_ s: Subscription, _ ctx: SetContext) throws(ConfigError) -> Subscription {
    func visible(_ text: String) -> Bool {
        !text.isEmpty && text.utf8.count <= 255 && text.utf8.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }
    }
    guard visible(s.key) else { throw ctx.fail("the key must be 1 to 255 visible ASCII characters, got \(quoted(s.key))") }
    if let a = s.address, !visible(a) { throw ctx.fail("the address must be 1 to 255 visible ASCII characters, got \(quoted(a))") }
    return s
}

/// What an instance announces for its uwsgi bind: `HOST:PORT`, `[IPV6]:PORT` or a unix path.
func announcedAddress(of bind: Bind) -> String? {
    switch bind.address {
    case let .tcp(host, port):
        let h = host.isEmpty ? "127.0.0.1" : host
        return h.contains(":") ? "[\(h)]:\(port)" : "\(h):\(port)"
    case let .unix(path): return path
    case .fd: return nil
    }
}
