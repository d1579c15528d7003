import ApusProtocols

extension HTTPRequestHead {
    /// Fills the fields the request path uses (framing, method, target, HEAD) from a uwsgi
    /// packet, so a uwsgi request flows through the same body reading, app call and
    /// response writing as an HTTP one. The environ comes from the packet's vars.
    mutating func adoptUWSGI(_ u: UWSGIRequestHead, in buffer: UnsafeRawBufferPointer) {
        reset()
        method = u.method ?? 0..<0
        target = u.requestURI ?? u.pathInfo ?? 0..<0
        path = u.pathInfo ?? 0..<0
        query = u.queryString
        // One request per connection, answered as HTTP/1.0 would be: Content-Length when the
        // app gives one, else the body ends when the connection closes. nginx's uwsgi module
        // reads exactly that.
        versionMinor = 0
        headLength = u.headLength
        framing = u.contentLength > 0 ? .contentLength(u.contentLength) : .none
        keepAlive = false
        expectContinue = false
        isHEAD = method.count == 4 && buffer[method].elementsEqual("HEAD".utf8)
    }
}
