import ApusProtocols

/// A few bytes the access log writes into many lines (the worker's number, the date), in
/// memory that lives as long as the worker's `AccessLog`: appending them retains nothing.
struct ByteRun {
    let base: UnsafeMutablePointer<UInt8>
    private(set) var count = 0
    let capacity: Int

    init(capacity: Int) {
        self.capacity = capacity
        base = .allocate(capacity: capacity)
    }

    init(_ bytes: [UInt8]) {
        self.init(capacity: bytes.count)
        set(bytes)
    }

    /// Replaces the bytes (cut at `capacity`).
    mutating func set(_ bytes: [UInt8]) {
        count = min(bytes.count, capacity)
        for i in 0..<count { base[i] = bytes[i] }
    }
}

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
        let n = raw.count
        let to = UnsafeMutableRawPointer(base + count)
        if n >= 8 && n <= 32 {
            // Most pieces are short: whole words, the last one overlapping, cost less than a
            // call to memcpy.
            var i = 0
            while i + 8 < n {
                to.storeBytes(of: from.loadUnaligned(fromByteOffset: i, as: UInt64.self), toByteOffset: i, as: UInt64.self)
                i += 8
            }
            to.storeBytes(of: from.loadUnaligned(fromByteOffset: n - 8, as: UInt64.self), toByteOffset: n - 8, as: UInt64.self)
        } else if n < 8 {
            for i in 0..<n { to.storeBytes(of: from.load(fromByteOffset: i, as: UInt8.self), toByteOffset: i, as: UInt8.self) }
        } else {
            to.copyMemory(from: from, byteCount: n)
        }
        count += n
    }

    /// Appends bytes kept in a `ByteRun`.
    @inline(__always) mutating func append(_ run: ByteRun) { append(UnsafeRawBufferPointer(start: run.base, count: run.count)) }

    @inline(__always) mutating func append(_ a: [UInt8]) { a.withUnsafeBytes { append($0) } }

    @inline(__always) mutating func append(_ s: StaticString) {
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
        var shift = v == 0 ? 0 : (63 - v.leadingZeroBitCount) / 4 * 4
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
