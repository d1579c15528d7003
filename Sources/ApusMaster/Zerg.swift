#if canImport(Glibc)
import Glibc
#endif
import CApusSys
import ApusConfig
import ApusObserve
import ApusProtocols
import ApusSys

/// uWSGI's zerg mode, both sides (the bytes are `ZergMessage`, in ApusProtocols).
///
/// - `ZergServer` (`apus --zerg-server PATH --http ADDR --socket ADDR`): owns the listening
///   sockets and hands them to every instance that connects to PATH, for as long as it
///   runs. It runs no app and no worker, never restarts, and stops on SIGTERM/SIGINT/SIGQUIT.
/// - `ZergAttach.attach` (`apus --zerg PATH app`): receives them at start; they then serve
///   as inherited sockets (`fd://N`), kept across reloads and upgrades in place.
public enum ZergAttach {
    /// The handed descriptors that crossed an upgrade in place (`fd,fd,...`): the new
    /// image takes them instead of attaching again, as uWSGI's reload inherits them.
    public static let environmentKey = "_APUS_ZERG_FDS"

    /// Connects to the zerg server at `path` (`@name`: Linux's abstract namespace) and
    /// takes the sockets it hands over: each checked to be a listening TCP or unix stream
    /// socket and made close-on-exec. On any failure every received descriptor is closed.
    public static func attach(_ path: String) throws(ListenSocket.Failure) -> [Int32] {
        func fail(_ what: String) -> ListenSocket.Failure {
            ListenSocket.Failure(description: "--zerg \(path): \(what)")
        }
        guard var addr = unixAddress(path) else { throw fail("path too long for a unix socket") }
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw fail("socket(): \(Sys.describe(errno))") }
        defer { Sys.close(fd) }
        // A zerg server answers at once; one that does not is not waited for long.
        var timeout = timeval(tv_sec: 10, tv_usec: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let length = socklen_t(MemoryLayout<sa_family_t>.size + addr.1)
        let connected = withUnsafePointer(to: &addr.0) { p in
            p.withMemoryRebound(to: sockaddr.self, capacity: 1) { sa in Sys.call { connect(fd, sa, length) } }
        }
        if case let .failed(e) = connected { throw fail("cannot connect: \(Sys.describe(e))") }

        // Room for more than a reply holds, so that extra bytes or descriptors show.
        var data = [UInt8](repeating: 0, count: 64)
        var control = [UInt8](repeating: 0, count: ZergMessage.controlSpace(descriptors: ZergMessage.maxDescriptors))
        var flags: Int32 = 0
        var controlLength = 0
        let received: SysResult = data.withUnsafeMutableBytes { d in
            control.withUnsafeMutableBytes { c in
                var iov = iovec(iov_base: d.baseAddress, iov_len: d.count)
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    var msg = msghdr()
                    msg.msg_iov = iovp
                    msg.msg_iovlen = 1
                    msg.msg_control = c.baseAddress
                    msg.msg_controllen = c.count
                    let r = Sys.call { recvmsg(fd, &msg, Int32(MSG_CMSG_CLOEXEC)) }
                    flags = msg.msg_flags
                    controlLength = Int(msg.msg_controllen)
                    return r
                }
            }
        }
        let n: Int
        switch received {
        case let .done(count): n = count
        case .wouldBlock: throw fail("no reply within 10 s")
        case let .failed(e): throw fail("cannot read the reply: \(Sys.describe(e))")
        }
        let controlBytes = Array(control.prefix(max(0, min(controlLength, control.count))))
        let installed = ZergMessage.descriptors(inControl: controlBytes)
        let reply = ZergMessage.parseReply(data: Array(data.prefix(n)), control: controlBytes,
                                           dataTruncated: flags & Int32(MSG_TRUNC) != 0,
                                           controlTruncated: flags & Int32(MSG_CTRUNC) != 0)
        switch reply {
        case let .failure(why):
            for fd in installed { Sys.close(fd) }
            throw fail("\(why)")
        case let .success(fds):
            for (i, fd) in fds.enumerated() {
                do throws(ListenSocket.Failure) {
                    try ListenSocket.adopt(fd, label: "socket \(i + 1) of \(fds.count) handed by \(path)")
                } catch {
                    for fd in installed { Sys.close(fd) }
                    throw fail(error.description)
                }
            }
            return fds
        }
    }

    /// `path` as a sockaddr_un and the length of its path part (a leading `@` is the
    /// abstract namespace, as in uWSGI).
    static func unixAddress(_ path: String) -> (sockaddr_un, Int)? {
        var addr = sockaddr_un()
        addr.sun_family = sa_family_t(AF_UNIX)
        var bytes = Array(path.utf8)
        let abstract = bytes.first == UInt8(ascii: "@")
        if abstract { bytes[0] = 0 }
        guard !bytes.isEmpty, bytes.count < MemoryLayout.size(ofValue: addr.sun_path) else { return nil }
        withUnsafeMutableBytes(of: &addr.sun_path) { p in
            for (i, b) in bytes.enumerated() { p[i] = b }
        }
        return (addr, abstract ? bytes.count : bytes.count + 1)
    }
}

/// `apus --zerg-server PATH`: a process of one loop that owns the listening sockets of
/// `--http`/`--socket` and hands every one of them to each instance that connects to PATH.
public struct ZergServer {
    let config: Configuration
    let path: String

    public init(config: Configuration, path: String) {
        self.config = config
        self.path = path
    }

    /// Runs until SIGTERM, SIGINT or SIGQUIT; returns the exit status.
    public func run() -> Int32 {
        Log.role = "zerg server"
        SignalQueue.install()
        if let file = config.logFile, let e = LogFile.reopen(file) {
            Log.error("--log-file: cannot open \(file): \(Sys.describe(e))")
            return Master.startFailed
        }
        var owned: [(Bind, Int32)] = []
        func closeAll() {
            for (bind, fd) in owned {
                Sys.close(fd)
                if case let .unix(p) = bind.address { removeFile(p) }
            }
        }
        let server: Int32
        do {
            for bind in config.binds {
                let fd = try ListenSocket.open(bind, backlog: config.listenBacklog, mode: config.socketMode,
                                               owner: config.socketOwner)
                owned.append((bind, fd))
            }
            guard owned.count <= ZergMessage.maxDescriptors else {
                throw ListenSocket.Failure(description: "--zerg-server: \(owned.count) sockets, at most \(ZergMessage.maxDescriptors) can be handed in one message")
            }
            // Owner only: whoever can connect gets the listening sockets.
            let mask = umask(0o077)
            defer { umask(mask) }
            server = try ListenSocket.open(Bind(address: .unix(path: path), proto: .uwsgi), backlog: 128)
            _ = apus_set_nonblocking(server, 1)
            if let pidfile = config.pidfile { try Pidfile.write(pidfile) }
        } catch {
            Log.error("\(error)")
            closeAll()
            return Master.startFailed
        }
        Log.info("apus zerg server (pid \(getpid())) on \(path), handing \(owned.map(\.0.description).joined(separator: ", "))")
        let fds = owned.map(\.1)
        let data = ZergMessage.data(count: fds.count)
        let control = ZergMessage.control(fds: fds)
        var handed = 0
        loop: while true {
            var pfds = [pollfd(fd: SignalQueue.readFD, events: Int16(POLLIN), revents: 0),
                        pollfd(fd: server, events: Int16(POLLIN), revents: 0)]
            if case let .failed(e) = Sys.call({ poll(&pfds, 2, -1) }) { Log.error("poll: \(Sys.describe(e))") }
            for sig in SignalQueue.drain() {
                switch sig {
                case SIGTERM, SIGINT, SIGQUIT:
                    Log.info("\(sig == SIGTERM ? "SIGTERM" : sig == SIGINT ? "SIGINT" : "SIGQUIT"): stopping (handed the sockets \(handed) times)")
                    break loop
                case SIGCHLD: break
                case SIGUSR1:
                    if let file = config.logFile, let e = LogFile.reopen(file) {
                        Log.error("SIGUSR1: cannot reopen \(file): \(Sys.describe(e))")
                    }
                default: Log.info("signal \(sig) ignored (a zerg server only stops)")
                }
            }
            guard pfds[1].revents != 0 else { continue }
            while case let .done(client) = Sys.call({ apus_accept(server, nil, nil) }) {
                if hand(Int32(client), data: data, control: control) { handed += 1 }
                Sys.close(Int32(client))
            }
        }
        Sys.close(server)
        removeFile(path)
        closeAll()
        if let pidfile = config.pidfile { Pidfile.remove(pidfile) }
        Log.info("stopped")
        return 0
    }

    /// One reply to one instance; false (logged) when it could not be sent.
    private func hand(_ client: Int32, data: [UInt8], control: [UInt8]) -> Bool {
        // The reply fits an empty socket buffer; a peer cannot make it block for long.
        _ = apus_set_nonblocking(client, 0)
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        _ = setsockopt(client, SOL_SOCKET, SO_SNDTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        var d = data, c = control
        let sent: SysResult = d.withUnsafeMutableBytes { db in
            c.withUnsafeMutableBytes { cb in
                var iov = iovec(iov_base: db.baseAddress, iov_len: db.count)
                return withUnsafeMutablePointer(to: &iov) { iovp in
                    var msg = msghdr()
                    msg.msg_iov = iovp
                    msg.msg_iovlen = 1
                    msg.msg_control = cb.baseAddress
                    msg.msg_controllen = cb.count
                    return Sys.call { sendmsg(client, &msg, Int32(MSG_NOSIGNAL)) }
                }
            }
        }
        switch sent {
        case .done: return true
        case .wouldBlock: Log.warning("an instance did not take the sockets (send timed out)"); return false
        case let .failed(e): Log.warning("cannot hand the sockets to an instance: \(Sys.describe(e))"); return false
        }
    }
}
