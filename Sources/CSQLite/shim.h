#ifndef KAMI_CSQLITE_SHIM_H
#define KAMI_CSQLITE_SHIM_H
#include <sqlite3.h>

/* SQLITE_TRANSIENT is a macro casting -1 to a function pointer, which Swift
   cannot import; this tells SQLite to copy bound buffers before returning. */
static inline sqlite3_destructor_type kami_sqlite_transient(void) {
    return SQLITE_TRANSIENT;
}

/* sqlite3_config is variadic, which Swift cannot call. Memory statistics make every
   sqlite3_malloc take one process-wide mutex, which the writer and the readers then fight
   over; kamid never reads those statistics. Must run before SQLite initializes (the first
   open); returns SQLITE_MISUSE if it is too late, which only costs the speed-up. */
static inline int kami_sqlite_disable_memstatus(void) {
    return sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
}
#endif
