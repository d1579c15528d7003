#if canImport(Glibc)
import Glibc
#endif
import ApusSys

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
        /// The worker served its `--max-requests`: replace it (the new one ready first).
        case maxRequests = 4
        /// A request outlived `--harakiri` in this worker, which logged it and answered its
        /// client: replace it (the new one ready first).
        case harakiri = 5
        /// The app called `apus.reload()` (`uwsgi.reload()`): a graceful reload, like FIFO `r`.
        case reloadRequested = 6
        /// The app called `apus.chain_reload()`: a chain reload, like FIFO `c`.
        case chainReloadRequested = 7
        /// The app called `apus.workers_reload()`: a worker reload, like FIFO `w`.
        case workersReloadRequested = 8
        /// `--py-autoreload`/`--reload`: a source file of the app changed (a chain reload).
        case sourceChanged = 9
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

    /// Writes the record to `fd` (one atomic write: 16 bytes to a blocking pipe). The write
    /// fails only when the master is gone (EPIPE), and then this process is already being
    /// stopped (its parent-death signal): there is no one left to tell.
    public func send(to fd: Int32) {
        let bytes = encoded()
        switch bytes.withUnsafeBytes({ Sys.writeAll(fd, $0) }) {
        case .done, .wouldBlock, .failed: return  // see above
        }
    }
}

/// A request from the master to the zygote: fork a worker for this slot and generation.
public struct SpawnRequest: Equatable, Sendable {
    public var slot: UInt32
    public var generation: UInt32
    /// The worker's number within its generation, 1...N (`apus.worker_id()`, uWSGI's
    /// numbering); a replacement takes the number of the worker it replaces.
    public var number: UInt32
    public init(slot: UInt32, generation: UInt32, number: UInt32 = 1) {
        self.slot = slot
        self.generation = generation
        self.number = number
    }

    static let size = 12

    /// Writes the request to the zygote's command pipe. False when it could not be
    /// written whole: the zygote is gone (EPIPE), and its exit is handled when reaped.
    public func send(to fd: Int32) -> Bool {
        let words = [slot.littleEndian, generation.littleEndian, number.littleEndian]
        return words.withUnsafeBytes { Sys.writeAll(fd, $0) } == .done(Self.size)
    }

    /// Blocks for the next request; nil at end of file (the master closed the pipe) or
    /// when the pipe fails.
    public static func receive(from fd: Int32) -> SpawnRequest? {
        var words = [UInt32](repeating: 0, count: 3)
        var got = 0
        while got < size {
            let r = words.withUnsafeMutableBytes { buf in Sys.call { read(fd, buf.baseAddress! + got, size - got) } }
            guard case let .done(n) = r, n > 0 else { return nil }
            got += n
        }
        return SpawnRequest(slot: UInt32(littleEndian: words[0]), generation: UInt32(littleEndian: words[1]),
                            number: UInt32(littleEndian: words[2]))
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
