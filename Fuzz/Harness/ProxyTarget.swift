// Target `proxy`: parseProxyHeader (PROXY protocol v1 and v2) on arbitrary bytes. Checks:
// - prefixes: `.incomplete` or exactly the whole buffer's result (the same reason, or the
//   same header); the header minus its last byte is `.incomplete`;
// - a v1 header: at most 107 bytes, one CRLF at its end; UNKNOWN is local; otherwise six
//   space-separated fields whose family matches TCP4/TCP6, whose addresses read back to the
//   parsed bytes (TCP4 text is canonical: it must be the formatted address exactly) and
//   whose ports are the decimal text of the parsed ports;
// - a v2 header: the signature, version 2, command LOCAL or PROXY, length 16 + the
//   big-endian length field, TLVs that end exactly at that length, and addresses, ports and
//   unix paths equal to the bytes at their fixed offsets; LOCAL and UNSPEC carry none.

func fuzzProxy(_ b: UnsafeRawBufferPointer) {
    let whole = parseProxyHeader(b)
    var extra: [Int] = [1, 5, 6, 12, 13, 14, 16]
    if case .complete(let h) = whole {
        extra += [h.length - 1, h.length]
        checkProxyHeader(b, h)
        let (r) = withPrefix(b, h.length - 1) { parseProxyHeader($0) }
        require(r == .incomplete, "the header minus its last byte gives \(r): \(show(b))")
    }
    for k in prefixLengths(b, extra: extra) {
        let r = withPrefix(b, k) { parseProxyHeader($0) }
        if r == .incomplete { continue }
        require(r == whole, "prefix of \(k) bytes gives \(r), the whole gives \(whole): \(show(b))")
    }
}

func checkProxyHeader(_ b: UnsafeRawBufferPointer, _ h: ProxyHeader) {
    let n = h.length
    require(n > 0 && n <= b.count, "length \(n) for \(b.count) bytes")
    if b[0] == 0x50 {
        require(n <= proxyV1MaxLength, "v1 header of \(n) bytes")
        require(bytesEqual(b, (n - 2)..<n, "\r\n"), "v1 header not ended by CRLF")
        let line = Array(b[0..<(n - 2)])
        require(!line.contains(0x0D) && !line.contains(0x0A), "CR or LF inside the v1 line: \(show(b))")
        let fields = line.split(separator: 0x20, omittingEmptySubsequences: false).map { String(decoding: $0, as: UTF8.self) }
        require(fields.count >= 2 && fields[0] == "PROXY", "v1 line does not start with PROXY")
        if h.isLocal {
            require(fields[1] == "UNKNOWN", "local v1 header with protocol \(fields[1])")
            require(h.source == nil && h.destination == nil && h.sourcePort == nil && h.destinationPort == nil, "UNKNOWN with addresses")
            return
        }
        require(fields.count == 6, "v1 line with \(fields.count) fields: \(show(b))")
        guard let src = h.source, let dst = h.destination, let sport = h.sourcePort, let dport = h.destinationPort else {
            require(false, "v1 TCP header without addresses or ports"); return
        }
        switch fields[1] {
        case "TCP4":
            guard case .ipv4 = src, case .ipv4 = dst else { require(false, "TCP4 with \(src), \(dst)"); return }
            require(formatIPAddress(src) == fields[2] && formatIPAddress(dst) == fields[3], "TCP4 addresses are not the text: \(show(b))")
        case "TCP6":
            guard case .ipv6 = src, case .ipv6 = dst else { require(false, "TCP6 with \(src), \(dst)"); return }
            require(parseIPAddress(fields[2]) == src && parseIPAddress(fields[3]) == dst, "TCP6 addresses do not read back: \(show(b))")
        default:
            require(false, "v1 protocol \(fields[1]) accepted")
        }
        require(String(sport) == fields[4] && String(dport) == fields[5] && sport <= 65535 && dport <= 65535,
                "v1 ports \(sport) \(dport) from \(fields[4]) \(fields[5])")
        return
    }
    require(b.count >= 16 && zip(b[0..<12], proxyV2Signature).allSatisfy { $0 == $1 }, "v2 header without the signature")
    require(b[12] >> 4 == 2 && b[12] & 0x0F <= 1, "v2 version/command 0x\(String(b[12], radix: 16)) accepted")
    require(n == 16 + (Int(b[14]) << 8 | Int(b[15])), "v2 length \(n) does not match the length field")
    let local = b[12] & 0x0F == 0 || b[13] == 0x00
    let addressBytes: Int
    switch b[13] {
    case _ where b[12] & 0x0F == 0: addressBytes = 0
    case 0x00: addressBytes = 0
    case 0x11: addressBytes = 12
    case 0x21: addressBytes = 36
    case 0x31: addressBytes = 216
    default: require(false, "v2 family/transport 0x\(String(b[13], radix: 16)) accepted"); return
    }
    require(h.isLocal == local, "isLocal \(h.isLocal) for command/family \(b[12]) \(b[13])")
    if !local {
        var t = 16 + addressBytes
        while t < n {
            require(n - t >= 3, "truncated TLV accepted")
            t += 3 + (Int(b[t + 1]) << 8 | Int(b[t + 2]))
        }
        require(t == n, "TLVs end at \(t), the header at \(n)")
    }
    func bytes(_ r: Range<Int>) -> [UInt8] { Array(b[r]) }
    func port(_ k: Int) -> Int { Int(b[k]) << 8 | Int(b[k + 1]) }
    if local {
        require(h.source == nil && h.destination == nil && h.sourcePort == nil && h.destinationPort == nil, "local v2 header with addresses")
        return
    }
    switch b[13] {
    case 0x11:
        require(h.source == .ipv4(bytes(16..<20)) && h.destination == .ipv4(bytes(20..<24))
                && h.sourcePort == port(24) && h.destinationPort == port(26), "v2 IPv4 addresses or ports differ from the bytes")
    case 0x21:
        require(h.source == .ipv6(bytes(16..<32)) && h.destination == .ipv6(bytes(32..<48))
                && h.sourcePort == port(48) && h.destinationPort == port(50), "v2 IPv6 addresses or ports differ from the bytes")
    default:
        func path(_ at: Int) -> [UInt8] { Array(b[at..<(at + 108)].prefix { $0 != 0 }) }
        require(h.source == .unix(path(16)) && h.destination == .unix(path(124)) && h.sourcePort == nil && h.destinationPort == nil,
                "v2 unix paths differ from the bytes")
    }
}
