import ApusProtocols

/// The body of a request as the worker hands it to the app.
public enum WSGIBody {
    case empty
    /// Fully read into memory (de-chunked if it was sent chunked).
    case memory(UnsafeRawBufferPointer)
    /// Spooled to an unlinked temporary file positioned at 0; the app's stream takes the fd.
    case file(fd: Int32, length: Int)
}

/// What the worker knows about the listening socket and the peer of a connection, as
/// Python strings made once per connection (borrowed by each request).
public struct WSGIConnectionInfo {
    public var remoteAddr: PyRef
    public var remotePort: PyRef
    public var serverName: PyRef
    public var serverPort: PyRef
    public var https: Bool
    /// The peer may set X-Forwarded-* / Forwarded (--forwarded-allow-ips).
    public var trustedPeer: Bool
    /// The request came as a uwsgi packet: the environ is its vars (borrowed).
    public var uwsgiVars: [UWSGIVar]?

    public init(remoteAddr: PyRef, remotePort: PyRef, serverName: PyRef, serverPort: PyRef, https: Bool,
                trustedPeer: Bool = false, uwsgiVars: [UWSGIVar]? = nil) {
        self.trustedPeer = trustedPeer
        self.uwsgiVars = uwsgiVars
        self.remoteAddr = remoteAddr
        self.remotePort = remotePort
        self.serverName = serverName
        self.serverPort = serverPort
        self.https = https
    }
}

/// The response head as the app gave it, validated and reduced to what the wire needs:
/// hop-by-hop headers are dropped (PEP 3333 forbids them; `Connection: close` is noted).
public struct WSGIResponseHead {
    public var statusCode = 200
    /// "200 OK" (latin-1 bytes, no CR/LF/NUL).
    public var statusLine: [UInt8] = []
    /// "Name: value\r\n" lines, validated.
    public var headerLines: [UInt8] = []
    public var contentLength: Int?
    public var closeRequested = false
    public var hasDate = false
    public var hasServer = false

    public init() {}

    mutating func reset() {
        statusCode = 200
        statusLine.removeAll(keepingCapacity: true)
        headerLines.removeAll(keepingCapacity: true)
        contentLength = nil
        closeRequested = false
        hasDate = false
        hasServer = false
    }
}

/// Where the bridge sends the response. The worker implements it over a socket. Its methods
/// are called with the GIL held: a write that completes at once costs no GIL hand-off, and
/// the sink releases the GIL itself only while it waits for a slow client.
public protocol WSGIResponseSink: AnyObject {
    /// The head is final: decide the framing. Nothing need be written yet.
    func begin(_ head: WSGIResponseHead)
    /// Body bytes. With `flush` false the sink may hold them to coalesce with what follows
    /// (a list body goes out with its head in one write). False: the client is gone.
    func body(_ bytes: UnsafeRawBufferPointer, flush: Bool) -> Bool
    /// A region of a regular file (wsgi.file_wrapper), sent with sendfile.
    func file(fd: Int32, offset: Int, count: Int) -> Bool
    /// The body is complete: write out what remains. False: the client is gone or the
    /// response was cut short, so the connection must close.
    func end() -> Bool
    /// The app failed before any byte of the response went out: answer 500.
    func fail()
    /// The app failed after the head went out: close the connection.
    func abort()
}
