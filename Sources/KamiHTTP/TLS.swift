import CKamiLinux
import COpenSSL
import Glibc

/// A TLS failure, with OpenSSL's reason text (never key material).
public struct TLSError: Error, Sendable, Hashable, CustomStringConvertible {
    public var message: String
    public var description: String { message }

    init(_ what: String) {
        var text = what
        var first = true
        while case let code = ERR_get_error(), code != 0 {
            var buffer = [CChar](repeating: 0, count: 256)
            ERR_error_string_n(code, &buffer, buffer.count)
            text += (first ? ": " : "; ") + String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            first = false
        }
        message = text
    }
}

/// An OpenSSL context: a client that verifies the peer's certificate chain (against the
/// system CA store, or one CA file) and host name, or a server with a certificate and key.
/// TLS 1.2 is the lowest version either speaks.
public final class TLSContext: @unchecked Sendable {
    // @unchecked: an SSL_CTX is safe to share once configured (OpenSSL locks internally).
    let context: OpaquePointer
    /// Whether this is a client context (which verifies the server).
    public let isClient: Bool

    private init(context: OpaquePointer, isClient: Bool) {
        self.context = context
        self.isClient = isClient
    }

    /// A client context. `caFile` nil trusts the system's CA store.
    public static func client(caFile: String? = nil) throws(TLSError) -> TLSContext {
        guard let ctx = SSL_CTX_new(TLS_client_method()) else { throw TLSError("SSL_CTX_new") }
        let made = TLSContext(context: ctx, isClient: true)
        kami_ssl_ctx_min_tls12(ctx)
        kami_ssl_ctx_nonblocking_modes(ctx)
        SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nil)
        if let caFile {
            guard SSL_CTX_load_verify_locations(ctx, caFile, nil) == 1 else {
                throw TLSError("cannot load CA file \(caFile)")
            }
        } else if SSL_CTX_set_default_verify_paths(ctx) != 1 {
            throw TLSError("cannot load the system CA store")
        }
        return made
    }

    /// A server context from PEM files: the certificate chain and its private key.
    public static func server(certificateFile: String, keyFile: String) throws(TLSError) -> TLSContext {
        guard let ctx = SSL_CTX_new(TLS_server_method()) else { throw TLSError("SSL_CTX_new") }
        let made = TLSContext(context: ctx, isClient: false)
        kami_ssl_ctx_min_tls12(ctx)
        kami_ssl_ctx_nonblocking_modes(ctx)
        guard SSL_CTX_use_certificate_chain_file(ctx, certificateFile) == 1 else {
            throw TLSError("cannot load certificate \(certificateFile)")
        }
        guard SSL_CTX_use_PrivateKey_file(ctx, keyFile, SSL_FILETYPE_PEM) == 1,
              SSL_CTX_check_private_key(ctx) == 1 else {
            throw TLSError("cannot load private key \(keyFile)")
        }
        return made
    }

    deinit { SSL_CTX_free(context) }
}

/// What one non-blocking read or write did.
enum IOResult {
    /// Bytes moved (> 0).
    case bytes(Int)
    /// Nothing now; wait for the socket to be readable (or writable).
    case wait(writable: Bool)
    /// The peer closed in order.
    case closed
    /// A failure, named.
    case failed(String)
}

/// One connection's byte stream: plain TCP or TLS over it. Owned by one loop thread.
final class Transport {
    let fd: Int32
    private var ssl: OpaquePointer?
    /// Whether the TLS handshake is done (always true for plain TCP).
    private(set) var established: Bool

    /// Plain TCP.
    init(fd: Int32) {
        self.fd = fd
        established = true
    }

    /// TLS over `fd`: as a client verifying `host`, or as a server.
    init(fd: Int32, tls: TLSContext, host: String?) throws(TLSError) {
        self.fd = fd
        guard let ssl = SSL_new(tls.context) else { throw TLSError("SSL_new") }
        self.ssl = ssl
        established = false
        SSL_set_fd(ssl, fd)
        if tls.isClient {
            if let host {
                var v4 = in_addr()
                var v6 = in6_addr()
                if inet_pton(AF_INET, host, &v4) == 1 || inet_pton(AF_INET6, host, &v6) == 1 {
                    // An address is checked against the certificate's IP entries, and sent no SNI.
                    guard X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), host) == 1 else {
                        throw TLSError("cannot verify address \(host)")
                    }
                } else {
                    kami_ssl_set_sni(ssl, host)
                    guard SSL_set1_host(ssl, host) == 1 else { throw TLSError("cannot verify host name \(host)") }
                }
            }
            SSL_set_connect_state(ssl)
        } else {
            SSL_set_accept_state(ssl)
        }
    }

    deinit {
        if let ssl { SSL_free(ssl) }
    }

    /// Advances the handshake: .bytes(0)-like success is `nil`; otherwise what to wait for.
    func handshake() -> IOResult? {
        guard let ssl, !established else { return nil }
        let result = SSL_do_handshake(ssl)
        if result == 1 {
            established = true
            return nil
        }
        return outcome(ssl, result, "TLS handshake")
    }

    func read(into buffer: UnsafeMutableRawBufferPointer) -> IOResult {
        if let ssl {
            let result = SSL_read(ssl, buffer.baseAddress, Int32(buffer.count))
            if result > 0 { return .bytes(Int(result)) }
            return outcome(ssl, result, "TLS read")
        }
        let count = Glibc.read(fd, buffer.baseAddress, buffer.count)
        if count > 0 { return .bytes(count) }
        if count == 0 { return .closed }
        if errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR { return .wait(writable: false) }
        return .failed("read: \(String(cString: strerror(errno)))")
    }

    func write(_ bytes: UnsafeRawBufferPointer) -> IOResult {
        guard !bytes.isEmpty else { return .bytes(0) }
        if let ssl {
            let result = SSL_write(ssl, bytes.baseAddress, Int32(bytes.count))
            if result > 0 { return .bytes(Int(result)) }
            return outcome(ssl, result, "TLS write")
        }
        let count = Glibc.send(fd, bytes.baseAddress, bytes.count, Int32(MSG_NOSIGNAL))
        if count > 0 { return .bytes(count) }
        if count < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) { return .wait(writable: true) }
        return .failed("send: \(String(cString: strerror(errno)))")
    }

    private func outcome(_ ssl: OpaquePointer, _ result: Int32, _ what: String) -> IOResult {
        let code = SSL_get_error(ssl, result)
        switch code {
        case SSL_ERROR_WANT_READ: return .wait(writable: false)
        case SSL_ERROR_WANT_WRITE: return .wait(writable: true)
        case SSL_ERROR_ZERO_RETURN: return .closed
        case SSL_ERROR_SYSCALL:
            ERR_clear_error()
            // A close without close_notify may have cut a response short: not a clean end.
            return .failed(errno == 0 ? "\(what): the peer closed without a TLS close_notify"
                : "\(what): \(String(cString: strerror(errno)))")
        default:
            let verify = SSL_get_verify_result(ssl)
            if verify != X509_V_OK {
                ERR_clear_error()
                return .failed("\(what): certificate verification failed: "
                    + String(cString: X509_verify_cert_error_string(Int(verify))))
            }
            return .failed(TLSError(what).message)
        }
    }
}
