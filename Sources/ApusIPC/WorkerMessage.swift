#if canImport(Glibc)
import Glibc
#endif

/// What a worker (or a zygote) tells the master over the shared status pipe.
/// Fixed 16-byte records: writes up to PIPE_BUF are atomic, so many writers can share one
/// pipe without framing.
public struct WorkerMessage: Equatable, Sendable {
    public enum Kind: UInt32, Sendable {
        /// The worker imported the app and accepts connections.
        case ready = 1
        /// The zygote started Python (and with --preload imported the app) and can fork workers.
        case zygoteReady = 2
        /// A worker forked by the zygote is running (tells the master its pid).
        case started = 3
    }
    public var kind: Kind
    public var slot: UInt32
    public var pid: Int32
    public var generation: UInt32

    public static let size = 16

    public init(kind: Kind, slot: UInt32, pid: Int32, generation: UInt32) {
        self.kind = kind
        self.slot = slot
        self.pid = pid
        self.generation = generation
    }

    public func encoded() -> [UInt8] {
        var out = [UInt8]()
        out.reserveCapacity(Self.size)
        for v in [kind.rawValue, slot, UInt32(bitPattern: pid), generation] {
            withUnsafeBytes(of: v.littleEndian) { out.append(contentsOf: $0) }
        }
        return out
    }

    public init?(_ bytes: ArraySlice<UInt8>) {
        guard bytes.count >= Self.size else { return nil }
        func word(_ i: Int) -> UInt32 {
            let b = bytes.startIndex + i * 4
            return UInt32(bytes[b]) | UInt32(bytes[b + 1]) << 8 | UInt32(bytes[b + 2]) << 16 | UInt32(bytes[b + 3]) << 24
        }
        guard let kind = Kind(rawValue: word(0)) else { return nil }
        self.init(kind: kind, slot: word(1), pid: Int32(bitPattern: word(2)), generation: word(3))
    }

    /// Writes the record to `fd` (one atomic write).
    public func send(to fd: Int32) {
        let bytes = encoded()
        _ = bytes.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
    }
}

/// A request from the master to the zygote: fork a worker for this slot and generation.
public struct SpawnRequest: Equatable, Sendable {
    public var slot: UInt32
    public var generation: UInt32
    public init(slot: UInt32, generation: UInt32) { self.slot = slot; self.generation = generation }

    public func send(to fd: Int32) -> Bool {
        var words = [slot.littleEndian, generation.littleEndian]
        return words.withUnsafeMutableBytes { write(fd, $0.baseAddress, 8) } == 8
    }

    /// Blocks for the next request; nil at end of file.
    public static func receive(from fd: Int32) -> SpawnRequest? {
        var words = [UInt32](repeating: 0, count: 2)
        var got = 0
        while got < 8 {
            let n = words.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, 8 - got) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            got += n
        }
        return SpawnRequest(slot: UInt32(littleEndian: words[0]), generation: UInt32(littleEndian: words[1]))
    }
}

/// Exit codes with a meaning for the master.
public enum WorkerExit {
    /// The worker (or zygote) could not import the application.
    public static let appLoadError: Int32 = 4
    /// The worker could not load libpython or start.
    public static let bootError: Int32 = 3
    /// The `--warmup` request did not answer 2xx.
    public static let warmupFailed: Int32 = 5
}
