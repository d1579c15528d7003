import ApusProtocols

/// The body of a request as the worker hands it to the app.
public enum WSGIBody {
    case empty
    /// Fully read into memory (de-chunked if it was sent chunked).
    case memory(UnsafeRawBufferPointer)
    /// Spooled to an unlinked temporary file positioned at 0; the app's stream takes the fd.
    case file(fd: Int32, length: Int)
}

/// What the worker knows about the peer and the listening socket of a connection, in plain
/// values: the bridge makes the Python strings the environ needs.
public struct WSGIConnectionInfo {
    /// The client's address as text ("127.0.0.1"); empty for a unix-socket peer. Valid for
    /// the call it is passed to.
    public var remoteAddress: UnsafeRawBufferPointer
    /// The client's port; 0 for none (REMOTE_PORT is then empty).
    public var remotePort: Int
    public var listener: WSGIListener
    /// The request came over TLS (for a uwsgi request: what its vars say).
    public var https: Bool
    /// The peer may set X-Forwarded-* / Forwarded (--forwarded-allow-ips).
    public var trustedPeer: Bool
    /// The request came as a uwsgi packet: the environ is its vars (borrowed).
    public var uwsgiVars: [UWSGIVar]?

    public init(remoteAddress: UnsafeRawBufferPointer, remotePort: Int, listener: WSGIListener, https: Bool,
                trustedPeer: Bool = false, uwsgiVars: [UWSGIVar]? = nil) {
        self.remoteAddress = remoteAddress
        self.remotePort = remotePort
        self.listener = listener
        self.https = https
        self.trustedPeer = trustedPeer
        self.uwsgiVars = uwsgiVars
    }
}

/// A listening socket as the app sees it: SERVER_NAME and SERVER_PORT when the request
/// names no host. Their Python strings are made on first use, under the GIL, and kept for
/// the process, so a listener may be dropped without the GIL.
public final class WSGIListener: @unchecked Sendable {
    let serverName: String
    /// 0 for a unix socket (SERVER_PORT is then empty).
    let serverPort: Int
    private var strings: ServerStrings?

    struct ServerStrings {
        let name: PyBorrowed
        let port: PyBorrowed
    }

    public init(serverName: String, serverPort: Int) {
        self.serverName = serverName
        self.serverPort = serverPort
    }

    /// SERVER_NAME and SERVER_PORT as Python strings. GIL held.
    @inline(__always) func pythonStrings(_ api: CPythonAPI) -> ServerStrings {
        if let strings { return strings }
        let made = ServerStrings(name: api.string(serverName).keepForever(), port: api.port(serverPort).keepForever())
        strings = made
        return made
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
