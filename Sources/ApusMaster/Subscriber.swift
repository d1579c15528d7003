#if canImport(Glibc)
import Glibc
#endif
import ApusConfig
import ApusObserve
import ApusProtocols
import ApusSys

/// `--subscribe-to`: the master announces the instance's uwsgi socket to subscription
/// routers over UDP (uWSGI's packets, ApusProtocols/Subscription.swift): first once a worker
/// is ready (so a router never sends requests to an instance that cannot answer yet), then
/// every `--subscribe-freq` seconds; and an unsubscribe when the instance starts to stop,
/// before its workers stop accepting, so the router sends it nothing new while it drains.
/// Each announcement is a datagram from a socket opened for it and closed at once (as
/// uWSGI does), so no descriptor is kept for the workers to inherit.
struct Subscriber {
    private var nextAt = 0.0
    /// A subscribe went out and no unsubscribe since.
    private(set) var subscribed = false
    /// The routers the last send could not reach, so a failure is logged once, not every time.
    private var failing = Set<DatagramAddress>()

    /// The periodic step of the master's loop.
    mutating func announce(_ subscriptions: [Subscription], frequency: Double, ready: Bool, now: Double) {
        guard !subscriptions.isEmpty, ready, now >= nextAt else { return }
        if !subscribed {
            for s in subscriptions { Log.info("subscribing to \(s.server) as \(s.key) (\(s.address ?? "?"))") }
        }
        send(subscriptions, .subscribe)
        subscribed = true
        nextAt = now + frequency
    }

    /// Before the workers stop accepting: the routers stop sending requests here.
    mutating func unsubscribe(_ subscriptions: [Subscription]) {
        guard subscribed else { return }
        for s in subscriptions { Log.info("unsubscribing from \(s.server) (\(s.key))") }
        send(subscriptions, .unsubscribe)
        subscribed = false
        nextAt = .infinity
    }

    private mutating func send(_ subscriptions: [Subscription], _ command: SubscriptionPacket.Command) {
        for s in subscriptions {
            guard let address = s.address else { continue }
            let packet = SubscriptionPacket(command: command, key: Array(s.key.utf8), address: Array(address.utf8),
                                            requestModifier1: s.modifier1, weight: s.weight).encode()
            if let e = Self.sendDatagram(packet, to: s.server) {
                if failing.insert(s.server).inserted { Log.warning("subscription to \(s.server): \(Sys.describe(e))") }
            } else if failing.remove(s.server) != nil {
                Log.info("subscription to \(s.server): sent again")
            }
        }
    }

    /// nil when the datagram went out, else the errno.
    static func sendDatagram(_ bytes: [UInt8], to server: DatagramAddress) -> Int32? {
        switch server {
        case let .inet(host, port):
            if host.contains(":") {
                var sa = sockaddr_in6()
                sa.sin6_family = sa_family_t(AF_INET6)
                sa.sin6_port = UInt16(port).bigEndian
                guard inet_pton(AF_INET6, host, &sa.sin6_addr) == 1 else { return EINVAL }
                return withUnsafeBytes(of: &sa) { send(bytes, AF_INET6, $0) }
            }
            var sa = sockaddr_in()
            sa.sin_family = sa_family_t(AF_INET)
            sa.sin_port = UInt16(port).bigEndian
            guard inet_pton(AF_INET, host, &sa.sin_addr) == 1 else { return EINVAL }
            return withUnsafeBytes(of: &sa) { send(bytes, AF_INET, $0) }
        case let .unix(path):
            var sa = sockaddr_un()
            sa.sun_family = sa_family_t(AF_UNIX)
            let bytesOfPath = Array(path.utf8)
            guard bytesOfPath.count < MemoryLayout.size(ofValue: sa.sun_path) else { return ENAMETOOLONG }
            withUnsafeMutableBytes(of: &sa.sun_path) { dst in
                for (i, b) in bytesOfPath.enumerated() { dst[i] = b }
            }
            return withUnsafeBytes(of: &sa) { send(bytes, AF_UNIX, $0) }
        }
    }

    private static func send(_ bytes: [UInt8], _ family: Int32, _ address: UnsafeRawBufferPointer) -> Int32? {
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0)
        guard fd >= 0 else { return errno }
        defer { Sys.close(fd) }
        let result = bytes.withUnsafeBytes { b in
            Sys.call {
                sendto(fd, b.baseAddress, b.count, 0, address.baseAddress!.assumingMemoryBound(to: sockaddr.self),
                       socklen_t(address.count))
            }
        }
        switch result {
        case .done: return nil
        case .wouldBlock: return EAGAIN
        case let .failed(e): return e
        }
    }
}
