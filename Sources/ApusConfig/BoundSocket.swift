/// A listening socket the master opened for a bind, as a forked worker inherits it.
/// (A struct rather than a tuple: a worker copying an array of tuples has the Swift runtime
/// build the tuple's type at run time, in every worker.)
public struct BoundSocket: Sendable {
    public let fd: Int32
    public let bind: Bind

    public init(fd: Int32, bind: Bind) {
        self.fd = fd
        self.bind = bind
    }
}
