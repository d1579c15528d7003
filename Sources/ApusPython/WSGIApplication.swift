import ApusObserve
import ApusProtocols

/// The loaded WSGI callable and everything made once per interpreter to call it fast.
/// Every method is called with the GIL held, which also serialises access to the caches.
/// What it holds is kept for the process (it is never freed).
public final class WSGIApplication: @unchecked Sendable {
    let interpreter: PythonInterpreter
    let api: CPythonAPI
    let app: PyBorrowed
    let environ: WSGIEnviron
    let bytesIO: PyBorrowed
    let fileWrapper: PyBorrowed
    let sendableFile: PyBorrowed
    let fileStream: PyBorrowed
    let emptyBytes: PyBorrowed

    /// GIL held.
    /// - Parameters:
    ///   - scriptName: SCRIPT_NAME (the mount prefix, "" for the root).
    ///   - multithread: more than one app thread in this process.
    ///   - multiprocess: more than one worker process.
    ///   - trustedProxies: who may set X-Forwarded-* / Forwarded.
    public init(interpreter: PythonInterpreter, app: WSGICallable, scriptName: String, multithread: Bool, multiprocess: Bool,
                trustedProxies: TrustedProxies = .default) {
        self.interpreter = interpreter
        let api = interpreter.api
        self.api = api
        self.app = app.object
        let io = api.importModule("io")!
        bytesIO = api.attribute(io, "BytesIO")!.keepForever()
        fileWrapper = interpreter.helper("FileWrapper")
        sendableFile = interpreter.helper("sendable_file")
        fileStream = interpreter.helper("file_stream")
        emptyBytes = api.bytes(UnsafeRawBufferPointer(start: nil, count: 0)).keepForever()
        // The template dict of constant entries keeps its own references to these.
        let version = api.tuple(count: 2)!
        api.setTupleItem(version, 0, api.integer(1))
        api.setTupleItem(version, 1, api.integer(0))
        let software = api.interned("apus")
        let constants = [
            EnvironConstant(name: "wsgi.version", value: version.borrow),
            EnvironConstant(name: "wsgi.errors", value: api.sysObject("stderr") ?? api.none),
            EnvironConstant(name: "wsgi.multithread", value: multithread ? api.trueObject : api.falseObject),
            EnvironConstant(name: "wsgi.multiprocess", value: multiprocess ? api.trueObject : api.falseObject),
            EnvironConstant(name: "wsgi.run_once", value: api.falseObject),
            EnvironConstant(name: "wsgi.input_terminated", value: api.trueObject),
            EnvironConstant(name: "wsgi.file_wrapper", value: fileWrapper),
            EnvironConstant(name: "SERVER_SOFTWARE", value: software.borrow),
        ]
        environ = WSGIEnviron(api: api, constants: constants, scriptName: scriptName, trustedProxies: trustedProxies)
    }

    /// One per app thread, which it serves: holds that thread's `start_response` and
    /// `write` callables. GIL held.
    public func makeCaller(thread: PythonThread) -> WSGICaller { WSGICaller(application: self, thread: thread) }

    /// A new `wsgi.input` stream for `body`, or nil with a Python error set.
    func inputStream(_ body: WSGIBody) -> PyOwned? {
        switch body {
        case .empty:
            return api.call(bytesIO, emptyBytes)
        case let .memory(b):
            return api.call(bytesIO, api.bytes(b))
        case let .file(fd, _):
            return api.call(fileStream, api.integer(Int(fd)))
        }
    }
}
