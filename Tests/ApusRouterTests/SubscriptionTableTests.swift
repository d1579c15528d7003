import Testing
import ApusConfig
import ApusProtocols
@testable import ApusRouter

private func b(_ s: String) -> [UInt8] { Array(s.utf8) }

private func sub(_ key: String, _ address: String, weight: Int = 1, command: SubscriptionPacket.Command = .subscribe) -> SubscriptionPacket {
    SubscriptionPacket(command: command, key: b(key), address: b(address), weight: weight)
}

/// The addresses `n` picks give, releasing each at once.
private func picks(_ t: inout SubscriptionTable, _ key: String, _ n: Int, now: Double = 1) -> [String] {
    (0..<n).compactMap { _ in
        guard let node = t.pick(key: b(key), now: now) else { return nil }
        t.release(key: b(key), address: node.address)
        return String(decoding: node.address, as: UTF8.self)
    }
}

@Test func subscribeRefreshUnsubscribe() {
    var t = SubscriptionTable(algorithm: .weightedRoundRobin, tolerance: 17)
    #expect(t.apply(sub("a.example", "127.0.0.1:1"), now: 0) == .added)
    #expect(t.apply(sub("a.example", "127.0.0.1:1"), now: 5) == .refreshed)
    #expect(t.nodes(b("a.example")).first?.lastSeen == 5)
    #expect(t.apply(sub("a.example", "127.0.0.1:2"), now: 5) == .added)
    #expect(t.apply(sub("a.example", "127.0.0.1:1", command: .unsubscribe), now: 6) == .removed)
    #expect(t.apply(sub("a.example", "127.0.0.1:9", command: .unsubscribe), now: 6) == .ignored("no such node"))
    #expect(t.nodes(b("a.example")).map(\.address) == [b("127.0.0.1:2")])
    #expect(t.apply(sub("a.example", "127.0.0.1:2", command: .unsubscribe), now: 6) == .removed)
    #expect(t.keyCount == 0)
    #expect(t.apply(sub("a.example", "host.example:80"), now: 6) != .added)
    // keys match byte for byte: the port is part of the key, case counts
    _ = t.apply(sub("a.example:8080", "127.0.0.1:1"), now: 0)
    #expect(t.pick(key: b("a.example"), now: 1) == nil)
    #expect(t.pick(key: b("A.example:8080"), now: 1) == nil)
    #expect(t.pick(key: b("a.example:8080"), now: 1) != nil)
}

@Test func roundRobinHonoursWeights() {
    var t = SubscriptionTable(algorithm: .weightedRoundRobin, tolerance: 17)
    _ = t.apply(sub("k", "127.0.0.1:1"), now: 0)
    _ = t.apply(sub("k", "127.0.0.1:2"), now: 0)
    #expect(picks(&t, "k", 4) == ["127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:1", "127.0.0.1:2"])
    _ = t.apply(sub("k", "127.0.0.1:2", weight: 3), now: 0)
    let six = picks(&t, "k", 8)
    #expect(six.filter { $0 == "127.0.0.1:2" }.count == 6)
}

@Test func leastConnectionsPicksTheLeastBusy() {
    var t = SubscriptionTable(algorithm: .leastConnections, tolerance: 17)
    for p in 1...3 { _ = t.apply(sub("k", "127.0.0.1:\(p)"), now: 0) }
    let first = t.pick(key: b("k"), now: 1)!
    let second = t.pick(key: b("k"), now: 1)!
    let third = t.pick(key: b("k"), now: 1)!
    #expect(Set([first.address, second.address, third.address]).count == 3)
    t.release(key: b("k"), address: second.address)
    #expect(t.pick(key: b("k"), now: 1)?.address == second.address)
    #expect(t.nodes(b("k")).map(\.inFlight) == [1, 1, 1])
}

@Test func expiryExclusionAndRemoval() {
    var t = SubscriptionTable(algorithm: .weightedRoundRobin, tolerance: 10)
    _ = t.apply(sub("k", "127.0.0.1:1"), now: 0)
    _ = t.apply(sub("k", "127.0.0.1:2"), now: 5)
    // a node past the tolerance is not picked, and the sweep drops it
    #expect(picks(&t, "k", 3, now: 12) == ["127.0.0.1:2", "127.0.0.1:2", "127.0.0.1:2"])
    #expect(t.expire(now: 12).map { String(decoding: $0.address, as: UTF8.self) } == ["127.0.0.1:1"])
    #expect(t.nodes(b("k")).count == 1)
    // a retry skips the nodes already tried
    _ = t.apply(sub("k", "127.0.0.1:3"), now: 12)
    #expect(t.pick(key: b("k"), excluding: [b("127.0.0.1:2")], now: 12)?.address == b("127.0.0.1:3"))
    #expect(t.pick(key: b("k"), excluding: [b("127.0.0.1:2"), b("127.0.0.1:3")], now: 12) == nil)
    // a node removed while a request is in flight: its release is a no-op
    let removed = t.remove(key: b("k"), address: b("127.0.0.1:3"))
    #expect(removed)
    t.release(key: b("k"), address: b("127.0.0.1:3"))
    #expect(t.expire(now: 100).count == 1 && t.keyCount == 0)
}

@Test func boundsAgainstFloods() {
    var t = SubscriptionTable(algorithm: .weightedRoundRobin, tolerance: 10, maxKeys: 2, maxNodesPerKey: 2)
    #expect(t.apply(sub("a", "127.0.0.1:1"), now: 0) == .added)
    #expect(t.apply(sub("a", "127.0.0.1:2"), now: 0) == .added)
    #expect(t.apply(sub("a", "127.0.0.1:3"), now: 0) == .ignored("key has 2 nodes"))
    #expect(t.apply(sub("b", "127.0.0.1:1"), now: 0) == .added)
    #expect(t.apply(sub("c", "127.0.0.1:1"), now: 0) == .ignored("table has 2 keys"))
    #expect(t.apply(sub("a", "127.0.0.1:1"), now: 1) == .refreshed)
}
