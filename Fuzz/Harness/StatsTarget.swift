// Target `stats`: what `apus top` reads from a stats server (Sources/ApusTop, its pure files:
// JSON.swift, Stats.swift, TopModel.swift, TopRender.swift, StatsAddress.swift).
// Byte 0 even: the rest is a stats document. Checks:
// - JSON.parse never traps; a parsed value written back as JSON (below) parses to the same
//   value, with and without whitespace around it;
// - a document read as stats, made into a view twice (the second with the first as the
//   previous poll) and rendered at widths 0, 40 and 200, gives lines no wider than the width
//   (in terminal columns: wide characters count 2)
//   and without control characters, whatever the strings in it.
// Byte 0 odd: the rest is an ADDR for `apus top`: a parsed address written back parses to
// the same address.

func fuzzStats(_ b: UnsafeRawBufferPointer) {
    guard let mode = b.first else { return }
    let rest = Array(b.dropFirst())
    if mode & 1 == 1 {
        let text = String(decoding: rest, as: UTF8.self)
        if let address = StatsAddress(text) {
            require(StatsAddress(address.description) == address, "\(address) does not parse back: \(show(b))")
        }
        return
    }
    guard let value = try? JSON.parse(rest) else { return }
    if isFinite(value) {
        let written = Array(writeJSON(value).utf8)
        require((try? JSON.parse(written)) == value, "written back, does not parse to the same value: \(show(b))")
        require((try? JSON.parse([0x20, 0x0A] + written + [0x09, 0x0D])) == value, "whitespace changes the value: \(show(b))")
    }
    guard let snapshot = try? StatsSnapshot(value, now: 1.8e9) else { return }
    let first = TopView(previous: nil, current: TopSample(snapshot, at: 1))
    let second = TopView(previous: TopSample(snapshot, at: 1), current: TopSample(snapshot, at: 2))
    for view in [first, second] {
        for width in [0, 40, 200] {
            for line in TopRender.lines(view, title: "apus top", width: width) {
                require(TopRender.columns(line) <= width, "a line wider than \(width) columns: \(show(b))")
                require(!line.unicodeScalars.contains { $0.value < 0x20 || ($0.value >= 0x7F && $0.value < 0xA0) },
                        "a control character on the screen: \(show(b))")
            }
        }
    }
}

/// Whether every number in `v` is finite (1e999 parses to infinity, which JSON cannot write).
private func isFinite(_ v: JSON) -> Bool {
    switch v {
    case let .number(n): return n.isFinite
    case let .array(a): return a.allSatisfy(isFinite)
    case let .object(o): return o.values.allSatisfy(isFinite)
    default: return true
    }
}

/// `v` as JSON text: strings with `"`, `\` and control characters escaped, numbers as Swift
/// writes Doubles (valid JSON for finite ones).
private func writeJSON(_ v: JSON) -> String {
    switch v {
    case .null: return "null"
    case let .bool(b): return b ? "true" : "false"
    case let .number(n): return n.description
    case let .string(s): return quote(s)
    case let .array(a): return "[" + a.map(writeJSON).joined(separator: ",") + "]"
    case let .object(o): return "{" + o.map { quote($0.key) + ":" + writeJSON($0.value) }.joined(separator: ",") + "}"
    }
}

private func quote(_ s: String) -> String {
    var out = "\""
    for u in s.unicodeScalars {
        switch u {
        case "\"": out += "\\\""
        case "\\": out += "\\\\"
        case _ where u.value < 0x20:
            let hex = String(u.value, radix: 16)
            out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
        default: out.unicodeScalars.append(u)
        }
    }
    return out + "\""
}
