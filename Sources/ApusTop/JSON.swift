// A small JSON parser (RFC 8259) for the stats documents `apus top` reads: pure Swift, no
// Foundation, and bounded, because the bytes come from a socket. A document larger than
// `JSON.maxBytes` or nested deeper than `JSON.maxDepth` is refused, never parsed further.

/// One JSON value. Objects keep the last of duplicate keys; numbers are Doubles (every
/// integer in a stats document, pids, counters, bytes, microseconds, is below 2^53).
public enum JSON: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSON])
    case object([String: JSON])

    /// The largest document taken: 16 MiB (a stats document of thousands of workers is a
    /// few MiB).
    public static let maxBytes = 16 << 20
    /// Arrays and objects inside one another, at most (a stats document nests 5 deep).
    public static let maxDepth = 64

    /// Why a document was refused, with the byte offset where that was seen.
    public struct ParseError: Error, Equatable, Sendable, CustomStringConvertible {
        public let reason: String
        public let offset: Int
        public var description: String { "\(reason) at byte \(offset)" }
    }

    /// Parses one whole document (whitespace around it allowed, nothing else).
    public static func parse(_ bytes: [UInt8]) throws(ParseError) -> JSON {
        guard bytes.count <= maxBytes else { throw ParseError(reason: "document larger than \(maxBytes) bytes", offset: maxBytes) }
        var p = JSONParser(bytes: bytes)
        p.skipSpace()
        let value = try p.value(depth: 0)
        p.skipSpace()
        guard p.at == bytes.count else { throw p.error("data after the document") }
        return value
    }

    public subscript(key: String) -> JSON? {
        if case let .object(members) = self { return members[key] }
        return nil
    }

    /// The number as an Int, within ±2^53 (where Doubles hold every integer).
    public var int: Int? {
        guard case let .number(n) = self, n.isFinite, n.magnitude <= 9_007_199_254_740_992 else { return nil }
        return Int(n)
    }

    public var double: Double? {
        if case let .number(n) = self, n.isFinite { return n }
        return nil
    }

    public var string: String? {
        if case let .string(s) = self { return s }
        return nil
    }

    public var bool: Bool? {
        if case let .bool(b) = self { return b }
        return nil
    }

    public var array: [JSON]? {
        if case let .array(a) = self { return a }
        return nil
    }
}

struct JSONParser {
    let bytes: [UInt8]
    var at = 0

    init(bytes: [UInt8]) { self.bytes = bytes }

    func error(_ reason: String) -> JSON.ParseError { JSON.ParseError(reason: reason, offset: at) }

    var peek: UInt8? { at < bytes.count ? bytes[at] : nil }

    mutating func skipSpace() {
        while let c = peek, c == 0x20 || c == 0x09 || c == 0x0A || c == 0x0D { at += 1 }
    }

    mutating func value(depth: Int) throws(JSON.ParseError) -> JSON {
        guard let c = peek else { throw error("unexpected end") }
        switch c {
        case UInt8(ascii: "{"): return try object(depth: depth + 1)
        case UInt8(ascii: "["): return try array(depth: depth + 1)
        case UInt8(ascii: "\""): return .string(try string())
        case UInt8(ascii: "t"): try literal("true"); return .bool(true)
        case UInt8(ascii: "f"): try literal("false"); return .bool(false)
        case UInt8(ascii: "n"): try literal("null"); return .null
        case UInt8(ascii: "-"), UInt8(ascii: "0")...UInt8(ascii: "9"): return .number(try number())
        default: throw error("unexpected byte \(c)")
        }
    }

    mutating func literal(_ word: String) throws(JSON.ParseError) {
        for c in word.utf8 {
            guard peek == c else { throw error("bad literal") }
            at += 1
        }
    }

    mutating func object(depth: Int) throws(JSON.ParseError) -> JSON {
        guard depth <= JSON.maxDepth else { throw error("nested deeper than \(JSON.maxDepth)") }
        at += 1
        var members: [String: JSON] = [:]
        skipSpace()
        if peek == UInt8(ascii: "}") { at += 1; return .object(members) }
        while true {
            skipSpace()
            guard peek == UInt8(ascii: "\"") else { throw error("expected a key") }
            let key = try string()
            skipSpace()
            guard peek == UInt8(ascii: ":") else { throw error("expected ':'") }
            at += 1
            skipSpace()
            members[key] = try value(depth: depth)
            skipSpace()
            switch peek {
            case UInt8(ascii: ","): at += 1
            case UInt8(ascii: "}"): at += 1; return .object(members)
            default: throw error("expected ',' or '}'")
            }
        }
    }

    mutating func array(depth: Int) throws(JSON.ParseError) -> JSON {
        guard depth <= JSON.maxDepth else { throw error("nested deeper than \(JSON.maxDepth)") }
        at += 1
        var items: [JSON] = []
        skipSpace()
        if peek == UInt8(ascii: "]") { at += 1; return .array(items) }
        while true {
            skipSpace()
            items.append(try value(depth: depth))
            skipSpace()
            switch peek {
            case UInt8(ascii: ","): at += 1
            case UInt8(ascii: "]"): at += 1; return .array(items)
            default: throw error("expected ',' or ']'")
            }
        }
    }

    /// -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?, then converted by the standard library.
    mutating func number() throws(JSON.ParseError) -> Double {
        let start = at
        if peek == UInt8(ascii: "-") { at += 1 }
        guard let first = peek, isDigit(first) else { throw error("expected a digit") }
        at += 1
        if first != UInt8(ascii: "0") { while let c = peek, isDigit(c) { at += 1 } }
        if peek == UInt8(ascii: ".") {
            at += 1
            guard let c = peek, isDigit(c) else { throw error("expected a digit after '.'") }
            while let c = peek, isDigit(c) { at += 1 }
        }
        if peek == UInt8(ascii: "e") || peek == UInt8(ascii: "E") {
            at += 1
            if peek == UInt8(ascii: "+") || peek == UInt8(ascii: "-") { at += 1 }
            guard let c = peek, isDigit(c) else { throw error("expected a digit in the exponent") }
            while let c = peek, isDigit(c) { at += 1 }
        }
        guard at - start <= 400, let n = Double(String(decoding: bytes[start..<at], as: UTF8.self)) else {
            throw JSON.ParseError(reason: "bad number", offset: start)
        }
        return n
    }

    /// A string from the opening quote; escapes decoded, invalid UTF-8 and lone surrogates
    /// replaced with U+FFFD, raw control characters refused.
    mutating func string() throws(JSON.ParseError) -> String {
        at += 1
        var out: [UInt8] = []
        while true {
            guard let c = peek else { throw error("unterminated string") }
            at += 1
            switch c {
            case UInt8(ascii: "\""):
                return String(decoding: out, as: UTF8.self)
            case UInt8(ascii: "\\"):
                guard let e = peek else { throw error("unterminated string") }
                at += 1
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"): out.append(e)
                case UInt8(ascii: "b"): out.append(0x08)
                case UInt8(ascii: "f"): out.append(0x0C)
                case UInt8(ascii: "n"): out.append(0x0A)
                case UInt8(ascii: "r"): out.append(0x0D)
                case UInt8(ascii: "t"): out.append(0x09)
                case UInt8(ascii: "u"): appendScalar(try unicodeEscape(), to: &out)
                default: throw error("bad escape")
                }
            case 0..<0x20:
                throw error("control character in a string")
            default:
                out.append(c)
            }
        }
    }

    /// After `\u`: four hex digits, and a second `\uXXXX` when they are a high surrogate.
    mutating func unicodeEscape() throws(JSON.ParseError) -> Unicode.Scalar {
        let unit = try hex4()
        if unit >= 0xD800 && unit < 0xDC00, at + 1 < bytes.count,
           bytes[at] == UInt8(ascii: "\\"), bytes[at + 1] == UInt8(ascii: "u") {
            let mark = at
            at += 2
            let low = try hex4()
            if low >= 0xDC00 && low < 0xE000 {
                return Unicode.Scalar(0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00)) ?? "\u{FFFD}"
            }
            at = mark
        }
        return Unicode.Scalar(unit) ?? "\u{FFFD}"
    }

    mutating func hex4() throws(JSON.ParseError) -> UInt32 {
        guard at + 4 <= bytes.count else { throw error("unterminated \\u escape") }
        var v: UInt32 = 0
        for _ in 0..<4 {
            let c = bytes[at]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            case UInt8(ascii: "A")...UInt8(ascii: "F"): d = UInt32(c - UInt8(ascii: "A") + 10)
            default: throw error("bad \\u escape")
            }
            v = v << 4 | d
            at += 1
        }
        return v
    }

    func appendScalar(_ s: Unicode.Scalar, to out: inout [UInt8]) {
        out.append(contentsOf: String(Character(s)).utf8)
    }

    func isDigit(_ c: UInt8) -> Bool { c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9") }
}
