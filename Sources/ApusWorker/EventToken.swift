/// What an epoll event in a worker is about: the payload registered with each descriptor.
/// A connection's token is its descriptor, so the hot path decodes it with one compare.
enum EventToken: Equatable {
    /// A client connection, by its descriptor.
    case connection(Int32)
    /// A listening socket, by its index in the worker's listeners.
    case listener(Int)
    /// The eventfd the signal handlers write: a flag changed.
    case wake
    /// The crew's eventfd: requests finished by a thread that lost the loop wait to be collected.
    case appThreadsDone

    private static let kindShift: UInt64 = 32
    private static let listenerKind: UInt64 = 1
    private static let wakeKind: UInt64 = 2
    private static let appThreadsDoneKind: UInt64 = 3

    init?(_ raw: UInt64) {
        let value = raw & 0xFFFF_FFFF
        switch raw >> Self.kindShift {
        case 0: self = .connection(Int32(truncatingIfNeeded: value))
        case Self.listenerKind: self = .listener(Int(value))
        case Self.wakeKind: self = .wake
        case Self.appThreadsDoneKind: self = .appThreadsDone
        default: return nil
        }
    }

    var raw: UInt64 {
        switch self {
        case let .connection(fd): return UInt64(UInt32(bitPattern: fd))
        case let .listener(i): return Self.listenerKind << Self.kindShift | UInt64(i)
        case .wake: return Self.wakeKind << Self.kindShift
        case .appThreadsDone: return Self.appThreadsDoneKind << Self.kindShift
        }
    }
}
