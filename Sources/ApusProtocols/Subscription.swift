// uWSGI's subscription packets: how an instance announces itself to a router over UDP.
// The format, as uWSGI's core/subscription.c writes it and its corerouter reads it:
//
//     modifier1 = 224 (u8)  datasize (u16 LE)  modifier2 (u8): 0 subscribe, 1 unsubscribe
//     datasize bytes of vars, as in a uwsgi request: { key_size (u16 LE) key  val_size (u16 LE) value }*
//
// The vars an instance sends, in this order: `key` (what the router matches the Host
// header against, e.g. `example.com` or `example.com:8080`), `address` (the instance's
// uwsgi socket, `HOST:PORT` or a unix path), then `modifier1`, `modifier2`, `cores`,
// `load` and `weight` as decimal text. uWSGI may add `notify`, `sni_key`, `sni_crt`,
// `sni_ca`, `unix` and `sign` (signed subscriptions); a reader here ignores those.
//
// The reader is stricter than uWSGI's, which takes any modifier1, reads the vars leniently
// and treats any non-zero modifier2 as an unsubscribe: every byte of a packet comes from
// whoever can reach the router's UDP port, so anything malformed is refused as a whole.

/// One subscription packet, as values.
public struct SubscriptionPacket: Sendable, Equatable {
    public enum Command: UInt8, Sendable {
        case subscribe = 0
        case unsubscribe = 1
    }

    /// The uwsgi header's modifier1 of every subscription packet.
    public static let modifier1: UInt8 = 224
    /// Longest key and address uWSGI's router accepts.
    public static let maxKeyBytes = 255
    public static let maxAddressBytes = 255
    /// Largest packet a router reads (uWSGI reads 4096 bytes).
    public static let maxPacketBytes = 4096

    public var command: Command
    /// Matched, byte for byte, against the request's Host header.
    public var key: [UInt8]
    /// Where the instance serves the uwsgi protocol: `HOST:PORT`, `[IPV6]:PORT` or a unix path.
    public var address: [UInt8]
    /// The modifier1 and modifier2 the router should send in requests to this node.
    public var requestModifier1: UInt8
    public var requestModifier2: UInt8
    public var cores: Int
    public var load: Int
    /// At least 1 (a packet's 0 or missing weight reads as 1, as in uWSGI).
    public var weight: Int

    public init(command: Command, key: [UInt8], address: [UInt8], requestModifier1: UInt8 = 0,
                requestModifier2: UInt8 = 0, cores: Int = 0, load: Int = 0, weight: Int = 1) {
        self.command = command
        self.key = key
        self.address = address
        self.requestModifier1 = requestModifier1
        self.requestModifier2 = requestModifier2
        self.cores = cores
        self.load = load
        self.weight = weight
    }

    /// The packet's bytes. Traps on a key or an address over 255 bytes (callers validate them).
    public func encode() -> [UInt8] {
        precondition((1...Self.maxKeyBytes).contains(key.count), "subscription key of \(key.count) bytes")
        precondition((1...Self.maxAddressBytes).contains(address.count), "subscription address of \(address.count) bytes")
        func number(_ n: Int) -> [UInt8] {
            var out: [UInt8] = []
            appendDecimal(max(0, n), to: &out)
            return out
        }
        var packet = encodeUWSGIPacket(rawVars: [
            (Array("key".utf8), key),
            (Array("address".utf8), address),
            (Array("modifier1".utf8), number(Int(requestModifier1))),
            (Array("modifier2".utf8), number(Int(requestModifier2))),
            (Array("cores".utf8), number(cores)),
            (Array("load".utf8), number(load)),
            (Array("weight".utf8), number(weight)),
        ], modifier1: Self.modifier1)
        packet[3] = command.rawValue
        return packet
    }
}

/// Why a subscription packet was refused.
public enum SubscriptionPacketError: Error, Sendable, Equatable {
    /// Fewer than 4 bytes, or more than `maxPacketBytes`.
    case badSize
    /// modifier1 is not 224.
    case notASubscription(UInt8)
    /// modifier2 is neither 0 (subscribe) nor 1 (unsubscribe).
    case badCommand(UInt8)
    /// The header's datasize does not match the bytes that follow it.
    case badDatasize
    /// A var runs past the end of the packet, or has an empty name.
    case malformedVars
    /// `key` or `address` is missing, empty, too long, repeated, or has a byte outside
    /// visible ASCII (0x21-0x7E).
    case badKey
    case badAddress
    /// A numeric var (modifier1, modifier2, cores, load, weight) is not decimal digits in range.
    case badNumber

    public var logDescription: String {
        switch self {
        case .badSize: return "packet size out of range"
        case .notASubscription(let m): return "modifier1 \(m) is not a subscription (224)"
        case .badCommand(let c): return "modifier2 \(c) is neither subscribe (0) nor unsubscribe (1)"
        case .badDatasize: return "datasize does not match the packet"
        case .malformedVars: return "malformed vars"
        case .badKey: return "missing or invalid key"
        case .badAddress: return "missing or invalid address"
        case .badNumber: return "invalid number"
        }
    }
}

extension SubscriptionPacket {
    /// Parses one datagram. Never traps on any input.
    public static func parse(_ bytes: UnsafeRawBufferPointer) -> Result<SubscriptionPacket, SubscriptionPacketError> {
        let n = bytes.count
        guard n >= 4, n <= maxPacketBytes else { return .failure(.badSize) }
        guard bytes[0] == modifier1 else { return .failure(.notASubscription(bytes[0])) }
        guard let command = Command(rawValue: bytes[3]) else { return .failure(.badCommand(bytes[3])) }
        let datasize = Int(bytes[1]) | (Int(bytes[2]) << 8)
        guard datasize == n - 4 else { return .failure(.badDatasize) }

        var key: Range<Int>?
        var address: Range<Int>?
        var numbers: [Int] = [0, 0, 0, 0, 0]   // modifier1, modifier2, cores, load, weight
        var seen = 0                            // bit i: numbers[i] given
        var p = 4
        while p < n {
            guard n - p >= 2 else { return .failure(.malformedVars) }
            let keySize = Int(bytes[p]) | (Int(bytes[p + 1]) << 8)
            let keyStart = p + 2
            let keyEnd = keyStart + keySize
            guard keySize > 0, keyEnd + 2 <= n else { return .failure(.malformedVars) }
            let valueSize = Int(bytes[keyEnd]) | (Int(bytes[keyEnd + 1]) << 8)
            let valueStart = keyEnd + 2
            let valueEnd = valueStart + valueSize
            guard valueEnd <= n else { return .failure(.malformedVars) }
            let name = keyStart..<keyEnd
            let value = valueStart..<valueEnd
            p = valueEnd

            if equalsExactly(bytes, name, "key") {
                guard key == nil, isVisibleASCII(bytes, value, max: maxKeyBytes) else { return .failure(.badKey) }
                key = value
                continue
            }
            if equalsExactly(bytes, name, "address") {
                guard address == nil, isVisibleASCII(bytes, value, max: maxAddressBytes) else { return .failure(.badAddress) }
                address = value
                continue
            }
            let index: Int
            let limit: Int
            if equalsExactly(bytes, name, "modifier1") { (index, limit) = (0, 255) }
            else if equalsExactly(bytes, name, "modifier2") { (index, limit) = (1, 255) }
            else if equalsExactly(bytes, name, "cores") { (index, limit) = (2, 1 << 30) }
            else if equalsExactly(bytes, name, "load") { (index, limit) = (3, 1 << 30) }
            else if equalsExactly(bytes, name, "weight") { (index, limit) = (4, 1 << 30) }
            else { continue }  // notify, sni_*, unix, sign, and anything newer: not used here
            guard seen & (1 << index) == 0 else { return .failure(.badNumber) }
            seen |= 1 << index
            if value.isEmpty { continue }
            guard value.count <= 10, let v = parseDecimal(bytes, value), v <= limit else { return .failure(.badNumber) }
            numbers[index] = v
        }
        guard let key else { return .failure(.badKey) }
        guard let address else { return .failure(.badAddress) }
        return .success(SubscriptionPacket(
            command: command, key: Array(bytes[key]), address: Array(bytes[address]),
            requestModifier1: UInt8(numbers[0]), requestModifier2: UInt8(numbers[1]),
            cores: numbers[2], load: numbers[3], weight: max(1, numbers[4])))
    }
}

/// 1 to `max` bytes, each 0x21-0x7E.
private func isVisibleASCII(_ bytes: UnsafeRawBufferPointer, _ range: Range<Int>, max: Int) -> Bool {
    guard !range.isEmpty, range.count <= max else { return false }
    for i in range where bytes[i] < 0x21 || bytes[i] > 0x7E { return false }
    return true
}

/// Where a router reaches a node: the `address` of a subscription.
public enum NodeAddress: Sendable, Equatable, Hashable {
    /// `bytes` is 4 (IPv4) or 16 (IPv6) bytes.
    case tcp(bytes: [UInt8], port: Int)
    case unix(path: String)

    /// `HOST:PORT` with an IPv4 literal host (an empty host is 127.0.0.1, as in `:3031`),
    /// `[IPV6]:PORT`, or, without a colon, a unix socket path (as uWSGI reads it). Host
    /// names are refused: the router does not resolve names while it routes.
    public static func parse(_ text: [UInt8]) -> NodeAddress? {
        guard !text.isEmpty, text.count <= SubscriptionPacket.maxAddressBytes else { return nil }
        guard let colon = text.lastIndex(of: UInt8(ascii: ":")) else {
            guard !text.contains(0) else { return nil }
            return .unix(path: String(decoding: text, as: UTF8.self))
        }
        let portBytes = text[(colon + 1)...]
        guard (1...5).contains(portBytes.count), portBytes.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }) else { return nil }
        let port = portBytes.reduce(0) { $0 * 10 + Int($1 - 0x30) }
        guard (1...65535).contains(port) else { return nil }
        let host = Array(text[..<colon])
        if host.isEmpty { return .tcp(bytes: [127, 0, 0, 1], port: port) }
        return host.withUnsafeBytes { h -> NodeAddress? in
            if h.count >= 2, h[0] == UInt8(ascii: "["), h[h.count - 1] == UInt8(ascii: "]") {
                return parseIPv6(h, 1..<(h.count - 1)).map { .tcp(bytes: $0, port: port) }
            }
            return parseIPv4(h, 0..<h.count).map { .tcp(bytes: $0, port: port) }
        }
    }
}
