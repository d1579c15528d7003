#if canImport(Glibc)
import Glibc
#endif
import CApusSys

/// Open-connection counts of every worker, in memory shared by the master and all workers
/// (a memory file mapped by the master before the first fork; its descriptor survives an
/// upgrade in place, so the new master image maps the same counts as the old workers).
///
/// Workers share one listening queue; left alone, the kernel keeps waking the same worker
/// and one process ends up with most keep-alive connections. With the tally, a worker that
/// has more connections than the least loaded one plus `slack` stops accepting until the
/// others catch up. Counts are hints: read and written without locks. A negative count marks
/// a slot with no accepting worker (free, or draining after a reload) and is skipped.
public final class ConnectionTally: @unchecked Sendable {
    public static let maxSlots = 1024
    /// The counts, then (page-aligned) the `Scoreboard`.
    private static let tallyBytes = (maxSlots + 1) * MemoryLayout<Int32>.size
    private static let boardOffset = (tallyBytes + 4095) / 4096 * 4096
    private static let bytes = boardOffset + Scoreboard.bytes
    private let base: UnsafeMutablePointer<Int32>  // [0]: slots in use; [1 + slot]: count
    /// What each worker is doing, in the same memory file.
    public let board: Scoreboard
    /// The memory file (close-on-exec; kept open across an upgrade in place).
    public let fd: Int32

    /// New counts, every slot free.
    public init() {
        fd = apus_memfd("apus-tally", Self.bytes)
        precondition(fd >= 0, "memfd for the connection tally failed")
        let p = Self.map(fd)
        base = p.bindMemory(to: Int32.self, capacity: Self.maxSlots + 1)
        board = Scoreboard(p + Self.boardOffset)
        for i in 1...Self.maxSlots { base[i] = -1 }
    }

    /// The counts of a master image that upgraded in place, from its memory file (grown
    /// first if an older image made it smaller: the old workers map only what they knew).
    public init(adopting fd: Int32) {
        self.fd = fd
        if apus_file_size(fd) < Self.bytes {
            precondition(ftruncate(fd, off_t(Self.bytes)) == 0, "cannot grow the connection tally's memory file")
        }
        let p = Self.map(fd)
        base = p.bindMemory(to: Int32.self, capacity: Self.maxSlots + 1)
        board = Scoreboard(p + Self.boardOffset)
    }

    private static func map(_ fd: Int32) -> UnsafeMutableRawPointer {
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0)
        precondition(p != MAP_FAILED, "mmap for the connection tally failed")
        return p!
    }

    /// How many slots are in use (the master sets it to the number of workers).
    public var slots: Int {
        get { Int(base[0]) }
        set { base[0] = Int32(min(max(newValue, 0), Self.maxSlots)) }
    }

    public func count(_ slot: Int) -> Int { Int(base[1 + slot]) }

    public func set(_ slot: Int, _ value: Int) {
        guard slot < Self.maxSlots else { return }
        base[1 + slot] = Int32(value)
    }

    /// Whether `slot`, holding `mine` connections, may take another one.
    public func mayAccept(slot: Int, mine: Int) -> Bool {
        let n = slots
        var least = Int.max
        for other in 0..<n where other != slot && base[1 + other] >= 0 { least = min(least, Int(base[1 + other])) }
        return least == Int.max || mine <= least + Self.slack(least)
    }

    /// How far above the least loaded worker one may go on accepting: 1 up to 31 connections,
    /// then a sixteenth (a worker with 5,000 may be 312 ahead, 6 %).
    ///
    /// A worker out of the rotation comes back only when it looks again (every 10 ms, or on
    /// an event of its own connections, which are idle while clients are still connecting).
    /// Meanwhile the other worker takes connections until it is past the slack and leaves
    /// the rotation too: with a slack of 1 two workers passed about 4 connections per 10 ms
    /// between them, and a burst of 10,000 connections took 8.5 s to be accepted (1 s for
    /// 2,000, against 0.2 s for one worker), the rest waiting in the listen queue. A slack
    /// that grows with the count lets each turn take more, so the accept rate grows with it.
    public static func slack(_ least: Int) -> Int {
        max(1, least / 16)
    }
}
