// The PROXY protocol (HAProxy's proxy-protocol.txt), versions 1 and 2: a
// header a load balancer sends once, before the first byte of the proxied
// connection, to tell the server who the real client is.
//
// Version 1 is one text line:
//     PROXY TCP4 <src> <dst> <sport> <dport>\r\n      (also TCP6)
//     PROXY UNKNOWN[ <anything>]\r\n
// at most 107 bytes with the CRLF. Version 2 is binary: a 12-byte signature,
// version/command, family/transport, a big-endian length, the addresses,
// then TLVs up to that length.
//
// The parser is strict, and decides as early as the bytes allow: a buffer
// that can no longer become a valid header fails at once (a plain HTTP
// request on a PROXY listener fails at its first or second byte), and the
// result for a prefix of a buffer is `.incomplete` or the result for the
// whole buffer.

/// An address carried by a PROXY header.
public enum ProxyAddress: Sendable, Equatable {
    /// 4 bytes, network order.
    case ipv4([UInt8])
    /// 16 bytes, network order.
    case ipv6([UInt8])
    /// A unix socket path (v2 AF_UNIX), bytes up to the first NUL.
    case unix([UInt8])
}

/// A parsed PROXY header.
public struct ProxyHeader: Sendable, Equatable {
    /// The client (nil when `isLocal`).
    public var source: ProxyAddress?
    /// The client's port (nil when `isLocal` or for unix addresses).
    public var sourcePort: Int?
    /// The address the client connected to (nil when `isLocal`).
    public var destination: ProxyAddress?
    public var destinationPort: Int?
    /// v2 LOCAL command, v2 UNSPEC family, or v1 `UNKNOWN`: the connection
    /// carries no client address (health checks, or a proxy that does not
    /// know it); use the real peer's address.
    public var isLocal: Bool
    /// Bytes the header takes: the proxied stream starts at this offset.
    public var length: Int

    public init(source: ProxyAddress? = nil, sourcePort: Int? = nil,
                destination: ProxyAddress? = nil, destinationPort: Int? = nil,
                isLocal: Bool = false, length: Int = 0) {
        self.source = source
        self.sourcePort = sourcePort
        self.destination = destination
        self.destinationPort = destinationPort
        self.isLocal = isLocal
        self.length = length
    }
}

public enum ProxyParseResult: Sendable, Equatable {
    /// A valid prefix of a v1 or v2 header: read more and call again with the whole buffer.
    case incomplete
    case complete(ProxyHeader)
    /// Not a valid PROXY header; the reason is one line for the log. Close
    /// the connection without answering.
    case failure(String)
}

/// The maximum size of a v1 header, CRLF included.
public let proxyV1MaxLength = 107

/// The 12-byte v2 signature.
let proxyV2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

/// Parses a PROXY protocol header (v1 or v2) at the start of `buffer`.
public func parseProxyHeader(_ buffer: UnsafeRawBufferPointer) -> ProxyParseResult {
    if buffer.isEmpty { return .incomplete }
    switch buffer[0] {
    case 0x50: return parseProxyV1(buffer)  // 'P'
    case 0x0D: return parseProxyV2(buffer)
    default: return .failure("not a PROXY protocol header")
    }
}

// MARK: version 1

private enum V1Field {
    case ipv4, ipv6, port

    var maxLength: Int {
        switch self {
        case .ipv4: return 15
        case .ipv6: return 45   // eight groups, or six and a dotted quad
        case .port: return 5
        }
    }

    func allows(_ b: UInt8) -> Bool {
        switch self {
        case .ipv4: return isDigit(b) || b == dot
        case .port: return isDigit(b)
        case .ipv6: return hexValue(b) != nil || b == colon || b == dot
        }
    }
}

private func parseProxyV1(_ buffer: UnsafeRawBufferPointer) -> ProxyParseResult {
    let n = buffer.count
    // The scan below only ever looks at index i after checking, in this
    // order, that i is under the v1 size limit and inside the buffer.
    enum Stop: Error { case incomplete, failure(String) }
    @inline(__always) func byte(_ i: Int) throws(Stop) -> UInt8 {
        if i >= proxyV1MaxLength { throw .failure("PROXY v1 header longer than 107 bytes") }
        if i >= n { throw .incomplete }
        return buffer[i]
    }
    /// Reads a CRLF at i; returns the index after it.
    func crlf(_ i: Int) throws(Stop) -> Int {
        if try byte(i) != cr { throw .failure("PROXY v1: expected CRLF") }
        if try byte(i &+ 1) != lf { throw .failure("PROXY v1: bare CR") }
        return i &+ 2
    }
    /// Reads a field made of `kind`'s characters, ended by `terminator`.
    func field(_ i: Int, _ kind: V1Field, _ name: String, terminator: UInt8) throws(Stop) -> Range<Int> {
        var j = i
        while true {
            let b = try byte(j)
            if b == terminator { break }
            if b == sp || b == cr || b == lf {
                throw .failure(j == i ? "PROXY v1: missing or empty \(name)" : "PROXY v1: unexpected separator after \(name)")
            }
            if !kind.allows(b) { throw .failure("PROXY v1: invalid character in \(name)") }
            j &+= 1
            if j &- i > kind.maxLength { throw .failure("PROXY v1: \(name) too long") }
        }
        if j == i { throw .failure("PROXY v1: missing or empty \(name)") }
        return i..<j
    }
    func port(_ r: Range<Int>, _ name: String) throws(Stop) -> Int {
        guard let v = parseDecimal(buffer, r), v <= 65535, r.count == 1 || buffer[r.lowerBound] != 0x30 else {
            throw .failure("PROXY v1: invalid \(name)")
        }
        return v
    }

    do throws(Stop) {
        let prefix: StaticString = "PROXY "
        let pp = prefix.utf8Start
        for k in 0..<6 where try byte(k) != pp[k] {
            throw .failure(k < 5 ? "not a PROXY protocol header" : "PROXY v1: expected a space after PROXY")
        }
        // protocol: TCP4, TCP6 or UNKNOWN; each byte must keep it a prefix of one of them
        let protocols: [StaticString] = ["TCP4", "TCP6", "UNKNOWN"]
        var i = 6
        var candidates = [true, true, true]
        while true {
            let b = try byte(i)
            if b == sp || b == cr { break }
            if b == lf { throw .failure("PROXY v1: bare LF") }
            let k = i &- 6
            var any = false
            for c in 0..<3 where candidates[c] {
                let p = protocols[c]
                if k < p.utf8CodeUnitCount && p.utf8Start[k] == b { any = true } else { candidates[c] = false }
            }
            if !any { throw .failure("PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)") }
            i &+= 1
        }
        let protoLength = i &- 6
        var chosen = -1
        for c in 0..<3 where candidates[c] && protocols[c].utf8CodeUnitCount == protoLength { chosen = c }
        if chosen < 0 { throw .failure("PROXY v1: unknown protocol (expected TCP4, TCP6 or UNKNOWN)") }

        if chosen == 2 {
            // UNKNOWN: whatever follows up to the CRLF is ignored
            while true {
                let b = try byte(i)
                if b == cr { break }
                if b == lf { throw .failure("PROXY v1: bare LF") }
                i &+= 1
            }
            let end = try crlf(i)
            return .complete(ProxyHeader(isLocal: true, length: end))
        }

        if try byte(i) != sp { throw .failure("PROXY v1: missing addresses") }
        i &+= 1
        let family: V1Field = chosen == 0 ? .ipv4 : .ipv6
        func address(_ r: Range<Int>, _ name: String) throws(Stop) -> ProxyAddress {
            if family == .ipv4 {
                guard let a = parseIPv4(buffer, r) else { throw .failure("PROXY v1: invalid IPv4 \(name)") }
                return .ipv4(a)
            }
            guard let a = parseIPv6(buffer, r) else { throw .failure("PROXY v1: invalid IPv6 \(name)") }
            return .ipv6(a)
        }
        let srcRange = try field(i, family, "source address", terminator: sp)
        let src = try address(srcRange, "source address")
        i = srcRange.upperBound &+ 1
        let dstRange = try field(i, family, "destination address", terminator: sp)
        let dst = try address(dstRange, "destination address")
        i = dstRange.upperBound &+ 1
        let sportRange = try field(i, .port, "source port", terminator: sp)
        let sport = try port(sportRange, "source port")
        i = sportRange.upperBound &+ 1
        let dportRange = try field(i, .port, "destination port", terminator: cr)
        let dport = try port(dportRange, "destination port")
        let end = try crlf(dportRange.upperBound)
        return .complete(ProxyHeader(source: src, sourcePort: sport, destination: dst, destinationPort: dport,
                                     isLocal: false, length: end))
    } catch {
        switch error {
        case .incomplete: return .incomplete
        case .failure(let reason): return .failure(reason)
        }
    }
}

// MARK: version 2

private func parseProxyV2(_ buffer: UnsafeRawBufferPointer) -> ProxyParseResult {
    let n = buffer.count
    var i = 0
    while i < 12 {
        if i >= n { return .incomplete }
        if buffer[i] != proxyV2Signature[i] {
            return .failure(i < 4 ? "not a PROXY protocol header" : "PROXY v2: bad signature")
        }
        i += 1
    }
    if n < 13 { return .incomplete }
    let versionCommand = buffer[12]
    if versionCommand >> 4 != 2 { return .failure("PROXY v2: unsupported version \(versionCommand >> 4)") }
    let command = versionCommand & 0x0F
    if command > 1 { return .failure("PROXY v2: unsupported command \(command)") }
    let isLocalCommand = command == 0
    if n < 14 { return .incomplete }
    let familyTransport = buffer[13]
    var addressBytes = 0
    if !isLocalCommand {
        switch familyTransport {
        case 0x00: addressBytes = 0      // UNSPEC
        case 0x11: addressBytes = 12     // TCP over IPv4
        case 0x21: addressBytes = 36     // TCP over IPv6
        case 0x31: addressBytes = 216    // unix stream
        default:
            return .failure("PROXY v2: unsupported address family/transport 0x\(String(familyTransport, radix: 16))")
        }
    }
    if n < 16 { return .incomplete }
    let length = Int(buffer[14]) << 8 | Int(buffer[15])
    if length < addressBytes { return .failure("PROXY v2: length \(length) too short for the addresses") }
    let end = 16 + length
    if n < end { return .incomplete }

    // TLVs follow the addresses; check their framing, skip their content.
    var t = 16 + addressBytes
    if isLocalCommand { t = end }
    while t < end {
        if end - t < 3 { return .failure("PROXY v2: truncated TLV") }
        let tlvLength = Int(buffer[t + 1]) << 8 | Int(buffer[t + 2])
        t += 3 + tlvLength
        if t > end { return .failure("PROXY v2: TLV runs past the header") }
    }

    if isLocalCommand || familyTransport == 0x00 {
        return .complete(ProxyHeader(isLocal: true, length: end))
    }
    let a = 16
    func bytes(_ r: Range<Int>) -> [UInt8] { Array(UnsafeRawBufferPointer(rebasing: buffer[r])) }
    func port(_ k: Int) -> Int { Int(buffer[k]) << 8 | Int(buffer[k + 1]) }
    var header = ProxyHeader(isLocal: false, length: end)
    switch familyTransport {
    case 0x11:
        header.source = .ipv4(bytes(a..<(a + 4)))
        header.destination = .ipv4(bytes((a + 4)..<(a + 8)))
        header.sourcePort = port(a + 8)
        header.destinationPort = port(a + 10)
    case 0x21:
        header.source = .ipv6(bytes(a..<(a + 16)))
        header.destination = .ipv6(bytes((a + 16)..<(a + 32)))
        header.sourcePort = port(a + 32)
        header.destinationPort = port(a + 34)
    default:  // 0x31
        func path(_ start: Int) -> [UInt8] {
            var e = start
            while e < start + 108 && buffer[e] != 0 { e += 1 }
            return bytes(start..<e)
        }
        header.source = .unix(path(a))
        header.destination = .unix(path(a + 108))
    }
    return .complete(header)
}
