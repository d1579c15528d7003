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

/// Runs the app for one request at a time on one thread (the loop thread, or one pool
/// thread): takes the GIL, calls the app through its own `WSGICaller`, writes the response.
final class AppRunner {
    unowned let worker: Worker
    let caller: WSGICaller
    let writer: ResponseWriter
    /// This thread's hold on the GIL.
    let thread: PythonThread
    /// This runner's line in `InFlight`.
    let index: Int

    /// On the loop thread (GIL held by the caller of init) or a pool thread.
    init(worker: Worker, index: Int = 0, poolThread: Bool = false) {
        self.worker = worker
        self.index = index
        let thread = poolThread ? worker.interpreter.attachCurrentThread() : worker.loopThread
        self.thread = thread
        if poolThread { thread.acquireGIL() }
        caller = worker.application.makeCaller(thread: thread)
        if poolThread { thread.releaseGIL() }
        writer = ResponseWriter(sendTimeout: worker.rules.sendTimeout)
        writer.waiting = { wait in thread.withoutGIL(wait) }
    }

    func run(_ job: AppJob) {
        let conn = job.conn
        writer.reset(for: conn)
        let started = Sys.now()
        thread.acquireGIL()
        let buf = UnsafeRawBufferPointer(start: conn.buffer + conn.start, count: conn.end - conn.start)
        InFlight.begin(index, UnsafeRawBufferPointer(rebasing: buf[conn.head.method]), UnsafeRawBufferPointer(rebasing: buf[conn.head.target]))
        defer { InFlight.end(index) }
        conn.peerAddress.withUnsafeBytes { peer in
            let uwsgi = conn.listener.proto == .uwsgi
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
        thread.releaseGIL()
        worker.accessLog?.record(conn: conn, status: writer.status, bytes: writer.bodyBytes, seconds: Sys.now() - started)
    }
}

/// `--threads N`: N app threads taking jobs from the loop, reporting back through an eventfd.
final class AppPool: @unchecked Sendable {
    unowned let worker: Worker
    let doneFD: Int32
    /// Jobs for the app threads; finished jobs for the loop. Two locks, so an app thread
    /// reporting a finished job does not contend with the loop handing out the next one.
    private var lock = pthread_mutex_t()
    private var doneLock = pthread_mutex_t()
    private var ready = pthread_cond_t()
    private var queue: [AppJob] = []
    private var done: [(AppJob, Bool)] = []
    /// The loop's side of `done`: swapped with it, so collecting allocates nothing.
    private var collected: [(AppJob, Bool)] = []

    init(worker: Worker, threads: Int) {
        self.worker = worker
        doneFD = apus_eventfd()
        pthread_mutex_init(&lock, nil)
        pthread_mutex_init(&doneLock, nil)
        pthread_cond_init(&ready, nil)
        for i in 0..<threads {
            let box = Unmanaged.passRetained(ThreadStart(pool: self, index: i)).toOpaque()
            var tid = pthread_t()
            pthread_create(&tid, nil, { arg in
                let start = Unmanaged<ThreadStart>.fromOpaque(arg!).takeRetainedValue()
                start.pool.threadMain(index: start.index)
                return nil
            }, box)
        }
    }

    func submit(_ job: AppJob) {
        pthread_mutex_lock(&lock)
        queue.append(job)
        pthread_cond_signal(&ready)
        pthread_mutex_unlock(&lock)
    }

    /// On the loop thread: finish the connections the app threads are done with.
    func collectFinished(_ t: Double) {
        Sys.drain(doneFD)
        pthread_mutex_lock(&doneLock)
        swap(&done, &collected)
        pthread_mutex_unlock(&doneLock)
        for (job, keep) in collected { worker.finish(job, keepAlive: keep, now: t) }
        collected.removeAll(keepingCapacity: true)
    }

    private final class ThreadStart {
        let pool: AppPool
        let index: Int
        init(pool: AppPool, index: Int) { self.pool = pool; self.index = index }
    }

    private func threadMain(index: Int) {
        let runner = AppRunner(worker: worker, index: index, poolThread: true)
        while true {
            pthread_mutex_lock(&lock)
            while queue.isEmpty { pthread_cond_wait(&ready, &lock) }
            let job = queue.removeFirst()
            pthread_mutex_unlock(&lock)
            runner.run(job)
            let keep = runner.writer.canKeepAlive
            pthread_mutex_lock(&doneLock)
            // The loop is woken once for everything finished before it looks.
            let wake = done.isEmpty
            done.append((job, keep))
            pthread_mutex_unlock(&doneLock)
            if wake { Sys.wake(doneFD) }
        }
    }
}
