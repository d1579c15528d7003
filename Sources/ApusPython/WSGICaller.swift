import ApusObserve
import ApusProtocols

/// Calls the app for one request at a time on one thread: builds the environ, provides
/// `start_response` and `write()`, validates the response head, walks the body iterable
/// into a `WSGIResponseSink`, and always calls the iterable's `close()`.
public final class WSGICaller {
    let application: WSGIApplication
    let api: CPythonAPI
    /// The thread this caller serves; `call` checks that it holds the GIL.
    let thread: PythonThread
    /// `start_response` and `write`, bound to this caller (kept for the process, as the
    /// caller is).
    private var startResponse: PyBorrowed
    private var write: PyBorrowed

    // State of the request being served. The two references are released before `call`
    // returns, under the GIL. Only this caller's thread, holding the GIL, touches them,
    // and no access to them spans a call into Python: the run-time exclusivity check
    // (a call into the Swift runtime per access) is left out.
    @exclusivity(unchecked) private var status: PyOwned?
    @exclusivity(unchecked) private var headers: PyOwned?
    private var committed = false
    private var failed = false
    private var clientGone = false
    @exclusivity(unchecked) private var head = WSGIResponseHead()
    private var sink: WSGIResponseSink?
    private var requestLabel = RequestLabel()

    /// The method and target of the request being served, for error lines.
    private struct RequestLabel {
        var buffer = UnsafeRawBufferPointer(start: nil, count: 0)
        var method = 0..<0
        var target = 0..<0
    }

    init(application: WSGIApplication, thread: PythonThread) {
        self.application = application
        self.thread = thread
        let api = application.api
        self.api = api
        // Placeholders until the functions exist: they need `self` in their capsule.
        startResponse = api.none
        write = api.none
        let me = Unmanaged.passUnretained(self).toOpaque()  // the caller lives as long as its thread
        let capsule = api.capsule(me)!
        // METH_VARARGS | METH_KEYWORDS: `start_response(status, headers, exc_info=...)`.
        startResponse = makeFunction("start_response", unsafeBitCast(startResponseEntry, to: UnsafeRawPointer.self), flags: 3, capsule)
        // METH_O: `write(data)`.
        write = makeFunction("write", unsafeBitCast(writeEntry, to: UnsafeRawPointer.self), flags: 8, capsule)
    }

    private func makeFunction(_ name: StaticString, _ entry: UnsafeRawPointer, flags: Int32, _ capsule: borrowing PyOwned) -> PyBorrowed {
        // A PyMethodDef {name, meth, flags, doc} laid out by hand: it must outlive the
        // function object, so it is never freed (two per app thread).
        let def = UnsafeMutableRawPointer.allocate(byteCount: 32, alignment: 8)
        def.initializeMemory(as: UInt8.self, repeating: 0, count: 32)
        def.storeBytes(of: UnsafeRawPointer(name.utf8Start), toByteOffset: 0, as: UnsafeRawPointer.self)
        def.storeBytes(of: entry, toByteOffset: 8, as: UnsafeRawPointer.self)
        def.storeBytes(of: flags, toByteOffset: 16, as: Int32.self)
        return api.function(def, bound: capsule)!.keepForever()
    }

    /// Serves one request. Called with the GIL held by `thread`; returns with it held.
    /// Blocking sink calls run with the GIL released.
    public func call(_ buf: UnsafeRawBufferPointer, _ requestHead: borrowing HTTPRequestHead,
                     _ conn: WSGIConnectionInfo, body: WSGIBody, contentLength: Int?,
                     sink: WSGIResponseSink) {
        precondition(thread.holdsGIL, "the app called without the GIL")
        self.sink = sink
        committed = false
        failed = false
        clientGone = false
        head.reset()
        requestLabel = RequestLabel(buffer: buf, method: requestHead.method, target: requestHead.target)
        defer {
            status = nil
            headers = nil
            self.sink = nil
        }
        let result: PyOwned
        do {
            // The environ and its input stream go when the app has returned (the iterable
            // may still hold them).
            guard let input = application.inputStream(body) else {
                appFailed("cannot make wsgi.input")
                return
            }
            let args = api.tuple(count: 2)!
            api.setTupleItem(args, 0, application.environ.build(buf, requestHead, conn, contentLength: contentLength, input: input))
            api.setTupleItem(args, 1, PyOwned(retaining: startResponse))
            guard let r = api.call(application.app, tuple: args) else {
                appFailed("exception in the application")
                return
            }
            result = r
        }
        consume(result.borrow)
    }

    /// Walks the iterable and closes it.
    private func consume(_ result: PyBorrowed) {
        let isSequence = api.isExactList(result) || api.isExactTuple(result)
        if isSequence {
            let list = api.isExactList(result)
            let n = list ? api.listSize(result) : api.tupleSize(result)
            for i in 0..<n where !failed && !clientGone {
                let item = list ? api.listItem(result, i)! : api.tupleItem(result, i)!
                emit(item, flush: false)
            }
        } else if !sendFileIfPossible(result) {
            if let iterator = api.iterator(result) {
                while !failed && !clientGone, let item = api.next(iterator) {
                    emit(item.borrow, flush: true)
                }
            }
            if api.errorOccurred() {
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
    private func sendFileIfPossible(_ result: PyBorrowed) -> Bool {
        guard api.isInstance(result, application.fileWrapper) == 1 else {
            api.clearError()
            return false
        }
        guard let info = api.call(application.sendableFile, result) else {
            api.clearError()
            return false
        }
        if info.borrow == api.none { return false }
        let fd = Int32(api.integerValue(api.tupleItem(info, 0)!))
        let offset = api.integerValue(api.tupleItem(info, 1)!)
        var count = api.integerValue(api.tupleItem(info, 2)!)
        guard commit() else { return true }
        if let cl = head.contentLength { count = min(count, cl) }
        let ok = count == 0 || sink!.file(fd: fd, offset: offset, count: count)
        if !ok { clientGone = true }
        return true
    }

    private func closeIterable(_ result: PyBorrowed) {
        guard let close = api.attribute(result, "close") else {
            api.clearError()
            return
        }
        if api.call(close, tuple: api.tuple(count: 0)!) == nil {
            logAppError("exception in the response's close()")
        }
    }

    /// One item of the body iterable.
    private func emit(_ item: PyBorrowed, flush: Bool) {
        guard let data = bytesView(item) else {
            api.setError(api.excTypeError, "response body items must be bytes")
            appFailed("bad response body")
            return
        }
        if data.count == 0 { return }
        if !committed, !commit() { return }
        let ok = sink!.body(data, flush: flush)
        if !ok { clientGone = true }
    }

    private func bytesView(_ o: PyBorrowed) -> UnsafeRawBufferPointer? {
        api.isBytes(o) ? api.bytesView(o) : nil
    }

    // MARK: Response head

    /// Validates status and headers and hands the head to the sink. False (and a 500)
    /// when they are invalid.
    private func commit() -> Bool {
        guard let status = status?.borrow, let headers = headers?.borrow else {
            api.setError(api.excAssertionError, "the application returned without calling start_response")
            appFailed("start_response was not called")
            return false
        }
        if let problem = buildHead(status: status, headers: headers) {
            api.setError(api.excValueError, problem)
            appFailed("invalid response head: \(problem)")
            return false
        }
        committed = true
        sink!.begin(head)
        return true
    }

    /// nil when valid, else what is wrong.
    private func buildHead(status borrowedStatus: PyBorrowed, headers borrowedHeaders: PyBorrowed) -> String? {
        // References of our own: reading a header sequence runs its Python code, which may
        // call start_response again and so release the ones this caller holds.
        let status = PyOwned(retaining: borrowedStatus), headers = PyOwned(retaining: borrowedHeaders)
        head.reset()
        guard api.isUnicode(status), let s = api.utf8(status) else { api.clearError(); return "status must be a str" }
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
        let n = list ? api.listSize(headers) : api.sequenceSize(headers)
        if n < 0 { api.clearError(); return "headers must be a list of (name, value) tuples" }
        for i in 0..<n {
            // A reference of our own: the list may change while its items are read.
            let pair: PyOwned
            if list {
                pair = PyOwned(retaining: api.listItem(headers, i)!)
            } else {
                guard let p = api.sequenceItem(headers, i) else { api.clearError(); return "bad header list" }
                pair = p
            }
            if let problem = addHeader(pair.borrow) { return problem }
        }
        return nil
    }

    private func addHeader(_ pair: PyBorrowed) -> String? {
        guard api.isExactTuple(pair), api.tupleSize(pair) == 2 else {
            return "each header must be a (name, value) tuple"
        }
        let nameObj = api.tupleItem(pair, 0)!
        let valueObj = api.tupleItem(pair, 1)!
        guard api.isUnicode(nameObj), api.isUnicode(valueObj),
              let name = api.utf8(nameObj), let value = api.utf8(valueObj) else {
            api.clearError()
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
        let label = requestLabel
        let buf = label.buffer
        let method = buf.baseAddress == nil ? "" : String(decoding: buf[label.method], as: UTF8.self)
        let target = buf.baseAddress == nil ? "" : String(decoding: buf[label.target], as: UTF8.self)
        Log.error("\(what) (\(method) \(target))")
        if api.errorOccurred() { api.printError() }
    }

    // MARK: Entry points called by Python

    /// `start_response(status, headers, exc_info=None)`, each also by keyword.
    /// Arguments and the result are borrowed from and returned to Python.
    fileprivate func startResponseCall(_ args: PyBorrowed, _ kwargs: PyBorrowed?) -> PyOwned? {
        let n = api.tupleSize(args)
        var status = n > 0 ? api.tupleItem(args, 0) : nil
        var headers = n > 1 ? api.tupleItem(args, 1) : nil
        var exc = n > 2 ? api.tupleItem(args, 2) : nil
        if let kwargs, api.dictSize(kwargs) > 0 {
            var known = 0
            for keyword in StartResponseKeyword.all {
                guard let value = api.item(kwargs, keyword.name) else { continue }
                let slot = keyword.slot
                known += 1
                if slot < n {
                    api.setError(api.excTypeError, "start_response() got multiple values for an argument")
                    return nil
                }
                switch slot {
                case 0: status = value
                case 1: headers = value
                default: exc = value
                }
            }
            if known != api.dictSize(kwargs) {
                api.setError(api.excTypeError, "start_response() got an unexpected keyword argument")
                return nil
            }
        }
        guard n <= 3, let status, let headers else {
            api.setError(api.excTypeError, "start_response(status, headers, exc_info=None)")
            return nil
        }
        if let exc, hasException(exc) {
            if committed {
                // Too late to change the response: re-raise the app's exception (PEP 3333).
                guard api.isExactTuple(exc), api.tupleSize(exc) == 3 else {
                    api.setError(api.excTypeError, "exc_info must be a 3-tuple")
                    return nil
                }
                api.restoreError(api.tupleItem(exc, 0), api.tupleItem(exc, 1), api.tupleItem(exc, 2))
                return nil
            }
        } else if self.status != nil {
            api.setError(api.excAssertionError, "start_response called a second time without exc_info")
            return nil
        }
        self.status = PyOwned(retaining: status)
        self.headers = PyOwned(retaining: headers)
        return PyOwned(retaining: write)
    }

    /// Whether `exc_info` names an exception: not None, and not `(None, None, None)` (what
    /// `sys.exc_info()` gives outside an `except` block).
    private func hasException(_ exc: PyBorrowed) -> Bool {
        if exc == api.none { return false }
        if api.isExactTuple(exc), api.tupleSize(exc) == 3,
           api.tupleItem(exc, 0) == api.none, api.tupleItem(exc, 1) == api.none {
            return false
        }
        return true
    }

    fileprivate func writeCall(_ data: PyBorrowed) -> PyOwned? {
        guard sink != nil else {
            api.setError(api.excRuntimeError, "write() called outside of a request")
            return nil
        }
        guard let view = bytesView(data) else {
            api.setError(api.excTypeError, "write() takes bytes")
            return nil
        }
        if failed || clientGone {
            api.setError(api.excOSError, "client disconnected")
            return nil
        }
        if !committed {
            guard let status = status?.borrow, let headers = headers?.borrow else {
                api.setError(api.excAssertionError, "write() before start_response")
                return nil
            }
            if let problem = buildHead(status: status, headers: headers) {
                api.setError(api.excValueError, problem)
                return nil
            }
            committed = true
            sink!.begin(head)
        }
        if view.count > 0 {
            let ok = sink!.body(view, flush: true)
            if !ok {
                clientGone = true
                api.setError(api.excOSError, "client disconnected")
                return nil
            }
        }
        return PyOwned(retaining: api.none)
    }
}

/// The names `start_response` takes its arguments by, and their positions.
private struct StartResponseKeyword {
    let name: StaticString
    let slot: Int
    static let all = [StartResponseKeyword(name: "status", slot: 0), StartResponseKeyword(name: "headers", slot: 1),
                      StartResponseKeyword(name: "response_headers", slot: 1), StartResponseKeyword(name: "exc_info", slot: 2)]
}

/// The `WSGICaller` a function's capsule holds. The GIL is held in every entry point.
@inline(__always) private func caller(_ capsule: UnsafeMutableRawPointer?) -> WSGICaller {
    Unmanaged<WSGICaller>.fromOpaque(capsuleCallerPointer(capsule!)).takeUnretainedValue()
}

/// PyCapsule layout: PyObject_HEAD (16 bytes), then `void *pointer`. Reading it directly
/// avoids a function call per request; the layout is the same in 3.9-3.13.
@inline(__always) private func capsuleCallerPointer(_ capsule: UnsafeMutableRawPointer) -> UnsafeMutableRawPointer {
    capsule.load(fromByteOffset: 16, as: UnsafeMutableRawPointer.self)
}

// The C functions Python calls: arguments are borrowed from Python, the result is a new
// reference handed to it (nil with an exception set).
private let startResponseEntry: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? = { capsule, args, kwargs in
    let result = caller(capsule).startResponseCall(PyBorrowed(pointer: args!), kwargs.map(PyBorrowed.init(pointer:)))
    return result?.transfer()
}
private let writeEntry: @convention(c) (UnsafeMutableRawPointer?, UnsafeMutableRawPointer?) -> UnsafeMutableRawPointer? = { capsule, data in
    caller(capsule).writeCall(PyBorrowed(pointer: data!))?.transfer()
}
