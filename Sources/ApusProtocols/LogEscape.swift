// Escaping of access-log values, so that bytes from a client (a header, a path) can never
// end a line or a field early, whatever reads the log: `splitlines()` in Python also splits
// at U+0085, U+2028 and U+2029, and a JSON reader at an unescaped quote.

private let hexDigits: StaticString = "0123456789abcdef"

@inline(__always)
private func hex(_ v: UInt8) -> UInt8 { hexDigits.utf8Start[Int(v & 0xf)] }

/// Appends raw bytes with one copy (Array's append of a raw buffer goes byte by byte).
@inline(__always)
public func appendBytes(_ bytes: UnsafeRawBufferPointer, to out: inout [UInt8]) {
    out.append(contentsOf: UnsafeBufferPointer(start: bytes.baseAddress?.assumingMemoryBound(to: UInt8.self), count: bytes.count))
}

/// The most bytes `textEscape` writes per byte of input (\xNN).
public let textEscapeGrowth = 4
/// The most bytes `jsonEscape` writes per byte of input (\u00XX).
public let jsonEscapeGrowth = 6

@inline(__always)
private func needsEscape(_ b: UInt8) -> Bool { b < 0x20 || b >= 0x7f || b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") }

/// Whether none of the 8 bytes of `w` needs escaping in either escaping: all are 0x20...0x7e
/// and none is `"` or `\` (bit tricks over the whole word, so a run of plain bytes is
/// checked and copied 8 at a time).
@inline(__always)
private func wordIsPlain(_ w: UInt64) -> Bool {
    let ones: UInt64 = 0x0101_0101_0101_0101
    let highs: UInt64 = 0x8080_8080_8080_8080
    @inline(__always) func hasZeroByte(_ v: UInt64) -> UInt64 { (v &- ones) & ~v & highs }
    // With no high bit set, a byte < 0x20 borrows into its own high bit.
    let bad = (w & highs) | ((w &- ones &* 0x20) & ~w & highs) | hasZeroByte(w ^ (ones &* 0x7f))
        | hasZeroByte(w ^ (ones &* 0x22)) | hasZeroByte(w ^ (ones &* 0x5c))
    return bad == 0
}

/// Copies the plain 8-byte words at the start of `p[i..<count]` to `out + n`; moves `i`, `n`.
@inline(__always)
private func copyPlainWords(_ p: UnsafePointer<UInt8>, _ i: inout Int, _ count: Int, _ out: UnsafeMutablePointer<UInt8>, _ n: inout Int) {
    while i + 8 <= count {
        let w = UnsafeRawPointer(p + i).loadUnaligned(as: UInt64.self)
        guard wordIsPlain(w) else { return }
        UnsafeMutableRawPointer(out + n).storeBytes(of: w, as: UInt64.self)
        i += 8
        n += 8
    }
}

/// Writes `value` for a text line at `out` (room for `textEscapeGrowth` bytes a byte) and
/// returns the bytes written: bytes below 0x20, `"`, `\` and bytes 0x7f and up as \xNN
/// (nginx's escaping), so the line is ASCII.
public func textEscape(_ value: UnsafeRawBufferPointer, into out: UnsafeMutablePointer<UInt8>) -> Int {
    guard let p = value.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return 0 }
    var n = 0
    var i = 0
    let count = value.count
    while i < count {
        copyPlainWords(p, &i, count, out, &n)
        if i == count { break }
        let b = p[i]
        i &+= 1
        if needsEscape(b) {
            out[n] = UInt8(ascii: "\\"); out[n &+ 1] = UInt8(ascii: "x"); out[n &+ 2] = hex(b >> 4); out[n &+ 3] = hex(b)
            n &+= 4
        } else {
            out[n] = b
            n &+= 1
        }
    }
    return n
}

/// Writes `value` as the content of a JSON string at `out` (room for `jsonEscapeGrowth`
/// bytes a byte) and returns the bytes written: `"` and `\` backslashed, bytes below 0x20
/// and 0x7f as \u00XX, U+0085, U+2028 and U+2029 as \u0085, \u2028, \u2029, other
/// well-formed UTF-8 copied, and each byte of ill-formed UTF-8 as \u00XX (the byte read as
/// Latin-1, as PEP 3333 reads header bytes), so the output is always valid UTF-8.
public func jsonEscape(_ value: UnsafeRawBufferPointer, into out: UnsafeMutablePointer<UInt8>) -> Int {
    var n = 0
    func u(_ a: UInt8, _ b: UInt8) {
        out[n] = UInt8(ascii: "\\"); out[n + 1] = UInt8(ascii: "u")
        out[n + 2] = hex(a >> 4); out[n + 3] = hex(a); out[n + 4] = hex(b >> 4); out[n + 5] = hex(b)
        n += 6
    }
    guard let p = value.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return 0 }
    var i = 0
    let count = value.count
    while i < count {
        copyPlainWords(p, &i, count, out, &n)
        if i == count { break }
        let b = p[i]
        if b < 0x80 {
            if b < 0x20 || b == 0x7f { u(0, b) } else if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") {
                out[n] = UInt8(ascii: "\\"); out[n + 1] = b
                n += 2
            } else {
                out[n] = b
                n += 1
            }
            i += 1
            continue
        }
        let length = utf8SequenceLength(value, at: i)
        if length == 0 {
            u(0, b)
            i += 1
        } else if length == 2 && b == 0xc2 && value[i + 1] == 0x85 {
            u(0, 0x85)
            i += 2
        } else if length == 3 && b == 0xe2 && value[i + 1] == 0x80 && (value[i + 2] == 0xa8 || value[i + 2] == 0xa9) {
            u(0x20, value[i + 2] - 0x80)
            i += 3
        } else {
            for k in 0..<length { out[n + k] = value[i + k] }
            n += length
            i += length
        }
    }
    return n
}

/// `textEscape` appended to an array.
public func appendTextEscaped(_ value: UnsafeRawBufferPointer, to out: inout [UInt8]) {
    out.append(contentsOf: [UInt8](unsafeUninitializedCapacity: max(1, value.count * textEscapeGrowth)) { buf, n in
        n = textEscape(value, into: buf.baseAddress!)
    })
}

/// `jsonEscape` appended to an array.
public func appendJSONEscaped(_ value: UnsafeRawBufferPointer, to out: inout [UInt8]) {
    out.append(contentsOf: [UInt8](unsafeUninitializedCapacity: max(1, value.count * jsonEscapeGrowth)) { buf, n in
        n = jsonEscape(value, into: buf.baseAddress!)
    })
}

/// The length of the well-formed UTF-8 sequence that starts at `i` (a byte 0x80 or up),
/// or 0 when it is not one (Unicode's table 3-7: no overlongs, no surrogates, nothing
/// above U+10FFFF, no truncated sequence).
func utf8SequenceLength(_ v: UnsafeRawBufferPointer, at i: Int) -> Int {
    let b = v[i]
    let n = v.count - i
    func cont(_ k: Int, _ lo: UInt8 = 0x80, _ hi: UInt8 = 0xbf) -> Bool { k < n && v[i + k] >= lo && v[i + k] <= hi }
    switch b {
    case 0xc2...0xdf: return cont(1) ? 2 : 0
    case 0xe0: return cont(1, 0xa0) && cont(2) ? 3 : 0
    case 0xe1...0xec, 0xee...0xef: return cont(1) && cont(2) ? 3 : 0
    case 0xed: return cont(1, 0x80, 0x9f) && cont(2) ? 3 : 0
    case 0xf0: return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0
    case 0xf1...0xf3: return cont(1) && cont(2) && cont(3) ? 4 : 0
    case 0xf4: return cont(1, 0x80, 0x8f) && cont(2) && cont(3) ? 4 : 0
    default: return 0
    }
}

/// Appends `v` in lower-case hexadecimal, without allocating.
public func appendLowerHex(_ v: UInt64, to out: inout [UInt8]) {
    var shift = 60
    while shift > 0 && (v >> UInt64(shift)) & 0xf == 0 { shift -= 4 }
    while shift >= 0 {
        out.append(hex(UInt8(truncatingIfNeeded: v >> UInt64(shift))))
        shift -= 4
    }
}
