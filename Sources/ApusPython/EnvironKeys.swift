#if canImport(Glibc)
import Glibc
#endif
import ApusProtocols

/// The environ keys of request header names (`HTTP_USER_AGENT` for `User-Agent`) or of uwsgi
/// vars (the name as it is), made once per distinct name and kept in a fixed table: 512
/// slots, open addressing, 8 probes. A name that finds no slot gets a key of its own that the
/// table holds only until the next call, so a client sending ever new names costs no memory.
///
/// A returned key is borrowed: valid until the next `key(for:)`, which is all a caller needs
/// to put it in the environ (the dict then holds its own reference). Keys in the table are
/// kept for the process.
struct EnvironKeyTable: ~Copyable {
    enum Kind {
        /// Header names: matched case-insensitively, keyed "HTTP_" + upper case, "-" as "_".
        case httpHeader
        /// uwsgi vars: matched and keyed exactly, as latin-1.
        case uwsgiVar
    }

    // Structs rather than tuples: the Swift runtime builds a tuple's type at run time, in
    // every worker (see "Memory of a worker" in docs/architecture.md).
    private struct Slot {
        /// The name as matched: lower-cased for headers.
        let name: [UInt8]
        let key: PyBorrowed
    }

    private static let size = 512
    private let api: CPythonAPI
    private let kind: Kind
    private var slots: [Slot?] = Array(repeating: nil, count: EnvironKeyTable.size)
    /// The last key made for a name that found no slot.
    private var scratch: PyOwned? = nil

    init(api: CPythonAPI, kind: Kind) {
        self.api = api
        self.kind = kind
    }

    mutating func key(for name: UnsafeRawBufferPointer) -> PyBorrowed {
        let fold = kind == .httpHeader
        var h: UInt32 = 2166136261
        for b in name { h = (h ^ UInt32(fold ? b | 0x20 : b)) &* 16777619 }
        var i = Int(h) & (Self.size - 1)
        for _ in 0..<8 {
            if let s = slots[i] {
                if s.name.count == name.count, Self.equal(s.name, name, fold: fold) { return s.key }
            } else {
                let key = makeKey(name, intern: true).keepForever()
                slots[i] = Slot(name: fold ? name.map(asciiLower) : Array(name), key: key)
                return key
            }
            i = (i + 1) & (Self.size - 1)
        }
        let key = makeKey(name, intern: false)
        let borrowed = key.borrow
        scratch = consume key  // releases the one before
        return borrowed
    }

    @inline(__always) private static func equal(_ stored: [UInt8], _ b: UnsafeRawBufferPointer, fold: Bool) -> Bool {
        stored.withUnsafeBytes { a in
            fold ? equalsIgnoringCase(b, lowercased: a) : (b.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, b.count) == 0)
        }
    }

    /// A new key. Interned (one object per name across the process) when it is kept in the
    /// table and ASCII; anything else is decoded as latin-1.
    private func makeKey(_ name: UnsafeRawBufferPointer, intern: Bool) -> PyOwned {
        var key: [UInt8] = []
        key.reserveCapacity(name.count + 6)
        var ascii = true
        switch kind {
        case .uwsgiVar:
            key.append(contentsOf: name)
            ascii = !name.contains { $0 >= 0x80 }
        case .httpHeader:
            // The HTTP parser admits only tokens (ASCII) as names.
            appendLiteral("HTTP_", &key)
            for b in name {
                switch b {
                case UInt8(ascii: "-"): key.append(UInt8(ascii: "_"))
                case 97...122: key.append(b - 32)
                default:
                    ascii = ascii && b < 0x80
                    key.append(b)
                }
            }
        }
        if !intern || !ascii || key.contains(0) { return api.latin1(key) }
        key.append(0)
        return api.interned(nulTerminated: key)
    }
}
