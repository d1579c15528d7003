@testable import ApusMaster

/// `count` ready workers of generation 1, pids 100, 101, ..., started at 0, 1, ... (the
/// table the recycling tests start from).
func readyTable(_ count: Int) -> WorkerTable {
    var table = WorkerTable(desired: count)
    for i in 0..<count {
        let slot = table.freeSlot()
        table.add(slot: slot, generation: 1, now: Double(i))
        _ = table.started(slot: slot, generation: 1, pid: 100 + Int32(i))
        _ = table.ready(slot: slot, pid: 100 + Int32(i))
    }
    return table
}
