// Target `ip`: textual IP addresses (IPAddress.swift) and --forwarded-allow-ips specs.
// Checks, on the input as text:
// - parseIPv4 and parseIPv6 accept exactly what glibc's inet_pton accepts (for text without
//   NUL) and give the same bytes;
// - formatIPAddress gives what glibc's inet_ntop gives for IPv6, except for the deprecated
//   IPv4-compatible addresses (::/96 with a non-zero seventh group: glibc writes ::a.b.c.d,
//   RFC 5952 hex groups); the formatted text parses back to the same bytes;
// - parseIPAddress with and without zones agrees with the above;
// - TrustedProxies(parsing:) never traps; a spec that parses trusts every address it names.

#if canImport(Glibc)
import Glibc
#endif

func glibcPton(_ family: Int32, _ text: [UInt8], _ size: Int) -> [UInt8]? {
    var out = [UInt8](repeating: 0, count: size)
    let ok = (text + [0]).withUnsafeBufferPointer { t in
        out.withUnsafeMutableBytes { o in
            t.baseAddress!.withMemoryRebound(to: CChar.self, capacity: t.count) { inet_pton(family, $0, o.baseAddress) }
        }
    }
    return ok == 1 ? out : nil
}

func glibcNtop6(_ bytes: [UInt8]) -> String {
    var out = [CChar](repeating: 0, count: 64)
    let r = bytes.withUnsafeBytes { b in out.withUnsafeMutableBufferPointer { inet_ntop(AF_INET6, b.baseAddress, $0.baseAddress, 64) } }
    require(r != nil, "inet_ntop failed")
    return String(decoding: out.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

func fuzzIP(_ b: UnsafeRawBufferPointer) {
    let text = Array(b)
    let v4 = parseIPv4(b, 0..<b.count)
    let v6 = parseIPv6(b, 0..<b.count)
    if !text.contains(0) {
        let g4 = glibcPton(AF_INET, text, 4)
        let g6 = glibcPton(AF_INET6, text, 16)
        require(v4 == g4, "parseIPv4 \(String(describing: v4)), inet_pton \(String(describing: g4)): \(show(b))")
        require(v6 == g6, "parseIPv6 \(String(describing: v6)), inet_pton \(String(describing: g6)): \(show(b))")
    }
    if let v4 {
        require(v4.count == 4, "IPv4 of \(v4.count) bytes")
        let f = formatIPAddress(.ipv4(v4))
        require(Array(f.utf8) == text, "IPv4 text \(show(b)) formats as \(f)")  // the parser takes canonical text only
        require(parseIPAddress(f) == .ipv4(v4), "IPv4 does not read back")
    }
    if let v6 {
        require(v6.count == 16, "IPv6 of \(v6.count) bytes")
        let f = formatIPAddress(.ipv6(v6))
        require(parseIPAddress(f) == .ipv6(v6), "\(f) does not read back")
        let compatible = v6[0..<12].allSatisfy { $0 == 0 } && !(v6[12] == 0 && v6[13] == 0)
        if !compatible { require(f == glibcNtop6(v6), "formatIPAddress \(f), inet_ntop \(glibcNtop6(v6))") }
        require(formatIPAddress(.ipv6(v6)) == f, "formatting is not stable")
    }
    // parseIPAddress: v6 if the text has a colon, else v4; a zone (%...) only when zoned
    let parsed = parseIPAddress(b, zoned: false)
    if text.contains(0x3A) { require(parsed == v6.map { .ipv6($0) }, "parseIPAddress differs from parseIPv6") }
    else { require(parsed == v4.map { .ipv4($0) }, "parseIPAddress differs from parseIPv4") }
    if let percent = text.firstIndex(of: 0x25), text[..<percent].contains(0x3A) {
        let zoned = parseIPAddress(b, zoned: true)
        let bare = parseIPv6(b, 0..<percent)
        require(zoned == bare.map { .ipv6($0) }, "zoned address \(show(b)) does not ignore its zone")
    } else {
        require(parseIPAddress(b, zoned: true) == parsed, "zoned parsing differs without a zone")
    }

    let spec = String(decoding: text, as: UTF8.self)
    if let trusted = try? TrustedProxies(parsing: spec) {
        for rawItem in spec.split(separator: ",") {
            let item = rawItem.trimmingBlanks()
            let address = item.split(separator: "/", maxSplits: 1).first.map(String.init) ?? ""
            if item == "*" || item.lowercased() == "unix" || address.isEmpty { continue }
            require(trusted.trusts(address), "spec \"\(spec)\" does not trust its own \(address)")
        }
        _ = trusted.trusts(spec)
    }
}

extension Substring {
    func trimmingBlanks() -> String {
        let blank: (Character) -> Bool = { $0 == " " || $0 == "\t" || $0 == "\r" || $0 == "\n" || $0 == "\r\n" }
        return String(self.drop(while: blank).reversed().drop(while: blank).reversed())
    }
}
