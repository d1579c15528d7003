import Testing
import ApusIPC
@testable import ApusMaster

private func counts(classes: [UInt64], histogram: [Int: UInt64] = [:], micros: UInt64 = 0,
                    exceptions: UInt64 = 0, bytes: UInt64 = 0) -> AnswerCounts {
    var c = AnswerCounts()
    c.byClass = classes
    for (i, n) in histogram { c.histogram[i] = n }
    c.busyMicros = micros
    c.exceptions = exceptions
    c.bodyBytes = bytes
    return c
}

private func lines(_ s: MetricsSnapshot) -> [String] {
    String(decoding: s.render(), as: UTF8.self).split(separator: "\n").map(String.init)
}

@Test func totalsNeverGoBackWhenAWorkerIsReplaced() {
    let a = counts(classes: [0, 5, 0, 2, 1], histogram: [0: 6, 11: 2], micros: 900, exceptions: 1, bytes: 40)
    let b = counts(classes: [0, 3, 1, 0, 0], histogram: [3: 4], micros: 100, bytes: 7)
    var totals = AnswerTotals()
    let before = totals.total(live: [a, b])
    #expect(before.byClass == [0, 8, 1, 2, 1])
    #expect(before.durationCount == 12 && before.busyMicros == 1000 && before.exceptions == 1 && before.bodyBytes == 47)
    // Worker a dies: folded in while its slot still holds it; its replacement starts at zero.
    totals.workerExited(a)
    #expect(totals.total(live: [AnswerCounts(), b]) == before)
    #expect(totals.total(live: [b]) == before)
    // And again for b: nothing is lost, nothing counted twice.
    totals.workerExited(b)
    #expect(totals.total(live: []) == before)
    #expect(totals.departed == before)
}

@Test func answerCountsReadAScoreboardSlot() {
    let tally = ConnectionTally()
    let slot = tally.board.slot(3)
    slot.reset(pid: 4242)
    slot.counters.recordApp(status: 200, bytes: 10, micros: 3_000, failed: false)     // bucket 0 (≤ 5 ms)
    slot.counters.recordApp(status: 500, bytes: 5, micros: 300_000, failed: true)     // bucket 6 (≤ 0.5 s)
    slot.counters.recordApp(status: 204, bytes: 0, micros: 60_000_000, failed: false) // above 10 s
    slot.counters.recordStatic(status: 404, bytes: 100)
    slot.counters.recordStatic(status: 200, bytes: 1_000)
    slot.busyMicros = 60_303_000
    let c = AnswerCounts(slot)
    #expect(c.byClass == [0, 3, 0, 1, 1])
    #expect(c.histogram[0] == 1 && c.histogram[6] == 1 && c.histogram[Scoreboard.durationBounds.count] == 1)
    #expect(c.durationCount == 3)
    #expect(c.busyMicros == 60_303_000 && c.exceptions == 1 && c.bodyBytes == 1_115)
}

@Test func renderingIsPrometheusText() {
    var s = MetricsSnapshot()
    s.answers = counts(classes: [0, 7, 1, 2, 3], histogram: [0: 4, 1: 1, 6: 2, 11: 1], micros: 12_345_678, exceptions: 2, bytes: 999)
    s.inFlight = 2
    s.workers = [.ready: 3, .retiring: 1]
    s.busyWorkers = 1
    s.desiredWorkers = 4
    s.reloads = ["chain": [.done: 2], "graceful": [.failed: 1]]
    s.harakiri = 1
    s.respawns = 5
    s.connections = 17
    s.ready = true
    s.generation = 3
    s.residentBytes = [(slot: 0, bytes: 1_000_000), (slot: 2, bytes: 2_000_000)]
    let out = lines(s)
    for expected in [
        "# HELP apus_requests_total Requests answered by the app or as static files, by status class.",
        "# TYPE apus_requests_total counter",
        "apus_requests_total{status_class=\"1xx\"} 0",
        "apus_requests_total{status_class=\"2xx\"} 7",
        "apus_requests_total{status_class=\"5xx\"} 3",
        "# TYPE apus_request_duration_seconds histogram",
        "apus_request_duration_seconds_bucket{le=\"0.005\"} 4",
        "apus_request_duration_seconds_bucket{le=\"0.01\"} 5",
        "apus_request_duration_seconds_bucket{le=\"0.25\"} 5",
        "apus_request_duration_seconds_bucket{le=\"0.5\"} 7",
        "apus_request_duration_seconds_bucket{le=\"10.0\"} 7",
        "apus_request_duration_seconds_bucket{le=\"+Inf\"} 8",
        "apus_request_duration_seconds_sum 12.345678",
        "apus_request_duration_seconds_count 8",
        "apus_requests_in_flight 2",
        "apus_exceptions_total 2",
        "apus_response_body_bytes_total 999",
        "apus_workers{state=\"starting\"} 0",
        "apus_workers{state=\"ready\"} 3",
        "apus_workers{state=\"recycling\"} 0",
        "apus_workers{state=\"retiring\"} 1",
        "apus_workers_busy 1",
        "apus_workers_desired 4",
        "apus_reloads_total{method=\"chain\",outcome=\"done\"} 2",
        "apus_reloads_total{method=\"chain\",outcome=\"failed\"} 0",
        "apus_reloads_total{method=\"graceful\",outcome=\"failed\"} 1",
        "apus_reloads_total{method=\"upgrade\",outcome=\"done\"} 0",
        "apus_harakiri_total 1",
        "apus_worker_respawns_total 5",
        "apus_connections_open 17",
        "apus_ready 1",
        "apus_generation 3",
        "apus_worker_resident_memory_bytes{slot=\"2\"} 2000000",
    ] {
        #expect(out.contains(expected), "missing: \(expected)")
    }
    // Every sample follows its family's HELP and TYPE; no family is declared twice.
    var declared: [String] = []
    for line in out {
        if line.hasPrefix("# TYPE ") {
            let name = String(line.split(separator: " ")[2])
            #expect(!declared.contains(name))
            declared.append(name)
        } else if !line.hasPrefix("# HELP ") {
            let name = String(line.prefix { $0 != "{" && $0 != " " })
            #expect(name.hasPrefix(declared.last ?? "-"), "\(line) outside its family")
        }
    }
    #expect(out.filter { $0.hasPrefix("apus_reloads_total{") }.count == 8)
    // Zero workers, nothing counted: the families are all there, with zeros.
    let empty = lines(MetricsSnapshot())
    #expect(empty.contains("apus_request_duration_seconds_sum 0.000000"))
    #expect(empty.contains("apus_ready 0"))
    #expect(empty.contains("# TYPE apus_worker_resident_memory_bytes gauge"))
}

@Test func secondsAreExact() {
    #expect(MetricsSnapshot.seconds(micros: 0) == "0.000000")
    #expect(MetricsSnapshot.seconds(micros: 250) == "0.000250")
    #expect(MetricsSnapshot.seconds(micros: 1_500_000) == "1.500000")
    #expect(MetricsSnapshot.seconds(micros: UInt64.max) == "18446744073709.551615")
}
