import ApusProtocols

/// The bytes of one access line, written in place: room is made once per value, then bytes
/// are stored through a pointer. An Array's append of a buffer costs a generic call with a
/// uniqueness check each time, which for a dozen short pieces a line cost more than the
/// line. The memory lives as long as the worker's `AccessLog`.
struct LineBuffer {
    private(set) var base: UnsafeMutablePointer<UInt8>
    private(set) var count = 0
    private var capacity: Int

    init(capacity: Int = 1024) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    var bytes: UnsafeBufferPointer<UInt8> { UnsafeBufferPointer(start: base, count: count) }

    mutating func reset() { count = 0 }

    @inline(__always) mutating func reserve(_ n: Int) {
        if count + n > capacity { grow(count + n) }
    }

    private mutating func grow(_ need: Int) {
        var c = capacity * 2
        while c < need { c *= 2 }
        let fresh = UnsafeMutablePointer<UInt8>.allocate(capacity: c)
        fresh.update(from: base, count: count)
        base.deallocate()
        base = fresh
        capacity = c
    }

    @inline(__always) mutating func append(_ b: UInt8) {
        reserve(1)
        base[count] = b
        count += 1
    }

    @inline(__always) mutating func append(_ raw: UnsafeRawBufferPointer) {
        guard let from = raw.baseAddress, raw.count > 0 else { return }
        reserve(raw.count)
        (base + count).update(from: from.assumingMemoryBound(to: UInt8.self), count: raw.count)
        count += raw.count
    }

    @inline(__always) mutating func append(_ a: [UInt8]) { a.withUnsafeBytes { append($0) } }

    mutating func append(_ s: StaticString) {
        append(UnsafeRawBufferPointer(start: s.utf8Start, count: s.utf8CodeUnitCount))
    }

    /// `v` in decimal (0 for a negative number).
    mutating func decimal(_ v: Int) {
        var n = max(0, v)
        var digits = 1
        var t = n
        while t >= 10 { t /= 10; digits += 1 }
        reserve(digits)
        var p = base + count + digits
        repeat {
            p -= 1
            p.pointee = UInt8(truncatingIfNeeded: 48 + n % 10)
            n /= 10
        } while n > 0
        count += digits
    }

    /// `v` in lower-case hexadecimal.
    mutating func hex(_ v: UInt64) {
        var shift = 60
        while shift > 0 && (v >> UInt64(shift)) & 0xf == 0 { shift -= 4 }
        reserve(16)
        while shift >= 0 {
            let d = UInt8(truncatingIfNeeded: (v >> UInt64(shift)) & 0xf)
            base[count] = d < 10 ? 48 + d : 87 + d
            count += 1
            shift -= 4
        }
    }

    mutating func textEscaped(_ v: UnsafeRawBufferPointer) {
        reserve(v.count * textEscapeGrowth)
        count += textEscape(v, into: base + count)
    }

    mutating func jsonEscaped(_ v: UnsafeRawBufferPointer) {
        reserve(v.count * jsonEscapeGrowth)
        count += jsonEscape(v, into: base + count)
    }
}
