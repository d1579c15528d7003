// Target `subscription`: what apus router reads from sockets other than its clients' requests.
// Byte 0 picks the parser, the rest is its input:
// - even: `SubscriptionPacket.parse` (a datagram from anyone who can reach the UDP port).
//   Checks: a parsed packet has modifier1 224, a datasize that matches, a key and an address
//   of 1-255 visible ASCII bytes that occur in the input, a weight of at least 1; it
//   encodes to a packet that parses to the same value; `NodeAddress.parse` of its address
//   does not trap, and a TCP address it gives has 4 or 16 bytes and a port in 1...65535.
// - odd: `parseNodeResponseHead` (a node's response). Checks: prefixes give `.incomplete` or
//   the whole buffer's result; a complete head's ranges lie inside its head, its status is
//   200-999, and `clientResponseHead` never puts a CR or LF inside a line it writes.

func fuzzSubscription(_ input: UnsafeRawBufferPointer) {
    guard let selector = input.first else { return }
    let b = UnsafeRawBufferPointer(rebasing: input[1...])
    withPrefix(b, b.count) { exact in
        if selector & 1 == 0 { fuzzSubscriptionPacket(exact) } else { fuzzNodeResponse(exact) }
    }
}

private func fuzzSubscriptionPacket(_ b: UnsafeRawBufferPointer) {
    guard case let .success(p) = SubscriptionPacket.parse(b) else { return }
    require(b[0] == 224 && Int(b[1]) | Int(b[2]) << 8 == b.count - 4, "header of an accepted packet: \(show(b))")
    for field in [p.key, p.address] {
        require((1...255).contains(field.count) && field.allSatisfy { $0 >= 0x21 && $0 <= 0x7E }, "field bytes: \(show(b))")
    }
    require(p.weight >= 1, "weight \(p.weight): \(show(b))")
    let again = p.encode()
    let reparsed = again.withUnsafeBytes { SubscriptionPacket.parse($0) }
    require(reparsed == .success(p), "encode/parse round trip: \(show(b))")
    if case let .tcp(bytes, port) = NodeAddress.parse(p.address) {
        require((bytes.count == 4 || bytes.count == 16) && (1...65535).contains(port), "node address: \(show(b))")
    }
}

private func fuzzNodeResponse(_ b: UnsafeRawBufferPointer) {
    let whole = parseNodeResponseHead(b, maxBytes: 2048, maxFields: 8)
    for k in prefixLengths(b) {
        let part = withPrefix(b, k) { parseNodeResponseHead($0, maxBytes: 2048, maxFields: 8) }
        if part == .incomplete { continue }
        switch (part, whole) {
        case (.failure, .failure): break
        case let (.complete(x), .complete(y)): require(x == y, "prefix \(k) parses differently: \(show(b))")
        default: require(false, "prefix \(k) decides differently: \(show(b))")
        }
    }
    guard case let .complete(head) = whole else { return }
    require((200...999).contains(head.status), "status \(head.status): \(show(b))")
    require(head.headLength <= b.count, "head length: \(show(b))")
    for f in head.fields {
        require(f.name.upperBound <= head.headLength && f.value.upperBound <= head.headLength, "field range: \(show(b))")
    }
    for (isHEAD, minor) in [(false, 1), (true, 1), (false, 0)] {
        let (out, _, _) = clientResponseHead(b, head, requestIsHEAD: isHEAD, requestVersionMinor: minor, keepAlive: true)
        // every CR is followed by LF and every LF preceded by CR: no line can be split
        for i in out.indices {
            if out[i] == 0x0D { require(i + 1 < out.count && out[i + 1] == 0x0A, "bare CR written: \(show(b))") }
            if out[i] == 0x0A { require(i > 0 && out[i - 1] == 0x0D, "bare LF written: \(show(b))") }
        }
        require(out.suffix(4) == [0x0D, 0x0A, 0x0D, 0x0A], "head does not end with an empty line: \(show(b))")
    }
}
