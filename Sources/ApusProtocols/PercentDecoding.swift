// PATH_INFO decoding for PEP 3333: `%XX` escapes are decoded to raw bytes
// (`%2F` included, as other WSGI servers do); an invalid or truncated escape
// (`%zz`, `%4` at the end) is kept literally. No other transformation.

/// True if `bytes` contains a `%` (and so may need `percentDecode`).
public func needsPercentDecoding(_ bytes: UnsafeRawBufferPointer) -> Bool {
    for b in bytes where b == 0x25 { return true }
    return false
}

/// Decodes `%XX` escapes; see the file comment for the exact rules.
public func percentDecode(_ bytes: UnsafeRawBufferPointer) -> [UInt8] {
    var out = [UInt8]()
    out.reserveCapacity(bytes.count)
    let n = bytes.count
    var i = 0
    while i < n {
        let b = bytes[i]
        if b == 0x25 && i &+ 2 < n, let hi = hexValue(bytes[i &+ 1]), let lo = hexValue(bytes[i &+ 2]) {
            out.append(UInt8(truncatingIfNeeded: hi << 4 | lo))
            i &+= 3
        } else {
            out.append(b)
            i &+= 1
        }
    }
    return out
}
