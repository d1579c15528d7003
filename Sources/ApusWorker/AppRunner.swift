#if canImport(Glibc)
import Glibc
#endif
import ApusObserve
import CApusSys
import ApusProtocols
import ApusPython
import ApusSys

/// A complete request waiting for, or in, the app.
struct AppJob {
    let conn: Connection
    let body: WSGIBody
    let contentLength: Int?
    /// Body bytes that sit in the connection buffer right after the head.
    let bodyInBuffer: Int
    /// The de-chunked body is in `conn.body.memory`.
    let chunkedMemory: Bool
}

/// Runs the app for one request at a time on one of the worker's threads: calls the app
/// through the thread's own `WSGICaller` and writes the response. One per thread.
final class AppRunner {
    unowned let worker: Worker
    let caller: WSGICaller
    let writer: ResponseWriter
    /// This thread's hold on the GIL.
    let thread: PythonThread
    /// The thread's number in the worker (0: the main thread) and its line in `InFlight`.
    let index: Int

    /// On the main thread (GIL held by the caller of init, index 0) or a thread the worker
    /// started (Python's state for it made here, GIL not held).
    init(worker: Worker, index: Int) {
        self.worker = worker
        self.index = index
        let started = index > 0
        let thread = started ? worker.interpreter.attachCurrentThread() : worker.mainThread
        self.thread = thread
        if started { thread.acquireGIL() }
        caller = worker.application.makeCaller(thread: thread)
        if started { thread.releaseGIL() }
        writer = ResponseWriter(sendTimeout: worker.rules.sendTimeout, core: index)
        writer.waiting = { wait in thread.withoutGIL(wait) }
        writer.capture = ResponseHeaderCapture(names: worker.config.accessLogFormat.responseHeaders)
    }

    /// Runs one request. The GIL is held by the caller, which keeps it across the requests
    /// it runs back to back.
    func run(_ job: AppJob) {
        let conn = job.conn
        writer.reset(for: conn)
        let started = Sys.now()
        let buf = UnsafeRawBufferPointer(start: conn.buffer + conn.start, count: conn.end - conn.start)
        if HarakiriClaim.enabled { HarakiriClaim.noteRequest(index, conn, buf) }
        InFlight.begin(index, UnsafeRawBufferPointer(rebasing: buf[conn.head.method]), UnsafeRawBufferPointer(rebasing: buf[conn.head.target]),
                       fd: conn.fd, now: started)
        conn.peerAddress.withUnsafeBytes { peer in
            let uwsgi = conn.machine.wire == .uwsgi
            let info = WSGIConnectionInfo(remoteAddress: peer, remotePort: conn.peerPort, listener: conn.listener.wsgi,
                                          https: uwsgi && conn.uwsgiHead.https, trustedPeer: conn.trustedPeer,
                                          uwsgiVars: uwsgi ? conn.uwsgiHead.vars : nil)
            if job.chunkedMemory {
                conn.body.memory.withUnsafeBytes { mem in
                    caller.call(buf, conn.head, info, body: .memory(mem), contentLength: job.contentLength, sink: writer)
                }
            } else {
                caller.call(buf, conn.head, info, body: job.body, contentLength: job.contentLength, sink: writer)
            }
        }
        // The app returned: its answer is ours unless the --harakiri watchdog gave up on it
        // first (the client has a 504 or a cut connection, which the loop now closes).
        if !writer.claimAnswer() { HarakiriClaim.returnedLate() }
        let finished = Sys.now()
        InFlight.end(index, now: finished, status: writer.status, bytes: writer.bodyBytes, failed: writer.appFailed)
        worker.logAccess(conn, status: writer.status, bytes: writer.bodyBytes, seconds: finished - started,
                         response: writer.capture.isEmpty ? nil : writer.capture)
    }
}
