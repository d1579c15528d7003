// Byte-level helpers shared by the request parser, the chunked decoder and the
// response side. Everything here works on raw bytes; no String is created.

@usableFromInline let cr: UInt8 = 0x0D
@usableFromInline let lf: UInt8 = 0x0A
@usableFromInline let sp: UInt8 = 0x20
@usableFromInline let ht: UInt8 = 0x09
@usableFromInline let colon: UInt8 = 0x3A
@usableFromInline let comma: UInt8 = 0x2C
@usableFromInline let del: UInt8 = 0x7F

/// RFC 9110 `tchar` as two 64-bit masks (bytes 0-63 and 64-127).
@usableFromInline let tcharMaskLow: UInt64 = 0x03FF_6CFA_0000_0000
@usableFromInline let tcharMaskHigh: UInt64 = 0x57FF_FFFF_C7FF_FFFE

/// True if `b` is an RFC 9110 token character.
@inline(__always) @usableFromInline
func isTchar(_ b: UInt8) -> Bool {
    if b < 64 { return (tcharMaskLow >> UInt64(b)) & 1 != 0 }
    if b < 128 { return (tcharMaskHigh >> UInt64(b &- 64)) & 1 != 0 }
    return false
}

@inline(__always) @usableFromInline
func isOWS(_ b: UInt8) -> Bool { b == sp || b == ht }

/// `b` with an ASCII upper-case letter made lower case; any other byte as it is.
@inlinable @inline(__always)
public func asciiLower(_ b: UInt8) -> UInt8 { (b >= 0x41 && b <= 0x5A) ? b | 0x20 : b }

/// Value of a hexadecimal digit, or nil.
@inline(__always) @usableFromInline
func hexValue(_ b: UInt8) -> Int? {
    switch b {
    case 0x30...0x39: return Int(b &- 0x30)
    case 0x41...0x46: return Int(b &- 0x41 &+ 10)
    case 0x61...0x66: return Int(b &- 0x61 &+ 10)
    default: return nil
    }
}

/// Whether `bytes` equals `lowercased` with ASCII letters compared without case;
/// `lowercased` must be in lower case. The one case-insensitive comparison of Apus: the
/// overloads below and `nameEquals` (the request parser's word-at-a-time form of it for
/// token names, tested to agree) come down to it.
@inlinable @inline(__always)
public func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, lowercased: UnsafeRawBufferPointer) -> Bool {
    guard bytes.count == lowercased.count else { return false }
    var i = 0
    while i < bytes.count {
        if asciiLower(bytes[i]) != lowercased[i] { return false }
        i &+= 1
    }
    return true
}

/// `equalsIgnoringCase` with a literal.
@inlinable @inline(__always)
public func equalsIgnoringCase(_ bytes: UnsafeRawBufferPointer, _ lowercased: StaticString) -> Bool {
    equalsIgnoringCase(bytes, lowercased: UnsafeRawBufferPointer(start: lowercased.utf8Start, count: lowercased.utf8CodeUnitCount))
}

/// `equalsIgnoringCase` of `buffer[range]` with a literal.
@inlinable @inline(__always)
public func equalsIgnoringCase(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercased: StaticString) -> Bool {
    equalsIgnoringCase(UnsafeRawBufferPointer(rebasing: buffer[range]), lowercased)
}

/// Case-insensitive comparison of a field name with `lowercased`, which holds only
/// lower-case letters, digits and '-'. Compares up to 8 bytes at a time: setting
/// bit 0x20 of every byte folds case exactly here, because `range` must hold only
/// `tchar` (as every name the parser keeps does), and the only tchar that bit maps
/// onto a lower-case letter, a digit or '-' are that letter's upper case and the
/// byte itself.
@inline(__always) @usableFromInline
func nameEquals(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>, _ lowercased: StaticString) -> Bool {
    let count = lowercased.utf8CodeUnitCount
    guard range.count == count, let base = buffer.baseAddress else { return false }
    let s = base + range.lowerBound
    let l = UnsafeRawPointer(lowercased.utf8Start)
    @inline(__always) func same<T: FixedWidthInteger>(_ offset: Int, _: T.Type) -> Bool {
        (s.loadUnaligned(fromByteOffset: offset, as: T.self) | T(truncatingIfNeeded: 0x2020_2020_2020_2020 as UInt64))
            == l.loadUnaligned(fromByteOffset: offset, as: T.self)
    }
    // Two loads that overlap when the length is not a multiple of their size.
    if count >= 8 {
        var i = 0
        while i &+ 8 < count {
            if !same(i, UInt64.self) { return false }
            i &+= 8
        }
        return same(count &- 8, UInt64.self)
    }
    if count >= 4 { return same(0, UInt32.self) && same(count &- 4, UInt32.self) }
    if count >= 2 { return same(0, UInt16.self) && same(count &- 2, UInt16.self) }
    return count == 0 || same(0, UInt8.self)
}

/// Case-sensitive comparison of `buffer[range]` with `literal`.
@inline(__always) @usableFromInline
func equalsExactly(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>, _ literal: StaticString) -> Bool {
    let count = literal.utf8CodeUnitCount
    guard range.count == count else { return false }
    let p = literal.utf8Start
    var i = 0
    while i < count {
        if buffer[range.lowerBound &+ i] != p[i] { return false }
        i &+= 1
    }
    return true
}

/// Trims optional whitespace (SP / HTAB) on both sides of `range`.
@inline(__always) @usableFromInline
func trimOWS(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> Range<Int> {
    var lo = range.lowerBound
    var hi = range.upperBound
    while lo < hi && isOWS(buffer[lo]) { lo &+= 1 }
    while hi > lo && isOWS(buffer[hi &- 1]) { hi &-= 1 }
    return lo..<hi
}

/// Parses a non-empty string of ASCII digits into a non-negative Int.
/// Returns nil for an empty range, any non-digit, or overflow.
@usableFromInline
func parseDecimal(_ buffer: UnsafeRawBufferPointer, _ range: Range<Int>) -> Int? {
    if range.isEmpty { return nil }
    var value = 0
    var i = range.lowerBound
    while i < range.upperBound {
        let b = buffer[i]
        guard b >= 0x30 && b <= 0x39 else { return nil }
        let d = Int(b &- 0x30)
        if value > (Int.max - d) / 10 { return nil }
        value = value * 10 + d
        i &+= 1
    }
    return value
}

/// Appends the bytes of a literal.
@inlinable
public func appendLiteral(_ s: StaticString, _ out: inout [UInt8]) {
    out.append(contentsOf: UnsafeBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
}

/// Calls `body` with the decimal digits of `n` (0 or more), at least `minimumDigits` of
/// them (zero-padded, up to 24), formatted on the stack: no allocation, no String. The one
/// integer-to-decimal formatter of Apus.
@inlinable
public func withDecimalDigits<R>(_ n: Int, minimumDigits: Int = 1, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    var digits: (UInt64, UInt64, UInt64) = (0, 0, 0)
    return withUnsafeMutableBytes(of: &digits) { d in
        let least = d.count &- min(minimumDigits, d.count)
        var i = d.count
        var v = n
        repeat {
            i -= 1
            d[i] = UInt8(truncatingIfNeeded: 48 + v % 10)
            v /= 10
        } while v > 0 || i > least
        return body(UnsafeRawBufferPointer(rebasing: d[i..<d.count]))
    }
}

/// Appends the decimal digits of `n` (0 or more), at least `minimumDigits` of them.
@inlinable
public func appendDecimal(_ n: Int, minimumDigits: Int = 1, to out: inout [UInt8]) {
    if n < 10 && minimumDigits <= 1 { out.append(UInt8(truncatingIfNeeded: 48 + n)); return }
    withDecimalDigits(n, minimumDigits: minimumDigits) { out.append(contentsOf: $0) }
}
