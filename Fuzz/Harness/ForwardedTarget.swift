// Target `forwarded`: resolveForwarded (Forwarded / X-Forwarded-*) on fields built from the
// input. The first byte picks the trusted proxies (one of a fixed list, or, with its high
// bit set, the first line parsed as a --forwarded-allow-ips spec); the rest is lines, each
// starting with a letter that says what it is: `a` the peer address, `x` an X-Forwarded-For
// field, `p` X-Forwarded-Proto, `h` X-Forwarded-Host, `o` X-Forwarded-Port, `f` a Forwarded
// field (other lines are ignored). Checks:
// - an untrusted peer (and any peer under TrustedProxies.none) gets exactly the peer back,
//   nothing else set;
// - REMOTE_ADDR is the peer, `unknown`, an obfuscated `_name`, or an address in canonical
//   form (parsing and formatting it gives it back); REMOTE_PORT and SERVER_PORT are decimal
//   without leading zeros, at most 65535; the scheme is http or https; the host has host
//   characters only;
// - the same input gives the same result twice.

let trustedSpecs = ["127.0.0.1,::1", "*", "10.0.0.0/8, fd00::/8", "unix", "0.0.0.0/0", "", "::ffff:192.168.0.0/112", "::/0, 1.2.3.4"]

func fuzzForwarded(_ b: UnsafeRawBufferPointer) {
    guard b.count >= 1 else { return }
    var lines = Array(b[1...]).split(separator: 0x0A, omittingEmptySubsequences: false).map { Array($0) }
    let trusted: TrustedProxies
    if b[0] & 0x80 != 0 {
        let spec = String(decoding: lines.first ?? [], as: UTF8.self)
        if !lines.isEmpty { lines.removeFirst() }
        guard let t = try? TrustedProxies(parsing: spec) else { return }
        trusted = t
    } else {
        guard let t = try? TrustedProxies(parsing: trustedSpecs[Int(b[0]) % trustedSpecs.count]) else {
            require(false, "a fixed spec does not parse"); return
        }
        trusted = t
    }
    var input = ForwardedInput(peer: "127.0.0.1")
    func join(_ old: String?, _ new: String) -> String { old.map { $0 + "," + new } ?? new }
    for line in lines where !line.isEmpty {
        let text = String(decoding: line.dropFirst(), as: UTF8.self)
        switch line[0] {
        case 0x61: input.peer = text
        case 0x78: input.xForwardedFor.append(text)
        case 0x70: input.xForwardedProto = join(input.xForwardedProto, text)
        case 0x68: input.xForwardedHost = join(input.xForwardedHost, text)
        case 0x6F: input.xForwardedPort = join(input.xForwardedPort, text)
        case 0x66: input.forwarded.append(text)
        default: break
        }
    }
    let result = resolveForwarded(input, trusted: trusted)
    require(resolveForwarded(input, trusted: trusted) == result, "two runs differ")
    let bare = ForwardedResult(remoteAddr: input.peer)
    if !trusted.trusts(input.peer) { require(result == bare, "untrusted peer \(input.peer) changed \(result)") }
    require(resolveForwarded(input, trusted: .none) == bare, "TrustedProxies.none let the fields through")

    let addr = result.remoteAddr
    let canonical = parseIPAddress(addr).map(formatIPAddress) == addr
    let obfuscated = addr.count > 1 && addr.hasPrefix("_")
        && addr.utf8.allSatisfy { ($0 | 0x20 >= 0x61 && $0 | 0x20 <= 0x7A) || isDigit($0) || $0 == 0x2E || $0 == 0x5F || $0 == 0x2D }
    require(addr == input.peer || addr == "unknown" || obfuscated || canonical, "REMOTE_ADDR \"\(addr)\" is not an address or identifier")
    func decimalPort(_ p: String?) -> Bool {
        guard let p else { return true }
        guard let v = Int(p), String(v) == p else { return false }
        return v >= 0 && v <= 65535
    }
    require(decimalPort(result.remotePort) && decimalPort(result.port), "ports \(String(describing: result.remotePort)) \(String(describing: result.port))")
    require(result.scheme == nil || result.scheme == "http" || result.scheme == "https", "scheme \(String(describing: result.scheme))")
    if let host = result.host { require(isValidHost(Array(host.utf8)), "host \"\(host)\"") }
    if result.remoteAddr == input.peer && result.remotePort == nil && result.scheme == nil && result.host == nil && result.port == nil { return }
    require(trusted.trusts(input.peer), "a result other than the peer for an untrusted peer")
}
