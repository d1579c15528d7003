#if canImport(Glibc)
import Glibc
#endif

/// Open-connection counts of every worker, in memory shared by the master and all workers
/// (an anonymous shared mapping made by the master before the first fork).
///
/// Workers share one listening queue; left alone, the kernel keeps waking the same worker
/// and one process ends up with most keep-alive connections. With the tally, a worker that
/// has more connections than the least loaded one (plus one) stops accepting until the
/// others catch up. Counts are hints: read and written without locks. A negative count marks
/// a slot with no accepting worker (free, or draining after a reload) and is skipped.
public final class ConnectionTally: @unchecked Sendable {
    public static let maxSlots = 1024
    private let base: UnsafeMutablePointer<Int32>  // [0]: slots in use; [1 + slot]: count

    public init() {
        let bytes = (Self.maxSlots + 1) * MemoryLayout<Int32>.size
        let p = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0)
        precondition(p != MAP_FAILED, "mmap for the connection tally failed")
        base = p!.bindMemory(to: Int32.self, capacity: Self.maxSlots + 1)
        for i in 1...Self.maxSlots { base[i] = -1 }
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
        return least == Int.max || mine <= least + 1
    }
}
