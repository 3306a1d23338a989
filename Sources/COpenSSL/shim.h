#ifndef KAMI_COPENSSL_SHIM_H
#define KAMI_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

/* The following are macros over SSL_ctrl / SSL_CTX_ctrl in OpenSSL's headers, which
   Swift cannot import; these inline functions make them callable. */

/* Server Name Indication for a client session. */
static inline int kami_ssl_set_sni(SSL *ssl, const char *name) {
    return (int)SSL_set_tlsext_host_name(ssl, name);
}

/* TLS 1.2 as the lowest version a context speaks. */
static inline int kami_ssl_ctx_min_tls12(SSL_CTX *ctx) {
    return (int)SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
}

/* Partial writes and a write buffer that may move between retries (our buffers are
   Swift arrays). */
static inline void kami_ssl_ctx_nonblocking_modes(SSL_CTX *ctx) {
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
}
#endif
