import ApusObserve
import ApusProtocols

/// Calls the app for one request at a time on one thread: builds the environ, provides
/// `start_response` and `write()`, validates the response head, walks the body iterable
/// into a `WSGIResponseSink`, and always calls the iterable's `close()`.
public final class WSGICaller {
    let application: WSGIApplication
    let api: CPythonAPI
    /// `start_response` and `write`, bound to this caller.
    private(set) var startResponse: PyRef! = nil
    private(set) var write: PyRef! = nil

    // State of the request being served.
    private var status: PyRef?
    private var headers: PyRef?
    private var committed = false
    private var failed = false
    private var clientGone = false
    private var head = WSGIResponseHead()
    private var sink: WSGIResponseSink?
    private var requestLabel: (UnsafeRawBufferPointer, Range<Int>, Range<Int>) = (UnsafeRawBufferPointer(start: nil, count: 0), 0..<0, 0..<0)

    init(application: WSGIApplication) {
        self.application = application
        api = application.api
        let me = Unmanaged.passUnretained(self).toOpaque()  // the caller lives as long as its thread
        let capsule = api.PyCapsule_New(me, nil, nil)!
        // METH_VARARGS | METH_KEYWORDS: `start_response(status, headers, exc_info=...)`.
        startResponse = makeFunction("start_response", unsafeBitCast(startResponseEntry, to: UnsafeRawPointer.self), flags: 3, capsule)
        write = makeFunction("write", unsafeBitCast(writeEntry, to: UnsafeRawPointer.self), flags: 8, capsule)
        api.decref(capsule)
    }

    private func makeFunction(_ name: StaticString, _ entry: UnsafeRawPointer, flags: Int32, _ capsule: PyRef) -> PyRef {
        // A PyMethodDef {name, meth, flags, doc} laid out by hand: it must outlive the
        // function object, so it is never freed (three per app thread).
        let def = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 8)
        def.initializeMemory(as: UInt8.self, repeating: 0, count: 32)
        def.storeBytes(of: UnsafeRawPointer(name.utf8Start), toByteOffset: 0, as: UnsafeRawPointer.self)
        def.storeBytes(of: entry, toByteOffset: 8, as: UnsafeRawPointer.self)
        def.storeBytes(of: flags, toByteOffset: 16, as: Int32.self)
        return api.PyCFunction_NewEx(def, capsule, nil)!
    }

    /// Serves one request. Called with the GIL held; returns with it held. Blocking sink
    /// calls run with the GIL released.
    public func call(_ buf: UnsafeRawBufferPointer, _ requestHead: borrowing HTTPRequestHead,
                     _ conn: WSGIConnectionInfo, body: WSGIBody, contentLength: Int?,
                     sink: WSGIResponseSink) {
        self.sink = sink
        committed = false
        failed = false
        clientGone = false
        head.reset()
        requestLabel = (buf, requestHead.method, requestHead.target)
        defer {
            api.decref(status); status = nil
            api.decref(headers); headers = nil
            self.sink = nil
        }
        guard let input = application.inputStream(body) else {
            appFailed("cannot make wsgi.input")
            return
        }
        let environ = application.environ.build(buf, requestHead, conn, contentLength: contentLength, input: input)
        api.decref(input)
        let args = api.PyTuple_New(2)!
        _ = api.PyTuple_SetItem(args, 0, environ)            // steals
        api.incref(startResponse)
        _ = api.PyTuple_SetItem(args, 1, startResponse)      // steals
        let result = api.PyObject_Call(application.app, args, nil)
        api.decref(args)
        guard let result else {
            appFailed("exception in the application")
            return
        }
        consume(result)
        api.decref(result)
    }

    /// Walks the iterable and closes it.
    private func consume(_ result: PyRef) {
        let isSequence = api.isExactList(result) || api.isExactTuple(result)
        if isSequence {
            let list = api.isExactList(result)
            let n = list ? api.PyList_Size(result) : api.PyTuple_Size(result)
            for i in 0..<n where !failed && !clientGone {
                let item = list ? api.PyList_GetItem(result, i)! : api.PyTuple_GetItem(result, i)!
                emit(item, flush: false)
            }
        } else if !sendFileIfPossible(result) {
            if let iterator = api.PyObject_GetIter(result) {
                while !failed && !clientGone, let item = api.PyIter_Next(iterator) {
                    emit(item, flush: true)
                    api.decref(item)
                }
                api.decref(iterator)
            }
            if api.PyErr_Occurred() != nil {
                appFailed("exception while iterating the response")
            }
        }
        if !failed && !clientGone {
            if !committed { _ = commit() }
            if !failed {
                let ok = sink!.end()
                if !ok { clientGone = true }
            }
        }
        if !isSequence { closeIterable(result) }
    }

    /// wsgi.file_wrapper over a regular file: sendfile instead of reading through Python.
    private func sendFileIfPossible(_ result: PyRef) -> Bool {
        guard api.PyObject_IsInstance(result, application.fileWrapper) == 1 else {
            api.PyErr_Clear()
            return false
        }
        guard let info = application.interpreter.call(application.sendableFile, [result]) else {
            api.PyErr_Clear()
            return false
        }
        defer { api.decref(info) }
        if info == api.none { return false }
        let fd = Int32(api.PyLong_AsLong(api.PyTuple_GetItem(info, 0)!))
        let offset = api.PyLong_AsLong(api.PyTuple_GetItem(info, 1)!)
        var count = api.PyLong_AsLong(api.PyTuple_GetItem(info, 2)!)
        guard commit() else { return true }
        if let cl = head.contentLength { count = min(count, cl) }
        let ok = count == 0 || sink!.file(fd: fd, offset: offset, count: count)
        if !ok { clientGone = true }
        return true
    }

    private func closeIterable(_ result: PyRef) {
        guard let close = api.PyObject_GetAttrString(result, cstr("close")) else {
            api.PyErr_Clear()
            return
        }
        let none = api.PyTuple_New(0)!
        if let r = api.PyObject_Call(close, none, nil) {
            api.decref(r)
        } else {
            logAppError("exception in the response's close()")
        }
        api.decref(none)
        api.decref(close)
    }

    /// One item of the body iterable (borrowed).
    private func emit(_ item: PyRef, flush: Bool) {
        guard let data = bytesView(item) else {
            api.PyErr_SetString(api.excTypeError, "response body items must be bytes")
            appFailed("bad response body")
            return
        }
        if data.count == 0 { return }
        if !committed, !commit() { return }
        let ok: Bool
        ok = sink!.body(data, flush: flush)
        if !ok { clientGone = true }
    }

    private func bytesView(_ o: PyRef) -> UnsafeRawBufferPointer? {
        if !api.isExactBytes(o), api.PyObject_IsInstance(o, application.api.bytesType) != 1 {
            api.PyErr_Clear()
            return nil
        }
        return api.bytesView(o)
    }

    // MARK: Response head

    /// Validates status and headers and hands the head to the sink. False (and a 500)
    /// when they are invalid.
    private func commit() -> Bool {
        guard let status, let headers else {
            api.PyErr_SetString(api.excAssertionError, "the application returned without calling start_response")
            appFailed("start_response was not called")
            return false
        }
        if let problem = buildHead(status: status, headers: headers) {
            api.PyErr_SetString(api.excValueError, problem)
            appFailed("invalid response head: \(problem)")
            return false
        }
        committed = true
        sink!.begin(head)
        return true
    }

    /// nil when valid, else what is wrong.
    private func buildHead(status: PyRef, headers: PyRef) -> String? {
        head.reset()
        guard api.isExactUnicode(status) || api.PyObject_IsInstance(status, api.unicodeType) == 1,
              let s = api.utf8(status) else { api.PyErr_Clear(); return "status must be a str" }
        guard utf8ToLatin1(s, into: &head.statusLine) else { return "status is not latin-1" }
        let line = head.statusLine
        guard line.count >= 3, line[0...2].allSatisfy({ $0 >= 48 && $0 <= 57 }),
              line.count == 3 || line[3] == UInt8(ascii: " "),
              !line.contains(where: { $0 == 13 || $0 == 10 || $0 == 0 }) else {
            return "status must be a 3-digit code and a reason phrase"
        }
        head.statusCode = Int(line[0] - 48) * 100 + Int(line[1] - 48) * 10 + Int(line[2] - 48)
        if head.statusCode < 200 {
            // 1xx responses are the server's to send (100 Continue); never a final answer.
            return head.statusCode < 100 ? "status code below 100" : "a 1xx status is not a final response"
        }
        let list = api.isExactList(headers)
        let n = list ? api.PyList_Size(headers) : api.PySequence_Size(headers)
        if n < 0 { api.PyErr_Clear(); return "headers must be a list of (name, value) tuples" }
        for i in 0..<n {
            let pair: PyRef
            if list {
                pair = api.PyList_GetItem(headers, i)!
                api.incref(pair)
            } else {
                guard let p = api.PySequence_GetItem(headers, i) else { api.PyErr_Clear(); return "bad header list" }
                pair = p
            }
            defer { api.decref(pair) }
            if let problem = addHeader(pair) { return problem }
        }
        return nil
    }

    private func addHeader(_ pair: PyRef) -> String? {
        guard api.isExactTuple(pair), api.PyTuple_Size(pair) == 2 else {
            return "each header must be a (name, value) tuple"
        }
        let nameObj = api.PyTuple_GetItem(pair, 0)!
        let valueObj = api.PyTuple_GetItem(pair, 1)!
        guard api.isExactUnicode(nameObj) || api.PyObject_IsInstance(nameObj, api.unicodeType) == 1,
              api.isExactUnicode(valueObj) || api.PyObject_IsInstance(valueObj, api.unicodeType) == 1,
              let name = api.utf8(nameObj), let value = api.utf8(valueObj) else {
            api.PyErr_Clear()
            return "header names and values must be str"
        }
        guard isValidHeaderName(name) else {
            return "invalid header name \(String(decoding: name, as: UTF8.self).debugDescription)"
        }
        switch classifyResponseHeader(name) {
        case .contentLength:
            guard let n = parseContentLength(value) else { return "invalid Content-Length" }
            if let prior = head.contentLength, prior != n { return "conflicting Content-Length headers" }
            head.contentLength = n
            return nil  // the writer sends the one it enforces
        case .connection:
            if connectionValueHasClose(value) { head.closeRequested = true }
            return nil
        case .hopByHop:
            return nil
        case .date: head.hasDate = true
        case .server: head.hasServer = true
        case .other: break
        }
        head.headerLines.append(contentsOf: name)
        head.headerLines.append(UInt8(ascii: ":"))
        head.headerLines.append(UInt8(ascii: " "))
        let mark = head.headerLines.count
        guard utf8ToLatin1(value, into: &head.headerLines) else {
            return "header value is not latin-1"
        }
        for i in mark..<head.headerLines.count {
            let c = head.headerLines[i]
            if (c < 32 && c != 9) || c == 127 { return "header value contains a control character" }
        }
        head.headerLines.append(13)
        head.headerLines.append(10)
        return nil
    }

    // MARK: Errors

    private func appFailed(_ what: String) {
        logAppError(what)
        failed = true
        sink?.fail()
    }

    /// Logs the request and the pending Python traceback.
    private func logAppError(_ what: String) {
        let (buf, m, t) = requestLabel
        let method = buf.baseAddress == nil ? "" : String(decoding: buf[m], as: UTF8.self)
        let target = buf.baseAddress == nil ? "" : String(decoding: buf[t], as: UTF8.self)
        Log.error("\(what) (\(method) \(target))")
        if api.PyErr_Occurred() != nil { api.PyErr_PrintEx(0) }
    }

    // MARK: Entry points called by Python

    /// `start_response(status, headers, exc_info=None)`, each also by keyword.
    fileprivate func startResponseCall(_ args: PyRef, _ kwargs: PyRef?) -> PyRef? {
        let n = api.PyTuple_Size(args)
        var status = n > 0 ? api.PyTuple_GetItem(args, 0) : nil
        var headers = n > 1 ? api.PyTuple_GetItem(args, 1) : nil
        var exc = n > 2 ? api.PyTuple_GetItem(args, 2) : nil
        if let kwargs, api.PyDict_Size(kwargs) > 0 {
            var known = 0
            for (name, slot) in [(cstr("status"), 0), (cstr("headers"), 1), (cstr("response_headers"), 1), (cstr("exc_info"), 2)] {
                guard let value = api.PyDict_GetItemString(kwargs, name) else { continue }
                known += 1
                if slot < n {
                    api.PyErr_SetString(api.excTypeError, "start_response() got multiple values for an argument")
                    return nil
                }
                switch slot {
                case 0: status = value
                case 1: headers = value
                default: exc = value
                }
            }
            if known != api.PyDict_Size(kwargs) {
                api.PyErr_SetString(api.excTypeError, "start_response() got an unexpected keyword argument")
                return nil
            }
        }
        guard n <= 3, let status, let headers else {
            api.PyErr_SetString(api.excTypeError, "start_response(status, headers, exc_info=None)")
            return nil
        }
        if let exc, hasException(exc) {
            if committed {
                // Too late to change the response: re-raise the app's exception (PEP 3333).
                guard api.isExactTuple(exc), api.PyTuple_Size(exc) == 3 else {
                    api.PyErr_SetString(api.excTypeError, "exc_info must be a 3-tuple")
                    return nil
                }
                let t = api.PyTuple_GetItem(exc, 0), v = api.PyTuple_GetItem(exc, 1), tb = api.PyTuple_GetItem(exc, 2)
                api.incref(t); api.incref(v); api.incref(tb)
                api.PyErr_Restore(t, v, tb)
                return nil
            }
        } else if self.status != nil {
            api.PyErr_SetString(api.excAssertionError, "start_response called a second time without exc_info")
            return nil
        }
        api.incref(status); api.incref(headers)
        api.decref(self.status); api.decref(self.headers)
        self.status = status
        self.headers = headers
        api.incref(write)
        return write
    }

    /// Whether `exc_info` names an exception: not None, and not `(None, None, None)` (what
    /// `sys.exc_info()` gives outside an `except` block).
    private func hasException(_ exc: PyRef) -> Bool {
        if exc == api.none { return false }
        if api.isExactTuple(exc), api.PyTuple_Size(exc) == 3,
           api.PyTuple_GetItem(exc, 0) == api.none, api.PyTuple_GetItem(exc, 1) == api.none {
            return false
        }
        return true
    }

    fileprivate func writeCall(_ data: PyRef) -> PyRef? {
        guard sink != nil else {
            api.PyErr_SetString(api.excRuntimeError, "write() called outside of a request")
            return nil
        }
        guard let view = bytesView(data) else {
            api.PyErr_SetString(api.excTypeError, "write() takes bytes")
            return nil
        }
        if failed || clientGone {
            api.PyErr_SetString(api.excOSError, "client disconnected")
            return nil
        }
        if !committed {
            if status == nil {
                api.PyErr_SetString(api.excAssertionError, "write() before start_response")
                return nil
            }
            if let problem = buildHead(status: status!, headers: headers!) {
                api.PyErr_SetString(api.excValueError, problem)
                return nil
            }
            committed = true
            sink!.begin(head)
        }
        if view.count > 0 {
            let ok = sink!.body(view, flush: true)
            if !ok {
                clientGone = true
                api.PyErr_SetString(api.excOSError, "client disconnected")
                return nil
            }
        }
        api.incref(api.none)
        return api.none
    }
}

private func caller(_ capsule: PyRef?, _ api: (WSGICaller) -> PyRef?) -> PyRef? {
    // The capsule's pointer is the WSGICaller; the GIL is held in every entry point.
    let raw = capsuleCallerPointer(capsule!)
    return api(Unmanaged<WSGICaller>.fromOpaque(raw).takeUnretainedValue())
}

/// PyCapsule layout: PyObject_HEAD (16 bytes), then `void *pointer`. Reading it directly
/// avoids a function call per request; the layout is the same in 3.9-3.13.
@inline(__always) private func capsuleCallerPointer(_ capsule: PyRef) -> UnsafeMutableRawPointer {
    capsule.load(fromByteOffset: 16, as: UnsafeMutableRawPointer.self)
}

private let startResponseEntry: @convention(c) (PyRef?, PyRef?, PyRef?) -> PyRef? = { capsule, args, kwargs in
    caller(capsule) { $0.startResponseCall(args!, kwargs) }
}
private let writeEntry: @convention(c) (PyRef?, PyRef?) -> PyRef? = { capsule, data in
    caller(capsule) { $0.writeCall(data!) }
}
