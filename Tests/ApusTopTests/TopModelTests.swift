import Testing
@testable import ApusTop

@Test func readsTheApusExtras() throws {
    let s = try TopFixtures.snapshot(TopFixtures.apusDocument)
    #expect(s.version == "apus 0.1.0")
    #expect(s.pid == 4100)
    #expect(s.workers.count == 2)
    let w = s.workers[0]
    #expect(w.id == 1 && w.pid == 4101 && w.requests == 100 && w.status == "busy")
    #expect(w.generation == 3 && w.state == "retiring" && w.lastRT == 2250 && w.avgRT == 1500)
    #expect(w.rss == 31457280)
    // in_progress is preferred to the cores.
    #expect(w.inProgress == [InProgress(request: "GET /slow?x=1", seconds: 1.25)])
    var extras = ApusExtras()
    extras.generation = 3
    extras.incoming = 4
    extras.reload = "graceful"
    extras.reloads = 2
    extras.ready = true
    extras.stopping = false
    extras.workersWanted = 2
    extras.requests = 1107
    #expect(s.apus == extras)
}

@Test func readsUWSGIWithoutExtras() throws {
    let s = try TopFixtures.snapshot(TopFixtures.uwsgiDocument, now: 1796304358.5)
    #expect(s.version == "2.0.31")
    #expect(s.apus == nil)
    #expect(s.workers.map(\.pid) == [7983, 7984])
    #expect(s.workers[0].generation == nil && s.workers[0].state == nil && s.workers[0].lastRT == nil)
    // A core in a request: its vars name it, req_info says since when.
    #expect(s.workers[0].inProgress == [InProgress(request: "GET /slow", seconds: 2.5)])
    #expect(s.workers[1].inProgress == [])
}

@Test func wrongTypesAreAbsentNotFatal() throws {
    let s = try TopFixtures.snapshot(#"{"workers": [{"id": "1", "pid": 5, "requests": "x", "in_progress": [{"request": 3}]}, 7, null], "pid": "no", "apus": [1]}"#)
    #expect(s.workers.count == 1)
    #expect(s.workers[0].id == 0 && s.workers[0].pid == 5 && s.workers[0].requests == 0)
    #expect(s.workers[0].inProgress == [InProgress(request: nil, seconds: nil)])
    #expect(s.pid == nil && s.apus == nil)
}

@Test func aDocumentWithoutWorkersIsNotStats() {
    for text in ["[]", "{}", #"{"workers": {}}"#, "3"] {
        #expect(throws: StatsSnapshot.NotStats.self) { try TopFixtures.snapshot(text) }
    }
}

/// A stats document with `requests` per worker id (pid id*10) and Apus's total.
private func sample(_ requests: [Int: Int], total: Int? = nil, at: Double, pids: [Int: Int] = [:]) -> TopSample {
    var s = StatsSnapshot()
    s.workers = requests.keys.sorted().map { id in
        var w = WorkerStats()
        w.id = id
        w.pid = pids[id] ?? id * 10
        w.requests = requests[id]!
        return w
    }
    if let total {
        var a = ApusExtras()
        a.requests = total
        s.apus = a
    }
    return TopSample(s, at: at)
}

@Test func ratesComeFromDeltasBetweenPolls() {
    let first = TopView(previous: nil, current: sample([1: 10, 2: 5], at: 100))
    #expect(first.requestsPerSecond == nil)
    #expect(first.rows.map(\.requestsPerSecond) == [nil, nil])
    #expect(first.requests == 15)

    let view = TopView(previous: sample([1: 10, 2: 5], at: 100), current: sample([1: 30, 2: 10], at: 102))
    #expect(view.rows.map(\.requestsPerSecond) == [10, 2.5])
    #expect(view.requestsPerSecond == 12.5)
}

@Test func aReplacedWorkerHasNoRateAndIsLeftOutOfTheSum() {
    let view = TopView(previous: sample([1: 10, 2: 50], at: 0),
                       current: sample([1: 20, 2: 3], at: 1, pids: [2: 99]))
    #expect(view.rows.map(\.requestsPerSecond) == [10, nil])
    #expect(view.requestsPerSecond == 10)
    // A count that went down (same pid) is no rate either.
    let down = TopView(previous: sample([1: 10], at: 0), current: sample([1: 4], at: 1))
    #expect(down.rows[0].requestsPerSecond == nil)
    // A new worker id has none yet.
    let grown = TopView(previous: sample([1: 10], at: 0), current: sample([1: 10, 2: 1], at: 1))
    #expect(grown.rows.map(\.requestsPerSecond) == [0, nil])
}

@Test func apusTotalCountsRequestsOfWorkersGone() {
    // Worker 2 was replaced: the workers' deltas miss its requests, Apus's total does not.
    let view = TopView(previous: sample([1: 10, 2: 50], total: 60, at: 0),
                       current: sample([1: 20, 2: 0], total: 90, at: 2, pids: [2: 77]))
    #expect(view.requestsPerSecond == 15)
    #expect(view.requests == 90)
}

@Test func noTimeBetweenPollsIsNoRate() {
    let view = TopView(previous: sample([1: 10], at: 5), current: sample([1: 20], at: 5))
    #expect(view.requestsPerSecond == nil)
    #expect(view.rows[0].requestsPerSecond == nil)
}

@Test func headerFromTheApusExtras() throws {
    let view = TopView(previous: nil, current: TopSample(try TopFixtures.snapshot(TopFixtures.apusDocument), at: 0))
    #expect(view.masterPid == 4100)
    #expect(view.generation == 3 && view.incoming == 4 && view.reload == "graceful" && view.reloads == 2)
    #expect(view.workersReady == 1 && view.workersWanted == 2)
    #expect(view.requests == 1107)
    let r = view.rows[0]
    #expect(r.averageMs == 1.5 && r.lastMs == 2.25 && r.rssMiB == 30 && r.generation == 3 && r.state == "retiring")
    #expect(r.inProgress == "GET /slow?x=1 1.3s")
}

@Test func uwsgiWorkersReadyAreTheAcceptingOnes() throws {
    var s = try TopFixtures.snapshot(TopFixtures.uwsgiDocument)
    #expect(TopView(previous: nil, current: TopSample(s, at: 0)).workersReady == 2)
    s.workers[1].accepting = false
    s.workers[0].pid = 0
    let view = TopView(previous: nil, current: TopSample(s, at: 0))
    #expect(view.workersReady == 0 && view.workersWanted == 2)
}

@Test func inProgressText() {
    #expect(TopView.describe([]) == "")
    #expect(TopView.describe([InProgress(request: "GET /a", seconds: 0.04), InProgress(request: nil, seconds: nil)])
            == "GET /a 0.0s, in request")
}

@Test func fixedDecimals() {
    #expect(formatFixed(0, 1) == "0.0")
    #expect(formatFixed(12.345, 2) == "12.35")
    #expect(formatFixed(0.05, 2) == "0.05")
    #expect(formatFixed(2501.9, 0) == "2502")
    #expect(formatFixed(-1.25, 1) == "-1.3")
    #expect(formatFixed(-0.01, 1) == "0.0")
    #expect(formatFixed(.infinity, 1) == "-")
    #expect(formatFixed(1e300, 1) == "inf")
}

@Test func hugeCountersDoNotOverflow() throws {
    let worker = #"{"id": 1, "pid": 2, "requests": 9007199254740992}"#
    let text = #"{"workers": ["# + Array(repeating: worker, count: 2000).joined(separator: ",") + "]}"
    let s = try TopFixtures.snapshot(text)
    let view = TopView(previous: TopSample(s, at: 0), current: TopSample(s, at: 1))
    #expect(view.requests == Int.max)
    #expect(view.requestsPerSecond == 0)
}
