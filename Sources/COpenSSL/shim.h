#ifndef KAMI_COPENSSL_SHIM_H
#define KAMI_COPENSSL_SHIM_H
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#endif
