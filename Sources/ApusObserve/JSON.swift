/// A JSON value and its writer, without Foundation: what the stats server answers. Strings
/// may carry bytes from clients (request lines from the scoreboard), so the writer escapes
/// everything a parser or a terminal could trip on and never emits invalid UTF-8.
public indirect enum JSON {
    case null
    case bool(Bool)
    case int(Int)
    /// Non-finite values are written as `null` (JSON has no NaN or infinity).
    case double(Double)
    case string(String)
    /// Bytes that should be UTF-8 text but may not be: invalid sequences become U+FFFD.
    case bytes([UInt8])
    case array([JSON])
    /// Members in the order given (uWSGI's documents have a fixed order; tools diff them).
    case object([(String, JSON)])

    /// The value as UTF-8 JSON text, without whitespace.
    public func encoded() -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256)
        write(into: &out)
        return out
    }

    public func write(into out: inout [UInt8]) {
        switch self {
        case .null: out += "null".utf8
        case let .bool(b): out += (b ? "true" : "false").utf8
        case let .int(n): out += String(n).utf8
        case let .double(d): out += (d.isFinite ? d.description : "null").utf8
        case let .string(s): Self.writeString(s.utf8, into: &out)
        case let .bytes(b): Self.writeString(b, into: &out)
        case let .array(items):
            out.append(UInt8(ascii: "["))
            for (i, item) in items.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                item.write(into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case let .object(members):
            out.append(UInt8(ascii: "{"))
            for (i, (key, value)) in members.enumerated() {
                if i > 0 { out.append(UInt8(ascii: ",")) }
                Self.writeString(key.utf8, into: &out)
                out.append(UInt8(ascii: ":"))
                value.write(into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    /// A quoted JSON string of `bytes`: `"` and `\` escaped, control characters (and DEL)
    /// as `\u00XX`, U+2028 and U+2029 as `\u2028`/`\u2029` (line breaks to JavaScript and to
    /// some terminals), and each invalid UTF-8 sequence (its maximal valid prefix, as
    /// Unicode recommends) replaced by U+FFFD.
    public static func writeString<S: Collection>(_ bytes: S, into out: inout [UInt8]) where S.Element == UInt8 {
        let b = Array(bytes)
        out.append(UInt8(ascii: "\""))
        var i = 0
        while i < b.count {
            let c = b[i]
            if c < 0x80 {
                switch c {
                case UInt8(ascii: "\""): out += "\\\"".utf8
                case UInt8(ascii: "\\"): out += "\\\\".utf8
                case 0..<0x20, 0x7F: escape(UInt16(c), into: &out)
                default: out.append(c)
                }
                i += 1
                continue
            }
            let n = validSequenceLength(b, at: i)
            guard n > 0 else {
                out += [0xEF, 0xBF, 0xBD]  // U+FFFD
                i += max(1, -n)
                continue
            }
            if n == 3 && c == 0xE2 && b[i + 1] == 0x80 && (b[i + 2] == 0xA8 || b[i + 2] == 0xA9) {
                escape(b[i + 2] == 0xA8 ? 0x2028 : 0x2029, into: &out)
            } else {
                out += b[i..<i + n]
            }
            i += n
        }
        out.append(UInt8(ascii: "\""))
    }

    /// The length of the well-formed UTF-8 sequence of 2...4 bytes at `i`, or minus the
    /// length of its maximal ill-formed prefix (at least 1) to replace with one U+FFFD.
    static func validSequenceLength(_ b: [UInt8], at i: Int) -> Int {
        let c = b[i]
        let length: Int
        var low: UInt8 = 0x80, high: UInt8 = 0xBF  // bounds of the second byte
        switch c {
        case 0xC2...0xDF: length = 2
        case 0xE0: length = 3; low = 0xA0
        case 0xE1...0xEC, 0xEE...0xEF: length = 3
        case 0xED: length = 3; high = 0x9F  // no surrogates
        case 0xF0: length = 4; low = 0x90
        case 0xF1...0xF3: length = 4
        case 0xF4: length = 4; high = 0x8F  // nothing above U+10FFFF
        default: return -1
        }
        for k in 1..<length {
            guard i + k < b.count else { return -k }
            let lo: UInt8 = k == 1 ? low : 0x80, hi: UInt8 = k == 1 ? high : 0xBF
            guard b[i + k] >= lo && b[i + k] <= hi else { return -k }
        }
        return length
    }

    private static func escape(_ unit: UInt16, into out: inout [UInt8]) {
        let hex = Array("0123456789abcdef".utf8)
        out += "\\u".utf8
        for shift in stride(from: 12, through: 0, by: -4) { out.append(hex[Int(unit >> UInt16(shift)) & 15]) }
    }
}
