// Where `apus top` reads stats from: a stats server in uWSGI's plain mode (connect, read one
// document until the server closes) over TCP or a unix socket, or one that speaks HTTP
// (`--stats-http`, given as http://HOST:PORT/PATH).

public enum StatsAddress: Equatable, Sendable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)
    case http(host: String, port: Int, path: String)

    /// HOST:PORT, :PORT (127.0.0.1), [IPV6]:PORT, unix:PATH, a path with a '/',
    /// http://HOST:PORT[/PATH]. nil for anything else.
    public init?(_ text: String) {
        if text.hasPrefix("unix:") {
            let path = String(text.dropFirst(5))
            guard !path.isEmpty else { return nil }
            self = .unix(path: path)
        } else if text.hasPrefix("http://") {
            let rest = text.dropFirst(7)
            let authority = rest.prefix { $0 != "/" }
            let path = rest.dropFirst(authority.count)
            guard !authority.isEmpty, let (host, port) = StatsAddress.hostPort(authority, defaultPort: 80) else { return nil }
            self = .http(host: host, port: port, path: path.isEmpty ? "/" : String(path))
        } else if text.contains("/") {
            self = .unix(path: text)
        } else {
            guard let (host, port) = StatsAddress.hostPort(Substring(text), defaultPort: nil) else { return nil }
            self = .tcp(host: host, port: port)
        }
    }

    /// "HOST:PORT" or "[V6]:PORT" (the port may be left out when there is a default);
    /// an empty host is 127.0.0.1.
    static func hostPort(_ s: Substring, defaultPort: Int?) -> (String, Int)? {
        var host: Substring
        var port: Substring?
        if s.hasPrefix("[") {
            guard let close = s.firstIndex(of: "]") else { return nil }
            host = s[s.index(after: s.startIndex)..<close]
            let after = s[s.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return nil }
                port = after.dropFirst()
            }
        } else if let colon = s.lastIndex(of: ":") {
            host = s[..<colon]
            port = s[s.index(after: colon)...]
            if host.contains(":") { return nil }
        } else {
            host = s
        }
        let number: Int
        if let port {
            guard !port.isEmpty, port.allSatisfy({ $0.isASCII && $0.isNumber }), let p = Int(port), p > 0, p < 65536 else { return nil }
            number = p
        } else {
            guard let defaultPort else { return nil }
            number = defaultPort
        }
        if host.isEmpty { host = "127.0.0.1" }
        guard !host.contains(where: { $0 == " " || $0 == "/" || $0 == "@" }) else { return nil }
        return (String(host), number)
    }

    public var description: String {
        switch self {
        case let .tcp(host, port): return (host.contains(":") ? "[\(host)]" : host) + ":\(port)"
        case let .unix(path): return "unix:\(path)"
        case let .http(host, port, path): return "http://" + (host.contains(":") ? "[\(host)]" : host) + ":\(port)\(path)"
        }
    }
}
