// Textual IP addresses: strict parsing (as inet_pton does it) and the
// canonical output form (RFC 5952 for IPv6). Used by the PROXY protocol
// parser, by `TrustedProxies` and by `resolveForwarded`.

let dot: UInt8 = 0x2E

@inline(__always)
func isDigit(_ b: UInt8) -> Bool { b >= 0x30 && b <= 0x39 }

/// Dotted-quad IPv4: exactly four decimal octets of 1-3 digits, each at most
/// 255, no leading zeros (so "010.0.0.1" is refused rather than read as
/// octal or decimal). Returns the 4 bytes.
func parseIPv4(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> [UInt8]? {
    var out: [UInt8] = []
    out.reserveCapacity(4)
    var i = range.lowerBound
    while true {
        let start = i
        var value = 0
        while i < range.upperBound && isDigit(buffer[i]) {
            value = value &* 10 &+ Int(buffer[i] &- 0x30)
            i &+= 1
            if i &- start > 3 { return nil }
        }
        let digits = i &- start
        if digits == 0 || value > 255 || (digits > 1 && buffer[start] == 0x30) { return nil }
        out.append(UInt8(value))
        if out.count == 4 { return i == range.upperBound ? out : nil }
        if i >= range.upperBound || buffer[i] != dot { return nil }
        i &+= 1
    }
}

/// Textual IPv6 (RFC 4291 section 2.2): eight groups of 1-4 hex digits, at
/// most one `::`, optionally ending in a dotted-quad IPv4 for the last 32
/// bits. No brackets, no zone identifier. Returns the 16 bytes.
func parseIPv6(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> [UInt8]? {
    let lo = range.lowerBound
    let hi = range.upperBound
    if lo >= hi { return nil }
    var groups: [UInt16] = []
    groups.reserveCapacity(8)
    var gap: Int? = nil   // index in `groups` where `::` stands
    var i = lo
    if buffer[i] == colon {
        if i &+ 1 >= hi || buffer[i &+ 1] != colon { return nil }
        gap = 0
        i &+= 2
    }
    if i < hi {
        while true {
            var j = i
            var sawDot = false
            while j < hi && buffer[j] != colon {
                if buffer[j] == dot { sawDot = true }
                j &+= 1
            }
            if sawDot {
                // embedded IPv4: only as the last piece
                guard j == hi, let v4 = parseIPv4(buffer, i..<j) else { return nil }
                groups.append(UInt16(v4[0]) << 8 | UInt16(v4[1]))
                groups.append(UInt16(v4[2]) << 8 | UInt16(v4[3]))
                break
            }
            let len = j &- i
            if len < 1 || len > 4 { return nil }
            var g: UInt16 = 0
            var k = i
            while k < j {
                guard let h = hexValue(buffer[k]) else { return nil }
                g = g << 4 | UInt16(h)
                k &+= 1
            }
            groups.append(g)
            if groups.count > 8 { return nil }
            if j == hi { break }
            // buffer[j] is ':'
            if j &+ 1 >= hi { return nil }   // trailing single ':'
            if buffer[j &+ 1] == colon {
                if gap != nil { return nil }
                gap = groups.count
                i = j &+ 2
                if i == hi { break }
            } else {
                i = j &+ 1
            }
        }
    }
    if let gap {
        if groups.count > 7 { return nil }
        let zeros = [UInt16](repeating: 0, count: 8 - groups.count)
        groups.insert(contentsOf: zeros, at: gap)
    } else if groups.count != 8 {
        return nil
    }
    var out: [UInt8] = []
    out.reserveCapacity(16)
    for g in groups {
        out.append(UInt8(g >> 8))
        out.append(UInt8(g & 0xFF))
    }
    return out
}

/// Parses an IPv4 or IPv6 address given as text.
func parseIPAddress(_ text: String) -> ProxyAddress? {
    var s = text
    return s.withUTF8 { parseIPAddress(UnsafeRawBufferPointer($0), zoned: false) }
}

/// Parses an IPv4 or IPv6 address given as bytes; with `zoned`, an IPv6 zone (`%eth0`) is
/// ignored.
func parseIPAddress(_ buffer: UnsafeRawBufferPointer, zoned: Bool) -> ProxyAddress? {
    var end = buffer.count
    var v6 = false
    var i = 0
    while i < buffer.count {
        if buffer[i] == colon { v6 = true }
        if zoned && v6 && buffer[i] == UInt8(ascii: "%") { end = i; break }
        i &+= 1
    }
    if v6 { return parseIPv6(buffer, 0..<end).map { .ipv6($0) } }
    return parseIPv4(buffer, 0..<end).map { .ipv4($0) }
}

/// The 4 bytes of an IPv4-mapped IPv6 address (`::ffff:a.b.c.d`), else nil.
func mappedIPv4(_ v6: [UInt8]) -> [UInt8]? {
    guard v6.count == 16 else { return nil }
    for k in 0..<10 where v6[k] != 0 { return nil }
    guard v6[10] == 0xFF && v6[11] == 0xFF else { return nil }
    return Array(v6[12..<16])
}

private func dottedQuad(_ b: ArraySlice<UInt8>) -> String {
    b.map { String($0) }.joined(separator: ".")
}

private let hexDigits: [Character] = Array("0123456789abcdef")

private func hexGroup(_ g: Int) -> String {
    if g == 0 { return "0" }
    var s = ""
    var shift = 12
    var started = false
    while shift >= 0 {
        let d = (g >> shift) & 0xF
        if d != 0 || started {
            s.append(hexDigits[d])
            started = true
        }
        shift -= 4
    }
    return s
}

/// Text form of an address: dotted quad for IPv4; for IPv6 the RFC 5952
/// form (lower-case hex, no leading zeros, the longest run of two or more
/// zero groups, the first one on a tie, written `::`, and IPv4-mapped
/// addresses as `::ffff:a.b.c.d`). A unix-socket address gives "" (what
/// REMOTE_ADDR holds for a unix-socket peer; the path is in the value).
/// Addresses of the wrong length give "".
public func formatIPAddress(_ a: ProxyAddress) -> String {
    switch a {
    case .ipv4(let b):
        guard b.count == 4 else { return "" }
        return dottedQuad(b[...])
    case .ipv6(let b):
        guard b.count == 16 else { return "" }
        if let v4 = mappedIPv4(b) { return "::ffff:" + dottedQuad(v4[...]) }
        var groups: [Int] = []
        for k in stride(from: 0, to: 16, by: 2) { groups.append(Int(b[k]) << 8 | Int(b[k + 1])) }
        var bestStart = -1
        var bestLength = 1   // a single zero group is never compressed
        var k = 0
        while k < 8 {
            if groups[k] == 0 {
                var e = k
                while e < 8 && groups[e] == 0 { e += 1 }
                if e - k > bestLength {
                    bestStart = k
                    bestLength = e - k
                }
                k = e
            } else {
                k += 1
            }
        }
        if bestStart < 0 { return groups.map(hexGroup).joined(separator: ":") }
        let left = groups[..<bestStart].map(hexGroup).joined(separator: ":")
        let right = groups[(bestStart + bestLength)...].map(hexGroup).joined(separator: ":")
        return left + "::" + right
    case .unix:
        return ""
    }
}
