import ApusObserve
import ApusProtocols

/// The loaded WSGI callable and everything made once per interpreter to call it fast.
/// Every method is called with the GIL held, which also serialises access to the caches.
public final class WSGIApplication: @unchecked Sendable {
    let interpreter: PythonInterpreter
    let api: CPythonAPI
    let app: PyRef
    let environ: WSGIEnviron
    let bytesIO: PyRef
    let fileWrapper: PyRef
    let sendableFile: PyRef
    let fileStream: PyRef
    let emptyBytes: PyRef

    /// - Parameters:
    ///   - scriptName: SCRIPT_NAME (the mount prefix, "" for the root).
    ///   - multithread: more than one app thread in this process.
    ///   - multiprocess: more than one worker process.
    ///   - trustedProxies: who may set X-Forwarded-* / Forwarded.
    public init(interpreter: PythonInterpreter, app: PyRef, scriptName: String, multithread: Bool, multiprocess: Bool,
                trustedProxies: TrustedProxies = .default) {
        self.interpreter = interpreter
        let api = interpreter.api
        self.api = api
        self.app = app
        let io = api.PyImport_ImportModule(cstr("io"))!
        bytesIO = api.PyObject_GetAttrString(io, cstr("BytesIO"))!
        api.decref(io)
        fileWrapper = interpreter.helper("FileWrapper")
        sendableFile = interpreter.helper("sendable_file")
        fileStream = interpreter.helper("file_stream")
        emptyBytes = api.PyBytes_FromStringAndSize(nil, 0)!
        let version = api.PyTuple_New(2)!
        _ = api.PyTuple_SetItem(version, 0, api.PyLong_FromLong(1))
        _ = api.PyTuple_SetItem(version, 1, api.PyLong_FromLong(0))
        let stderr = api.PySys_GetObject(cstr("stderr")) ?? api.none
        let constants = [
            EnvironConstant(name: "wsgi.version", value: version),
            EnvironConstant(name: "wsgi.errors", value: stderr),
            EnvironConstant(name: "wsgi.multithread", value: multithread ? api.trueObject : api.falseObject),
            EnvironConstant(name: "wsgi.multiprocess", value: multiprocess ? api.trueObject : api.falseObject),
            EnvironConstant(name: "wsgi.run_once", value: api.falseObject),
            EnvironConstant(name: "wsgi.input_terminated", value: api.trueObject),
            EnvironConstant(name: "wsgi.file_wrapper", value: fileWrapper),
            EnvironConstant(name: "SERVER_SOFTWARE", value: api.interned("apus")),
        ]
        environ = WSGIEnviron(api: api, constants: constants, scriptName: scriptName, trustedProxies: trustedProxies)
    }

    /// One per app thread: holds that thread's `start_response` and `write` callables.
    public func makeCaller() -> WSGICaller { WSGICaller(application: self) }

    /// A new `wsgi.input` stream for `body` (new reference), or nil with a Python error set.
    func inputStream(_ body: WSGIBody) -> PyRef? {
        switch body {
        case .empty:
            return interpreter.call(bytesIO, [emptyBytes])
        case let .memory(b):
            let data = api.bytes(b)
            defer { api.decref(data) }
            return interpreter.call(bytesIO, [data])
        case let .file(fd, _):
            let n = api.PyLong_FromLong(Int(fd))!
            defer { api.decref(n) }
            return interpreter.call(fileStream, [n])
        }
    }
}
