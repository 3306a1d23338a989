#ifndef KAMI_CSQLITE_SHIM_H
#define KAMI_CSQLITE_SHIM_H
#include <sqlite3.h>

/* SQLITE_TRANSIENT is a macro casting -1 to a function pointer, which Swift
   cannot import; this tells SQLite to copy bound buffers before returning. */
static inline sqlite3_destructor_type kami_sqlite_transient(void) {
    return SQLITE_TRANSIENT;
}
#endif
