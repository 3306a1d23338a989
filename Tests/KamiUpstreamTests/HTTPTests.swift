import Foundation
import Glibc
import KamiHTTP
import Synchronization
import XCTest

/// KamiHTTP over loopback: keep-alive, chunked bodies, timeouts and refused connections
/// (and whether the request may have been seen), limits, malformed input, TLS.
final class HTTPTests: XCTestCase {
    func send(_ client: HTTPClient, _ request: HTTPRequest, _ url: HTTPURL, tls: TLSContext? = nil,
              options: HTTPClientOptions = HTTPClientOptions()) -> Result<HTTPResponse, HTTPClientError> {
        let box = Box<Result<HTTPResponse, HTTPClientError>>()
        client.send(request, to: url, tls: tls, options: options) { box.set($0) }
        return box.wait(20) ?? .failure(HTTPClientError(.timeout, "test waited too long", sent: true))
    }

    func testParserReadsPipelinedChunkedAndRefusesMalformedMessages() throws {
        var parser = HTTPParser(kind: .request)
        parser.feed(Array("POST /a?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\n".utf8))
        let first = try XCTUnwrap(parser.next())
        XCTAssertEqual(first.request.path, "/a")
        XCTAssertEqual(first.request.query, "x=1")
        XCTAssertEqual(first.body, Array("abc".utf8))
        XCTAssertNil(try parser.next())
        parser.feed(Array("Transfer-Encoding: chunked\r\n\r\n3\r\nhel\r\n2;ext=1\r\nlo\r\n0\r\nTrailer: x\r\n\r\n".utf8))
        let second = try XCTUnwrap(parser.next())
        XCTAssertEqual(second.body, Array("hello".utf8))
        for bad in ["GET /x HTTP/2.0\r\n\r\n", "get /x HTTP/1.1\r\n\r\n", "GET /x HTTP/1.1\r\nNo colon\r\n\r\n",
                    "POST /x HTTP/1.1\r\nContent-Length: -1\r\n\r\n", "POST /x HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
                    "POST /x HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n",
                    "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"] {
            var parser = HTTPParser(kind: .request)
            parser.feed(Array(bad.utf8))
            XCTAssertThrowsError(try parser.next(), bad) { error in
                XCTAssertFalse((error as? HTTPParseError)?.message.isEmpty ?? true)
            }
        }
        var small = HTTPParser(kind: .request, limits: HTTPLimits(headerBytesMax: 64, bodyBytesMax: 8))
        small.feed(Array("POST /x HTTP/1.1\r\nContent-Length: 9\r\n\r\n".utf8))
        XCTAssertThrowsError(try small.next()) { XCTAssertEqual(($0 as? HTTPParseError)?.status, 413) }
        var long = HTTPParser(kind: .request, limits: HTTPLimits(headerBytesMax: 64))
        long.feed(Array(("GET /x HTTP/1.1\r\nX: " + String(repeating: "a", count: 100)).utf8))
        XCTAssertThrowsError(try long.next()) { XCTAssertEqual(($0 as? HTTPParseError)?.status, 431) }
    }

    func testKeepAliveTimeoutsAndRefusedConnections() throws {
        let loop = IOLoop(name: "test-http")
        defer { loop.stop() }
        let served = Atomic<Int>(0)
        let server = HTTPServer(host: "127.0.0.1", port: 0, loop: loop) { request, responder in
            served.add(1, ordering: .relaxed)
            switch request.path {
            case "/echo": responder.respond(HTTPResponse(status: 200, headers: HTTPHeaders(), body: request.body))
            case "/never": break  // never answers
            default: responder.respond(HTTPResponse(status: 404, text: "no\n"))
            }
        }
        try server.start()
        defer { server.stop() }
        let client = HTTPClient(loop: loop)
        let url = HTTPURL("http://127.0.0.1:\(server.port)/echo")!
        for index in 0..<20 {
            let body = Array("body-\(index)".utf8)
            let response = try send(client, HTTPRequest(method: "POST", target: "", body: body), url).get()
            XCTAssertEqual(response.status, 200)
            XCTAssertEqual(response.body, body)
        }
        // Twenty sequential requests rode one kept-alive connection.
        let open = Box<Int>()
        loop.execute { open.set(client.openConnections) }
        XCTAssertEqual(open.wait(), 1)

        // Many at once: bounded by maxConnections, all answered.
        var options = HTTPClientOptions()
        options.maxConnections = 4
        let done = Atomic<Int>(0)
        let all = Box<Bool>()
        for index in 0..<200 {
            client.send(HTTPRequest(method: "POST", target: "", body: Array("\(index)".utf8)), to: url, options: options) { result in
                if case .success(let response) = result, response.bodyText == "\(index)" {
                    if done.add(1, ordering: .relaxed).newValue == 200 { all.set(true) }
                }
            }
        }
        XCTAssertEqual(all.wait(), true)

        // A server that never answers: a timeout, after the request was sent (unknown outcome).
        options.timeoutMs = 300
        let never = send(client, HTTPRequest(method: "POST", target: "/never", body: [1]), url, options: options)
        guard case .failure(let error) = never else { return XCTFail("no timeout") }
        XCTAssertEqual(error.kind, .timeout)
        XCTAssertTrue(error.sent, "the request had left: its outcome is unknown")

        // Nobody listening: refused before anything was sent (safe to send elsewhere).
        let closedPort = HTTPURL("http://127.0.0.1:1/")!
        guard case .failure(let refused) = send(client, HTTPRequest(method: "GET", target: "/"), closedPort) else {
            return XCTFail("connected to port 1")
        }
        XCTAssertEqual(refused.kind, .connect)
        XCTAssertFalse(refused.sent)
    }

    /// A plain connection over `maxConnections` is answered 503 with `Retry-After` before it is
    /// closed (the metrics port past its 32 scrapers), not cut off; the ones inside the limit
    /// are still served.
    func testAConnectionOverTheLimitIsAnswered503() throws {
        let loop = IOLoop(name: "test-http-busy")
        defer { loop.stop() }
        var options = HTTPServerOptions()
        options.maxConnections = 2
        let server = HTTPServer(host: "127.0.0.1", port: 0, options: options, loop: loop) { _, responder in
            responder.respond(HTTPResponse(status: 200, text: "ok"))
        }
        try server.start()
        defer { server.stop() }
        let request = "GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
        // Two kept-alive connections, each answered once (so both are accepted and held).
        var held: [Int32] = []
        defer { for fd in held { close(fd) } }
        for _ in 0..<2 {
            let fd = try connectRaw(port: server.port)
            held.append(fd)
            _ = request.withCString { Glibc.send(fd, $0, strlen($0), 0) }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &buffer, buffer.count, 0)
            XCTAssertTrue(String(decoding: buffer[0..<max(0, count)], as: UTF8.self).hasPrefix("HTTP/1.1 200"))
        }
        let extra = try connectRaw(port: server.port)
        defer { close(extra) }
        _ = request.withCString { Glibc.send(extra, $0, strlen($0), 0) }
        let text = readToEnd(extra)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 503"), text)
        var buffer = [UInt8](repeating: 0, count: 4096)
        XCTAssertTrue(text.contains("Retry-After: 1"), text)
        XCTAssertTrue(text.contains("Connection: close"), text)
        // The held ones still work.
        _ = request.withCString { Glibc.send(held[0], $0, strlen($0), 0) }
        let count = recv(held[0], &buffer, buffer.count, 0)
        XCTAssertTrue(String(decoding: buffer[0..<max(0, count)], as: UTF8.self).hasPrefix("HTTP/1.1 200"))
    }

    /// Everything the server sends until it closes.
    private func readToEnd(_ fd: Int32) -> String {
        var buffer = [UInt8](repeating: 0, count: 4096)
        var received: [UInt8] = []
        while true {
            let count = recv(fd, &buffer, buffer.count, 0)
            if count <= 0 { break }
            received += buffer[0..<count]
        }
        return String(decoding: received, as: UTF8.self)
    }

    private func connectRaw(port: UInt16) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        XCTAssertEqual(connected, 0)
        var timeout = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        return fd
    }

    func testServerAnswersMalformedRequestsWithAStatusAndCloses() throws {
        let loop = IOLoop(name: "test-http-bad")
        defer { loop.stop() }
        let server = HTTPServer(host: "127.0.0.1", port: 0, loop: loop) { _, responder in
            responder.respond(HTTPResponse(status: 200, text: "ok"))
        }
        try server.start()
        defer { server.stop() }
        let fd = try connectRaw(port: server.port)
        defer { close(fd) }
        let junk = "BREW /pot HTCPCP/1.0\r\n\r\n"
        _ = junk.withCString { Glibc.send(fd, $0, strlen($0), 0) }
        let text = readToEnd(fd)
        XCTAssertTrue(text.hasPrefix("HTTP/1.1 505") || text.hasPrefix("HTTP/1.1 400"), text)
        XCTAssertTrue(text.contains("Connection: close"), text)
    }

    /// Makes a CA and a server certificate for 127.0.0.1 with the openssl tool.
    func makeCertificates(in directory: String) throws -> (ca: String, cert: String, key: String, otherCA: String) {
        let script = """
            set -e
            cd '\(directory)'
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=kami-test-ca 2>/dev/null
            openssl req -x509 -newkey rsa:2048 -nodes -keyout other.key -out other.pem -days 2 -subj /CN=other-ca 2>/dev/null
            openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=127.0.0.1 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\n' > ext.cnf
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile ext.cnf 2>/dev/null
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/sh")
        process.arguments = ["-c", script]
        try process.run()
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
        return ("\(directory)/ca.pem", "\(directory)/server.pem", "\(directory)/server.key", "\(directory)/other.pem")
    }

    func testTLSWithASelfSignedCAAndABadCertificateRefused() throws {
        let directory = makeTempDirectory("kami-tls")
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let files = try makeCertificates(in: directory)
        let loop = IOLoop(name: "test-tls")
        defer { loop.stop() }
        let server = HTTPServer(host: "127.0.0.1", port: 0, tls: try TLSContext.server(certificateFile: files.cert, keyFile: files.key),
                                loop: loop) { request, responder in
            responder.respond(HTTPResponse(status: 200, text: "secure \(request.path)"))
        }
        try server.start()
        defer { server.stop() }
        let client = HTTPClient(loop: loop)
        let url = HTTPURL("https://127.0.0.1:\(server.port)/hello")!
        let good = try send(client, HTTPRequest(method: "GET", target: ""), url, tls: try TLSContext.client(caFile: files.ca)).get()
        XCTAssertEqual(good.bodyText, "secure /hello")
        // Signed by a CA we do not trust: refused, and the reason says so.
        guard case .failure(let untrusted) = send(client, HTTPRequest(method: "GET", target: ""), url,
                                                  tls: try TLSContext.client(caFile: files.otherCA)) else {
            return XCTFail("a certificate from an untrusted CA was accepted")
        }
        XCTAssertEqual(untrusted.kind, .tls)
        XCTAssertTrue(untrusted.message.contains("certificate"), untrusted.message)
        XCTAssertFalse(untrusted.sent)
        // The right CA but the wrong name: refused.
        let wrongName = HTTPURL("https://localhost.invalid.example:\(server.port)/")!
        _ = wrongName
        let byName = HTTPURL("https://localhost:\(server.port)/x")!
        XCTAssertEqual(try send(client, HTTPRequest(method: "GET", target: ""), byName, tls: try TLSContext.client(caFile: files.ca)).get().status, 200)
        // And the system store does not know our CA.
        guard case .failure(let system) = send(client, HTTPRequest(method: "GET", target: ""), url, tls: try TLSContext.client()) else {
            return XCTFail("the system store trusted a test CA")
        }
        XCTAssertEqual(system.kind, .tls)
    }

    func testInterimResponsesAreSkippedAndNeverAnswerTheNextRequest() throws {
        // A raw server that sends "100 Continue" and the real answer in separate writes.
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(listener, 4)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            getsockname(listener, $0, &length) } }
        let port = UInt16(bigEndian: address.sin_port)
        let server = Thread {
            let fd = accept(listener, nil, nil)
            var buffer = [UInt8](repeating: 0, count: 4096)
            for index in 0..<2 {
                _ = recv(fd, &buffer, buffer.count, 0)
                _ = "HTTP/1.1 100 Continue\r\n\r\n".withCString { Glibc.send(fd, $0, strlen($0), 0) }
                usleep(50_000)
                let body = "answer-\(index)"
                _ = "HTTP/1.1 200 OK\r\nContent-Length: \(body.utf8.count)\r\n\r\n\(body)".withCString { Glibc.send(fd, $0, strlen($0), 0) }
            }
            usleep(200_000)
            close(fd)
            close(listener)
        }
        server.start()
        let loop = IOLoop(name: "test-interim")
        defer { loop.stop() }
        let client = HTTPClient(loop: loop)
        let url = HTTPURL("http://127.0.0.1:\(port)/")!
        var options = HTTPClientOptions()
        options.maxConnections = 1
        let first = Box<Result<HTTPResponse, HTTPClientError>>()
        let second = Box<Result<HTTPResponse, HTTPClientError>>()
        client.send(HTTPRequest(method: "POST", target: "/", body: [1]), to: url, options: options) { first.set($0) }
        client.send(HTTPRequest(method: "POST", target: "/", body: [2]), to: url, options: options) { second.set($0) }
        XCTAssertEqual(try XCTUnwrap(first.wait()).get().bodyText, "answer-0")
        XCTAssertEqual(try XCTUnwrap(second.wait()).get().bodyText, "answer-1")
    }

    func testURLParsing() {
        let url = HTTPURL("https://[::1]:8443/a/b?c=d")!
        XCTAssertTrue(url.secure)
        XCTAssertEqual(url.host, "::1")
        XCTAssertEqual(url.port, 8443)
        XCTAssertEqual(url.target, "/a/b?c=d")
        XCTAssertEqual(HTTPURL("http://h")?.target, "/")
        XCTAssertEqual(HTTPURL("http://h")?.port, 80)
        for bad in ["ftp://h/", "http://", "http://u@h/", "http://h:0/", "http://h:99999/", "h/x"] {
            XCTAssertNil(HTTPURL(bad), bad)
        }
    }
}

/// LineClient against a raw line server: the handshake first, then one request at a time.
final class LineClientTests: XCTestCase {
    func testHandshakeThenRequestsInOrder() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        _ = withUnsafePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            bind(listener, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) } }
        listen(listener, 4)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            getsockname(listener, $0, &length) } }
        let port = UInt16(bigEndian: address.sin_port)
        let server = Thread {
            let fd = accept(listener, nil, nil)
            var pending: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 4096)
            var lines = 0
            while lines < 4 {
                let count = recv(fd, &buffer, buffer.count, 0)
                if count <= 0 { break }
                pending += buffer[0..<count]
                while let newline = pending.firstIndex(of: 10) {
                    let line = String(decoding: pending[..<newline], as: UTF8.self)
                    pending.removeSubrange(...newline)
                    let answer = lines == 0 ? (line == "HELLO" ? "WELCOME\n" : "NO\n") : "echo \(line)\n"
                    _ = answer.withCString { Glibc.send(fd, $0, strlen($0), 0) }
                    lines += 1
                }
            }
            close(fd)
            close(listener)
        }
        server.start()
        let loop = IOLoop(name: "test-lines")
        defer { loop.stop() }
        var options = HTTPClientOptions()
        options.maxConnections = 1
        options.timeoutMs = 2_000
        let client = LineClient(loop: loop, host: "127.0.0.1", port: port, handshake: Array("HELLO\n".utf8), options: options) {
            String(decoding: $0, as: UTF8.self) == "WELCOME" ? nil : "refused"
        }
        let boxes = (0..<3).map { _ in Box<Result<[UInt8], HTTPClientError>>() }
        for (index, box) in boxes.enumerated() {
            client.send(Array("line \(index)\n".utf8)) { box.set($0) }
        }
        for (index, box) in boxes.enumerated() {
            XCTAssertEqual(try String(decoding: XCTUnwrap(box.wait()).get(), as: UTF8.self), "echo line \(index)")
        }
    }
}
