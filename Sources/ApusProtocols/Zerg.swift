// uWSGI's zerg protocol, as its source speaks it (core/socket.c `uwsgi_manage_zerg`, the
// server; core/io.c `uwsgi_attach_fd` called by core/uwsgi.c `uwsgi_zerg_attach`, the
// instance):
//
// - The instance connects to the zerg server's unix stream socket and sends nothing.
// - The server answers with one `sendmsg` and closes: the data is the 10 bytes
//   `uwsgi-zerg` followed by the number of sockets as a C `int` in host byte order
//   (4 bytes, little-endian on every platform Apus runs on), and one SCM_RIGHTS control
//   message carries that many listening sockets, every one of them in that message.
// - uWSGI's instance reads with room for 8 descriptors first; when the count says more, it
//   connects again with room for that many.
//
// This file builds and checks those bytes as values; the system calls are in ApusMaster.
// Every byte of a reply is treated as hostile: a wrong magic, a count that disagrees with
// the descriptors, a truncated message or a malformed control message is an error, and the
// descriptors the kernel installed are always reported so the caller can close them.

public enum ZergMessage {
    /// The first bytes of every reply.
    public static let magic: [UInt8] = Array("uwsgi-zerg".utf8)
    /// Bytes of the data: the magic and the count.
    public static let dataLength = 14
    /// Linux passes at most this many descriptors in one message (SCM_MAX_FD).
    public static let maxDescriptors = 253
    /// SOL_SOCKET and SCM_RIGHTS on Linux.
    public static let solSocket: Int32 = 1
    public static let scmRights: Int32 = 1

    /// Size of `struct cmsghdr` (size_t length, int level, int type) and the alignment of
    /// control messages: those of a 64-bit Linux.
    static let headerLength = MemoryLayout<Int>.size + 8
    static let alignment = MemoryLayout<Int>.size

    static func align(_ n: Int) -> Int { (n + alignment - 1) & ~(alignment - 1) }

    /// CMSG_SPACE for `count` descriptors: the control buffer a message with them needs.
    public static func controlSpace(descriptors count: Int) -> Int {
        headerLength + align(4 * count)
    }

    /// The data of a reply handing `count` sockets.
    public static func data(count: Int) -> [UInt8] {
        var bytes = magic
        withUnsafeBytes(of: Int32(truncatingIfNeeded: count)) { bytes += $0 }
        return bytes
    }

    /// The control message (one SCM_RIGHTS) that carries `fds`, padded to its CMSG_SPACE.
    public static func control(fds: [Int32]) -> [UInt8] {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: headerLength + 4 * fds.count) { bytes += $0 }  // cmsg_len = CMSG_LEN
        withUnsafeBytes(of: solSocket) { bytes += $0 }
        withUnsafeBytes(of: scmRights) { bytes += $0 }
        for fd in fds { withUnsafeBytes(of: fd) { bytes += $0 } }
        bytes += repeatElement(0, count: controlSpace(descriptors: fds.count) - bytes.count)
        return bytes
    }

    /// Every descriptor the kernel installed in this process for the control buffer
    /// `control` (the bytes recvmsg filled, `msg_controllen` of them), whatever else is
    /// wrong with the message: what the caller must close when the reply is refused.
    /// Walks the control messages as CMSG_NXTHDR does, stopping at one whose length does
    /// not fit.
    public static func descriptors(inControl control: [UInt8]) -> [Int32] {
        var fds: [Int32] = []
        walk(control) { level, type, payload in
            guard level == solSocket && type == scmRights else { return }
            var i = payload.lowerBound
            while i + 4 <= payload.upperBound {
                fds.append(load(Int32.self, control, at: i))
                i += 4
            }
        }
        return fds
    }

    public enum ReplyError: Error, Equatable, CustomStringConvertible {
        /// Nothing came before the server closed.
        case empty
        /// The data does not start with `uwsgi-zerg`.
        case badMagic
        /// The data is neither 10 nor 14 bytes, or more came than a reply holds.
        case badLength(Int)
        /// The kernel dropped descriptors that did not fit the control buffer.
        case truncatedControl
        /// A control message other than SCM_RIGHTS, or one whose length is malformed.
        case badControl
        /// The count in the data is not the number of descriptors received.
        case countMismatch(announced: Int, received: Int)
        case noSockets
        case tooMany(Int)

        public var description: String {
            switch self {
            case .empty: return "it closed the connection without a reply"
            case .badMagic: return "the reply does not start with \"uwsgi-zerg\" (not a zerg server?)"
            case let .badLength(n): return "the reply has \(n) bytes of data (expected 14)"
            case .truncatedControl: return "it sent more descriptors than a message holds"
            case .badControl: return "the reply's control data is not one list of descriptors"
            case let .countMismatch(a, r): return "the reply announces \(a) sockets but carries \(r)"
            case .noSockets: return "it handed no sockets"
            case let .tooMany(n): return "it handed \(n) sockets (at most \(maxDescriptors))"
            }
        }
    }

    /// Checks one reply: `data` as received (up to the buffer given to recvmsg, which
    /// should be larger than a reply so that extra bytes show), `control` as received,
    /// `dataTruncated`/`controlTruncated` from MSG_TRUNC/MSG_CTRUNC. The descriptors on
    /// success, in the order sent; on failure the caller closes
    /// `descriptors(inControl:)`.
    public static func parseReply(data: [UInt8], control: [UInt8], dataTruncated: Bool = false,
                                  controlTruncated: Bool = false) -> Result<[Int32], ReplyError> {
        if data.isEmpty && control.isEmpty { return .failure(.empty) }
        guard data.count >= magic.count, Array(data.prefix(magic.count)) == magic else { return .failure(.badMagic) }
        guard !dataTruncated, data.count == magic.count || data.count == dataLength else {
            return .failure(.badLength(data.count))
        }
        if controlTruncated { return .failure(.truncatedControl) }
        var wellFormed = true
        var lists = 0
        walk(control, malformed: { wellFormed = false }) { level, type, payload in
            if level != solSocket || type != scmRights || payload.count % 4 != 0 { wellFormed = false }
            lists += 1
        }
        guard wellFormed, lists <= 1 else { return .failure(.badControl) }
        let fds = descriptors(inControl: control)
        if data.count == dataLength {
            let announced = Int(load(Int32.self, data, at: magic.count))
            guard announced == fds.count else { return .failure(.countMismatch(announced: announced, received: fds.count)) }
        }
        if fds.isEmpty { return .failure(.noSockets) }
        if fds.count > maxDescriptors { return .failure(.tooMany(fds.count)) }
        return .success(fds)
    }

    /// Calls `body(level, type, payload range)` for each control message of `control`;
    /// `malformed` when a header is cut short or a length does not fit.
    static func walk(_ control: [UInt8], malformed: () -> Void = {},
                     _ body: (Int32, Int32, Range<Int>) -> Void) {
        var offset = 0
        while offset < control.count {
            guard control.count - offset >= headerLength else { malformed(); return }
            let length = load(Int.self, control, at: offset)
            guard length >= headerLength, length <= control.count - offset else { malformed(); return }
            let level = load(Int32.self, control, at: offset + MemoryLayout<Int>.size)
            let type = load(Int32.self, control, at: offset + MemoryLayout<Int>.size + 4)
            body(level, type, (offset + headerLength)..<(offset + length))
            let next = align(length)
            guard next > 0, next <= control.count - offset else { return }
            offset += next
        }
    }

    static func load<T: FixedWidthInteger>(_: T.Type, _ bytes: [UInt8], at offset: Int) -> T {
        var value = T.zero
        withUnsafeMutableBytes(of: &value) { v in
            for i in 0..<MemoryLayout<T>.size { v[i] = bytes[offset + i] }
        }
        return value
    }
}
