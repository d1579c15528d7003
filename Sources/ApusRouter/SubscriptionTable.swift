import ApusConfig
import ApusProtocols

/// The router's nodes, by key: what subscriptions announced, which nodes are live, and which
/// one takes the next request. A value: it takes the time as an argument and makes no
/// system call, so its rules are tested as values (Tests/ApusRouterTests).
///
/// Rules, as uWSGI's subscription system has them: a subscribe adds a node to its key (or
/// refreshes it: weight, modifiers, last seen); an unsubscribe removes it; a node not heard
/// from for `tolerance` seconds is dropped, and so is one the router could not connect to
/// (its next announcement adds it again). Keys are matched byte for byte with the request's
/// Host, port included when the client sent one. Sizes are bounded, since anyone who can
/// reach the UDP port can send packets: at most `maxKeys` keys and `maxNodesPerKey` nodes
/// per key; packets beyond are ignored.
public struct SubscriptionTable: Sendable {
    public struct Node: Sendable, Equatable {
        public var address: [UInt8]
        public var target: NodeAddress
        public var modifier1: UInt8
        public var modifier2: UInt8
        public var weight: Int
        public var lastSeen: Double
        /// Requests sent to it and not finished.
        public var inFlight = 0
    }

    struct Pool: Sendable {
        var nodes: [Node] = []
        /// Index of the node that took the last request.
        var cursor = -1
        /// How many more requests in a row the node at `cursor` takes (weighted round robin).
        var credit = 0
    }

    public enum Change: Sendable, Equatable {
        case added, refreshed, removed
        /// Nothing changed: an unsubscribe for an unknown node, or a table at its bounds.
        case ignored(String)
    }

    public let algorithm: RouterAlgorithm
    public let tolerance: Double
    public let maxKeys: Int
    public let maxNodesPerKey: Int
    private(set) var pools: [[UInt8]: Pool] = [:]

    public init(algorithm: RouterAlgorithm, tolerance: Double, maxKeys: Int = 4096, maxNodesPerKey: Int = 256) {
        self.algorithm = algorithm
        self.tolerance = tolerance
        self.maxKeys = maxKeys
        self.maxNodesPerKey = maxNodesPerKey
    }

    public var keyCount: Int { pools.count }

    /// The nodes of `key`, in the order they subscribed.
    public func nodes(_ key: [UInt8]) -> [Node] { pools[key]?.nodes ?? [] }

    /// Applies one subscription packet.
    public mutating func apply(_ packet: SubscriptionPacket, now: Double) -> Change {
        switch packet.command {
        case .unsubscribe:
            return remove(key: packet.key, address: packet.address) ? .removed : .ignored("no such node")
        case .subscribe:
            guard let target = NodeAddress.parse(packet.address) else { return .ignored("address is not HOST:PORT, [IPV6]:PORT or a path") }
            if var pool = pools[packet.key] {
                if let i = pool.nodes.firstIndex(where: { $0.address == packet.address }) {
                    pool.nodes[i].lastSeen = now
                    pool.nodes[i].weight = packet.weight
                    pool.nodes[i].modifier1 = packet.requestModifier1
                    pool.nodes[i].modifier2 = packet.requestModifier2
                    pools[packet.key] = pool
                    return .refreshed
                }
                guard pool.nodes.count < maxNodesPerKey else { return .ignored("key has \(maxNodesPerKey) nodes") }
                pool.nodes.append(node(packet, target, now))
                pools[packet.key] = pool
                return .added
            }
            guard pools.count < maxKeys else { return .ignored("table has \(maxKeys) keys") }
            pools[packet.key] = Pool(nodes: [node(packet, target, now)])
            return .added
        }
    }

    private func node(_ p: SubscriptionPacket, _ target: NodeAddress, _ now: Double) -> Node {
        Node(address: p.address, target: target, modifier1: p.requestModifier1, modifier2: p.requestModifier2,
             weight: p.weight, lastSeen: now)
    }

    /// Removes a node (unsubscribed, or it refused a connection). True if it was there.
    @discardableResult
    public mutating func remove(key: [UInt8], address: [UInt8]) -> Bool {
        guard var pool = pools[key], let i = pool.nodes.firstIndex(where: { $0.address == address }) else { return false }
        pool.nodes.remove(at: i)
        if pool.nodes.isEmpty {
            pools[key] = nil
            return true
        }
        if pool.cursor >= i { pool.cursor -= 1; pool.credit = 0 }
        pools[key] = pool
        return true
    }

    /// Drops the nodes not heard from for `tolerance` seconds; returns them as (key, address).
    public mutating func expire(now: Double) -> [(key: [UInt8], address: [UInt8])] {
        var gone: [(key: [UInt8], address: [UInt8])] = []
        for (key, pool) in pools {
            for node in pool.nodes where now - node.lastSeen > tolerance { gone.append((key, node.address)) }
        }
        for g in gone { remove(key: g.key, address: g.address) }
        return gone
    }

    /// The node for the next request of `key`, skipping the addresses in `excluding` (nodes
    /// this request already failed on); counts the request as in flight on it.
    public mutating func pick(key: [UInt8], excluding: [[UInt8]] = [], now: Double) -> Node? {
        guard var pool = pools[key] else { return nil }
        let live = pool.nodes.indices.filter {
            now - pool.nodes[$0].lastSeen <= tolerance && !excluding.contains(pool.nodes[$0].address)
        }
        guard !live.isEmpty else { return nil }
        let chosen: Int
        switch algorithm {
        case .weightedRoundRobin:
            if pool.credit > 0, live.contains(pool.cursor) {
                pool.credit -= 1
                chosen = pool.cursor
            } else {
                chosen = live.first(where: { $0 > pool.cursor }) ?? live[0]
                let least = live.map { pool.nodes[$0].weight }.min() ?? 1
                pool.credit = pool.nodes[chosen].weight / max(1, least) - 1
            }
        case .leastConnections:
            // The fewest in flight; among equals, the next after the last one picked.
            let order = live.filter { $0 > pool.cursor } + live.filter { $0 <= pool.cursor }
            chosen = order.min(by: { pool.nodes[$0].inFlight < pool.nodes[$1].inFlight })!
        }
        pool.cursor = chosen
        pool.nodes[chosen].inFlight += 1
        pools[key] = pool
        return pool.nodes[chosen]
    }

    /// A request sent to the node finished (however it ended).
    public mutating func release(key: [UInt8], address: [UInt8]) {
        guard var pool = pools[key], let i = pool.nodes.firstIndex(where: { $0.address == address }) else { return }
        pool.nodes[i].inFlight = max(0, pool.nodes[i].inFlight - 1)
        pools[key] = pool
    }
}
