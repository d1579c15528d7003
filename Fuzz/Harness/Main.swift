// libFuzzer entry point for the ApusProtocols parsers and the worker's ConnectionMachine. This
// file is compiled together with Sources/ApusProtocols/*.swift,
// Sources/ApusWorker/ConnectionMachine.swift and the pure files of Sources/ApusTop into one module (scripts/fuzz.sh), so the harness
// sees the module's internal functions (parseIPv4, parseNode, ...) without `@testable`.
//
// One binary, several targets: APUS_FUZZ_TARGET picks one (http, chunked, uwsgi, proxy,
// forwarded, ip, connection, subscription, static, stats). Every target checks invariants, not only "no crash": a broken invariant
// is a fatalError with a one-line reason, which libFuzzer reports as a crash and saves.

#if canImport(Glibc)
import Glibc
#endif

enum FuzzTarget: String, CaseIterable {
    case http, chunked, uwsgi, proxy, forwarded, ip, connection, subscription, `static`, stats

    var run: (UnsafeRawBufferPointer) -> Void {
        switch self {
        case .http: return fuzzHTTP
        case .chunked: return fuzzChunked
        case .uwsgi: return fuzzUWSGI
        case .proxy: return fuzzProxy
        case .forwarded: return fuzzForwarded
        case .ip: return fuzzIP
        case .connection: return fuzzConnection
        case .subscription: return fuzzSubscription
        case .static: return fuzzStatic
        case .stats: return fuzzStats
        }
    }
}

nonisolated(unsafe) var selectedTarget: FuzzTarget? = nil

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(_ argc: UnsafeMutablePointer<CInt>?, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>?) -> CInt {
    let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
    guard let raw = getenv("APUS_FUZZ_TARGET") else {
        fputs("apus-fuzz: set APUS_FUZZ_TARGET to one of: \(names)\n", stderr)
        exit(2)
    }
    guard let target = FuzzTarget(rawValue: String(cString: raw)) else {
        fputs("apus-fuzz: unknown APUS_FUZZ_TARGET \"\(String(cString: raw))\" (one of: \(names))\n", stderr)
        exit(2)
    }
    selectedTarget = target
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    // The buffer is libFuzzer's exact-size copy: a read past its end is an ASan report.
    let input = UnsafeRawBufferPointer(start: data, count: size)
    selectedTarget?.run(input)
    return 0
}

// MARK: shared helpers

/// Stops the run with a reason when an invariant does not hold.
@inline(__always)
func require(_ condition: Bool, _ reason: @autoclosure () -> String, file: StaticString = #fileID, line: UInt = #line) {
    if !condition { fatalError("invariant broken: \(reason())", file: file, line: line) }
}

/// The input as a Swift-readable string for failure messages (escaped, cut to 300 bytes).
func show(_ b: UnsafeRawBufferPointer) -> String {
    var s = ""
    for c in b.prefix(300) {
        switch c {
        case 0x0D: s += "\\r"
        case 0x0A: s += "\\n"
        case 0x09: s += "\\t"
        case 0x5C: s += "\\\\"
        case 0x20...0x7E: s += String(UnicodeScalar(c))
        default:
            let hex = String(c, radix: 16)
            s += "\\x" + (hex.count == 1 ? "0" : "") + hex
        }
    }
    return b.count > 300 ? s + "... (\(b.count) bytes)" : s
}

/// A few prefix lengths in 0..<n to re-parse: the ends, the middle and two spots picked by a
/// hash of the input (so they move as libFuzzer mutates it), plus `extra` when given.
func prefixLengths(_ b: UnsafeRawBufferPointer, extra: [Int] = []) -> [Int] {
    let n = b.count
    if n == 0 { return [] }
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for c in b { h = (h ^ UInt64(c)) &* 0x100_0000_01b3 }
    var out = [0, n - 1, n / 2, n / 4, (3 * n) / 4, Int(h % UInt64(n)), Int((h >> 32) % UInt64(n))]
    for e in extra where e >= 0 && e < n { out.append(e) }
    return out
}

/// Calls `body` with bytes 0..<k of `b` copied into a buffer of exactly k bytes, so that a
/// parser reading past the prefix is caught by ASan instead of reading the rest of `b`.
func withPrefix<R>(_ b: UnsafeRawBufferPointer, _ k: Int, _ body: (UnsafeRawBufferPointer) -> R) -> R {
    let copy = UnsafeMutableRawBufferPointer.allocate(byteCount: k, alignment: 1)
    defer { copy.deallocate() }
    if k > 0 { copy.copyMemory(from: UnsafeRawBufferPointer(rebasing: b[0..<k])) }
    return body(UnsafeRawBufferPointer(copy))
}

/// A small deterministic generator (SplitMix64) for splits and choices derived from input bytes.
struct Mix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { n <= 0 ? 0 : Int(next() % UInt64(n)) }
}

func bytesEqual(_ b: UnsafeRawBufferPointer, _ r: Range<Int>, _ literal: String) -> Bool {
    let l = Array(literal.utf8)
    return r.count == l.count && r.lowerBound >= 0 && r.upperBound <= b.count && zip(b[r], l).allSatisfy { $0 == $1 }
}
