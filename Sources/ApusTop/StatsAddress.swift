// Where `apus top` reads stats from: a stats server in uWSGI's plain mode (connect, read one
// document until the server closes) over TCP or a unix socket, or one that speaks HTTP
// (`--stats-http`, given as http://HOST:PORT/PATH).

public enum StatsAddress: Equatable, Sendable, CustomStringConvertible {
    case tcp(host: String, port: Int)
    case unix(path: String)
    case http(host: String, port: Int, path: String)

    /// HOST:PORT, :PORT (127.0.0.1), [IPV6]:PORT, unix:PATH, a path with a '/',
    /// http://HOST:PORT[/PATH]. nil for anything else. Read as bytes, not characters: a
    /// combining mark after ':' or '[' must not change how the text splits.
    public init?(_ text: String) {
        let bytes = Array(text.utf8)
        guard !bytes.isEmpty, !bytes.contains(0) else { return nil }
        let unix = Array("unix:".utf8), http = Array("http://".utf8)
        if bytes.starts(with: unix) {
            guard bytes.count > unix.count else { return nil }
            self = .unix(path: String(decoding: bytes[unix.count...], as: UTF8.self))
        } else if bytes.starts(with: http) {
            let rest = bytes[http.count...]
            let slash = rest.firstIndex(of: UInt8(ascii: "/")) ?? rest.endIndex
            let authority = rest[..<slash]
            guard !authority.isEmpty, let (host, port) = StatsAddress.hostPort(authority, defaultPort: 80) else { return nil }
            self = .http(host: host, port: port, path: slash == rest.endIndex ? "/" : String(decoding: rest[slash...], as: UTF8.self))
        } else if bytes.contains(UInt8(ascii: "/")) {
            self = .unix(path: text)
        } else {
            guard let (host, port) = StatsAddress.hostPort(bytes[...], defaultPort: nil) else { return nil }
            self = .tcp(host: host, port: port)
        }
    }

    /// "HOST:PORT" or "[V6]:PORT" (the port may be left out when there is a default);
    /// an empty host is 127.0.0.1. The host is visible ASCII (a name or an address).
    static func hostPort(_ s: ArraySlice<UInt8>, defaultPort: Int?) -> (String, Int)? {
        var host: ArraySlice<UInt8>
        var port: ArraySlice<UInt8>?
        if s.first == UInt8(ascii: "[") {
            guard let close = s.firstIndex(of: UInt8(ascii: "]")) else { return nil }
            host = s[(s.startIndex + 1)..<close]
            let after = s[(close + 1)...]
            if !after.isEmpty {
                guard after.first == UInt8(ascii: ":") else { return nil }
                port = after.dropFirst()
            }
        } else if let colon = s.lastIndex(of: UInt8(ascii: ":")) {
            host = s[..<colon]
            port = s[(colon + 1)...]
            if host.contains(UInt8(ascii: ":")) { return nil }
        } else {
            host = s
        }
        let number: Int
        if let port {
            guard !port.isEmpty, port.count <= 5, port.allSatisfy({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }),
                  let p = Int(String(decoding: port, as: UTF8.self)), p > 0, p < 65536 else { return nil }
            number = p
        } else {
            guard let defaultPort else { return nil }
            number = defaultPort
        }
        guard host.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != UInt8(ascii: "/") && $0 != UInt8(ascii: "@")
                                 && $0 != UInt8(ascii: "[") && $0 != UInt8(ascii: "]") }) else { return nil }
        return (host.isEmpty ? "127.0.0.1" : String(decoding: host, as: UTF8.self), number)
    }

    public var description: String {
        switch self {
        case let .tcp(host, port): return (host.contains(":") ? "[\(host)]" : host) + ":\(port)"
        case let .unix(path): return "unix:\(path)"
        case let .http(host, port, path): return "http://" + (host.contains(":") ? "[\(host)]" : host) + ":\(port)\(path)"
        }
    }
}
