// A test-only SQLite VFS that plays an unreliable disk.
//
// It wraps the default VFS and, for files under a chosen directory (the "scope"), keeps a
// record of every write and truncate not yet covered by a sync. That record is what a power
// cut can lose: `kami_faultvfs_power_cut` puts each file back to its last synced content and
// then, depending on the mode, re-applies none, all or some of the unsynced writes (a torn
// write keeps a random subset of its 512-byte sectors). Between cuts it can fail writes and
// fsyncs at a seeded rate, and after `kami_faultvfs_freeze` every write fails, as it would on
// a machine whose power just went off.
//
// Syncs are bookkeeping only: nothing is fsync'd for real, which makes a simulated disk fast.
// The model is the usual one for power-loss testing: a sync makes everything written to that
// file before it durable; sector writes are not atomic; creating or deleting a file is
// durable at once (directory syncs are not modelled).

#include "CKamiFaultVFS.h"

#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

enum { ENTRY_WRITE = 0, ENTRY_TRUNCATE = 1 };

// One write or truncate not yet covered by a sync.
struct entry {
    int kind;
    sqlite3_int64 offset;      // write: where; truncate: the new size
    int len;                   // write: bytes written
    sqlite3_int64 size_before; // the file's size before this change
    unsigned char *old_bytes;  // what the change overwrote or cut (old_len bytes)
    sqlite3_int64 old_len;
    unsigned char *new_bytes;  // write: the bytes written
};

// The unsynced history of one watched path.
struct record {
    char *path;
    struct entry *entries;
    size_t count, capacity;
    int open_files;
    struct record *next;
};

struct fault_file {
    sqlite3_file base;
    struct record *record; // NULL when the file is not watched
    sqlite3_file *real;    // the wrapped file, allocated right after this struct
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static sqlite3_vfs *real_vfs;
static sqlite3_vfs fault_vfs;
static struct record *records;
static char *scope;
static size_t scope_len;
static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t write_ppm, sync_ppm;
static int fail_full;
static uint32_t fail_syncs_next;
static int frozen;
static uint32_t freeze_countdown;
static struct kami_faultvfs_stats stats;

// xorshift64*: small, seeded, the same sequence on every machine.
static uint64_t next_random(void) {
    uint64_t x = rng_state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    rng_state = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static int chance_ppm(uint32_t ppm) { return ppm > 0 && (uint32_t)(next_random() % 1000000u) < ppm; }

static void free_entry(struct entry *e) {
    free(e->old_bytes);
    free(e->new_bytes);
    memset(e, 0, sizeof *e);
}

static void clear_record(struct record *r) {
    for (size_t i = 0; i < r->count; i++) free_entry(&r->entries[i]);
    if (stats.unsynced_writes >= r->count) stats.unsynced_writes -= r->count; else stats.unsynced_writes = 0;
    r->count = 0;
}

// The record of `path` (created on first use). Call with the lock held.
static struct record *record_for(const char *path) {
    for (struct record *r = records; r; r = r->next)
        if (strcmp(r->path, path) == 0) return r;
    struct record *r = calloc(1, sizeof *r);
    if (!r) return NULL;
    r->path = strdup(path);
    if (!r->path) { free(r); return NULL; }
    r->next = records;
    records = r;
    return r;
}

static int watched(const char *path) {
    return path && scope && strncmp(path, scope, scope_len) == 0;
}

// Appends an entry; takes ownership of its buffers. Call with the lock held.
static int push_entry(struct record *r, struct entry e) {
    if (r->count == r->capacity) {
        size_t capacity = r->capacity ? r->capacity * 2 : 64;
        struct entry *grown = realloc(r->entries, capacity * sizeof *grown);
        if (!grown) return SQLITE_NOMEM;
        r->entries = grown;
        r->capacity = capacity;
    }
    r->entries[r->count++] = e;
    stats.unsynced_writes++;
    return SQLITE_OK;
}

// Reads `len` bytes at `offset` of the wrapped file into a new buffer.
static int read_old(sqlite3_file *real, sqlite3_int64 offset, sqlite3_int64 len, unsigned char **out) {
    *out = NULL;
    if (len <= 0) return SQLITE_OK;
    unsigned char *buffer = malloc((size_t)len);
    if (!buffer) return SQLITE_NOMEM;
    int rc = real->pMethods->xRead(real, buffer, (int)len, offset);
    if (rc != SQLITE_OK && rc != SQLITE_IOERR_SHORT_READ) { free(buffer); return rc; }
    *out = buffer;
    return SQLITE_OK;
}

// ---- file methods ----

static int f_close(sqlite3_file *file) {
    struct fault_file *f = (struct fault_file *)file;
    int rc = f->real->pMethods ? f->real->pMethods->xClose(f->real) : SQLITE_OK;
    if (f->record) {
        pthread_mutex_lock(&lock);
        f->record->open_files--;
        stats.open_files--;
        pthread_mutex_unlock(&lock);
    }
    return rc;
}

static int f_read(sqlite3_file *file, void *buffer, int amount, sqlite3_int64 offset) {
    struct fault_file *f = (struct fault_file *)file;
    return f->real->pMethods->xRead(f->real, buffer, amount, offset);
}

static int f_write(sqlite3_file *file, const void *buffer, int amount, sqlite3_int64 offset) {
    struct fault_file *f = (struct fault_file *)file;
    if (!f->record) return f->real->pMethods->xWrite(f->real, buffer, amount, offset);
    pthread_mutex_lock(&lock);
    if (frozen) { pthread_mutex_unlock(&lock); return SQLITE_IOERR_WRITE; }
    if (chance_ppm(write_ppm)) {
        stats.failed_writes++;
        pthread_mutex_unlock(&lock);
        return fail_full ? SQLITE_FULL : SQLITE_IOERR_WRITE;
    }
    struct entry e = {0};
    e.kind = ENTRY_WRITE;
    e.offset = offset;
    e.len = amount;
    int rc = f->real->pMethods->xFileSize(f->real, &e.size_before);
    if (rc == SQLITE_OK) {
        sqlite3_int64 old_len = e.size_before - offset;
        if (old_len > amount) old_len = amount;
        e.old_len = old_len > 0 ? old_len : 0;
        rc = read_old(f->real, offset, e.old_len, &e.old_bytes);
    }
    if (rc == SQLITE_OK) {
        e.new_bytes = malloc((size_t)amount);
        if (!e.new_bytes) rc = SQLITE_NOMEM; else memcpy(e.new_bytes, buffer, (size_t)amount);
    }
    if (rc == SQLITE_OK) rc = f->real->pMethods->xWrite(f->real, buffer, amount, offset);
    if (rc == SQLITE_OK) rc = push_entry(f->record, e);
    if (rc != SQLITE_OK) free_entry(&e); else stats.writes++;
    if (freeze_countdown > 0 && --freeze_countdown == 0) frozen = 1;
    pthread_mutex_unlock(&lock);
    return rc;
}

static int f_truncate(sqlite3_file *file, sqlite3_int64 size) {
    struct fault_file *f = (struct fault_file *)file;
    if (!f->record) return f->real->pMethods->xTruncate(f->real, size);
    pthread_mutex_lock(&lock);
    if (frozen) { pthread_mutex_unlock(&lock); return SQLITE_IOERR_TRUNCATE; }
    struct entry e = {0};
    e.kind = ENTRY_TRUNCATE;
    e.offset = size;
    int rc = f->real->pMethods->xFileSize(f->real, &e.size_before);
    if (rc == SQLITE_OK && e.size_before > size) {
        e.old_len = e.size_before - size;
        rc = read_old(f->real, size, e.old_len, &e.old_bytes);
    }
    if (rc == SQLITE_OK) rc = f->real->pMethods->xTruncate(f->real, size);
    if (rc == SQLITE_OK) rc = push_entry(f->record, e);
    if (rc != SQLITE_OK) free_entry(&e);
    pthread_mutex_unlock(&lock);
    return rc;
}

static int f_sync(sqlite3_file *file, int flags) {
    struct fault_file *f = (struct fault_file *)file;
    (void)flags;
    if (!f->record) return f->real->pMethods->xSync(f->real, flags);
    pthread_mutex_lock(&lock);
    int rc = SQLITE_OK;
    if (frozen) {
        rc = SQLITE_IOERR_FSYNC;
    } else if (fail_syncs_next > 0 || chance_ppm(sync_ppm)) {
        if (fail_syncs_next > 0) fail_syncs_next--;
        stats.failed_syncs++;
        rc = SQLITE_IOERR_FSYNC;
    } else {
        // Everything written to this file so far is durable now.
        clear_record(f->record);
        stats.syncs++;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

static int f_file_size(sqlite3_file *file, sqlite3_int64 *size) {
    struct fault_file *f = (struct fault_file *)file;
    return f->real->pMethods->xFileSize(f->real, size);
}
static int f_lock(sqlite3_file *file, int level) {
    struct fault_file *f = (struct fault_file *)file;
    return f->real->pMethods->xLock(f->real, level);
}
static int f_unlock(sqlite3_file *file, int level) {
    struct fault_file *f = (struct fault_file *)file;
    return f->real->pMethods->xUnlock(f->real, level);
}
static int f_check_reserved(sqlite3_file *file, int *out) {
    struct fault_file *f = (struct fault_file *)file;
    return f->real->pMethods->xCheckReservedLock(f->real, out);
}
static int f_file_control(sqlite3_file *file, int op, void *arg) {
    struct fault_file *f = (struct fault_file *)file;
    return f->real->pMethods->xFileControl(f->real, op, arg);
}
static int f_sector_size(sqlite3_file *file) {
    struct fault_file *f = (struct fault_file *)file;
    return f->real->pMethods->xSectorSize(f->real);
}
static int f_device_characteristics(sqlite3_file *file) {
    struct fault_file *f = (struct fault_file *)file;
    // The real file's answer (powersafe overwrite on Linux), so that SQLite behaves as it does
    // in production; a torn write here only ever damages bytes inside the range written.
    return f->real->pMethods->xDeviceCharacteristics(f->real);
}
static int f_shm_map(sqlite3_file *file, int page, int size, int extend, void volatile **out) {
    struct fault_file *f = (struct fault_file *)file;
    return f->real->pMethods->xShmMap(f->real, page, size, extend, out);
}
static int f_shm_lock(sqlite3_file *file, int offset, int n, int flags) {
    struct fault_file *f = (struct fault_file *)file;
    return f->real->pMethods->xShmLock(f->real, offset, n, flags);
}
static void f_shm_barrier(sqlite3_file *file) {
    struct fault_file *f = (struct fault_file *)file;
    f->real->pMethods->xShmBarrier(f->real);
}
static int f_shm_unmap(sqlite3_file *file, int delete_flag) {
    struct fault_file *f = (struct fault_file *)file;
    return f->real->pMethods->xShmUnmap(f->real, delete_flag);
}
static int f_fetch(sqlite3_file *file, sqlite3_int64 offset, int amount, void **out) {
    // No memory-mapped reads: every read goes through f_read.
    (void)file; (void)offset; (void)amount;
    *out = NULL;
    return SQLITE_OK;
}
static int f_unfetch(sqlite3_file *file, sqlite3_int64 offset, void *pointer) {
    (void)file; (void)offset; (void)pointer;
    return SQLITE_OK;
}

static const sqlite3_io_methods fault_methods = {
    3, f_close, f_read, f_write, f_truncate, f_sync, f_file_size, f_lock, f_unlock,
    f_check_reserved, f_file_control, f_sector_size, f_device_characteristics,
    f_shm_map, f_shm_lock, f_shm_barrier, f_shm_unmap, f_fetch, f_unfetch,
};

// ---- VFS methods ----

static int v_open(sqlite3_vfs *vfs, const char *name, sqlite3_file *file, int flags, int *out_flags) {
    (void)vfs;
    struct fault_file *f = (struct fault_file *)file;
    memset(f, 0, sizeof *f);
    f->real = (sqlite3_file *)(f + 1);
    int rc = real_vfs->xOpen(real_vfs, name, f->real, flags, out_flags);
    if (rc != SQLITE_OK) {
        if (f->real->pMethods) f->real->pMethods->xClose(f->real);
        f->base.pMethods = NULL;
        return rc;
    }
    pthread_mutex_lock(&lock);
    if (watched(name)) {
        f->record = record_for(name);
        if (f->record) { f->record->open_files++; stats.open_files++; }
    }
    pthread_mutex_unlock(&lock);
    f->base.pMethods = &fault_methods;
    return SQLITE_OK;
}

static int v_delete(sqlite3_vfs *vfs, const char *name, int sync_dir) {
    (void)vfs;
    pthread_mutex_lock(&lock);
    if (watched(name)) {
        if (frozen) { pthread_mutex_unlock(&lock); return SQLITE_IOERR_DELETE; }
        for (struct record *r = records; r; r = r->next)
            if (strcmp(r->path, name) == 0) clear_record(r);
    }
    pthread_mutex_unlock(&lock);
    return real_vfs->xDelete(real_vfs, name, sync_dir);
}

static int v_access(sqlite3_vfs *vfs, const char *name, int flags, int *out) {
    (void)vfs;
    return real_vfs->xAccess(real_vfs, name, flags, out);
}
static int v_full_pathname(sqlite3_vfs *vfs, const char *name, int n, char *out) {
    (void)vfs;
    return real_vfs->xFullPathname(real_vfs, name, n, out);
}
static void *v_dl_open(sqlite3_vfs *vfs, const char *name) { (void)vfs; return real_vfs->xDlOpen(real_vfs, name); }
static void v_dl_error(sqlite3_vfs *vfs, int n, char *out) { (void)vfs; real_vfs->xDlError(real_vfs, n, out); }
static void (*v_dl_sym(sqlite3_vfs *vfs, void *handle, const char *symbol))(void) {
    (void)vfs;
    return real_vfs->xDlSym(real_vfs, handle, symbol);
}
static void v_dl_close(sqlite3_vfs *vfs, void *handle) { (void)vfs; real_vfs->xDlClose(real_vfs, handle); }
static int v_randomness(sqlite3_vfs *vfs, int n, char *out) { (void)vfs; return real_vfs->xRandomness(real_vfs, n, out); }
static int v_sleep(sqlite3_vfs *vfs, int us) { (void)vfs; return real_vfs->xSleep(real_vfs, us); }
static int v_current_time(sqlite3_vfs *vfs, double *out) { (void)vfs; return real_vfs->xCurrentTime(real_vfs, out); }
static int v_get_last_error(sqlite3_vfs *vfs, int n, char *out) {
    (void)vfs;
    return real_vfs->xGetLastError ? real_vfs->xGetLastError(real_vfs, n, out) : 0;
}
static int v_current_time_int64(sqlite3_vfs *vfs, sqlite3_int64 *out) {
    (void)vfs;
    return real_vfs->xCurrentTimeInt64(real_vfs, out);
}

int kami_faultvfs_register(void) {
    pthread_mutex_lock(&lock);
    if (real_vfs) { pthread_mutex_unlock(&lock); return SQLITE_OK; }
    /* sqlite3_vfs_find initializes SQLite, after which it takes no more configuration:
       apply kamid's (no memory statistics, see CSQLite/shim.h) first, so that tests with
       this VFS run SQLite as kamid does. SQLITE_MISUSE just means it was already applied. */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    sqlite3_vfs *base = sqlite3_vfs_find(NULL);
    if (!base) { pthread_mutex_unlock(&lock); return SQLITE_ERROR; }
    real_vfs = base;
    memset(&fault_vfs, 0, sizeof fault_vfs);
    fault_vfs.iVersion = 2;
    fault_vfs.szOsFile = (int)sizeof(struct fault_file) + base->szOsFile;
    fault_vfs.mxPathname = base->mxPathname;
    fault_vfs.zName = KAMI_FAULTVFS_NAME;
    fault_vfs.xOpen = v_open;
    fault_vfs.xDelete = v_delete;
    fault_vfs.xAccess = v_access;
    fault_vfs.xFullPathname = v_full_pathname;
    fault_vfs.xDlOpen = v_dl_open;
    fault_vfs.xDlError = v_dl_error;
    fault_vfs.xDlSym = v_dl_sym;
    fault_vfs.xDlClose = v_dl_close;
    fault_vfs.xRandomness = v_randomness;
    fault_vfs.xSleep = v_sleep;
    fault_vfs.xCurrentTime = v_current_time;
    fault_vfs.xGetLastError = v_get_last_error;
    fault_vfs.xCurrentTimeInt64 = v_current_time_int64;
    int rc = sqlite3_vfs_register(&fault_vfs, 0);
    if (rc != SQLITE_OK) real_vfs = NULL;
    pthread_mutex_unlock(&lock);
    return rc;
}

void kami_faultvfs_reset(const char *new_scope, uint64_t seed) {
    pthread_mutex_lock(&lock);
    for (struct record *r = records; r; r = r->next) clear_record(r);
    free(scope);
    scope = new_scope ? strdup(new_scope) : NULL;
    scope_len = scope ? strlen(scope) : 0;
    rng_state = seed ? seed : 0x9E3779B97F4A7C15ull;
    write_ppm = sync_ppm = 0;
    fail_full = 0;
    fail_syncs_next = 0;
    frozen = 0;
    freeze_countdown = 0;
    int32_t open_files = stats.open_files;
    memset(&stats, 0, sizeof stats);
    stats.open_files = open_files;
    pthread_mutex_unlock(&lock);
}

void kami_faultvfs_set_faults(uint32_t w, uint32_t s, int full) {
    pthread_mutex_lock(&lock);
    write_ppm = w;
    sync_ppm = s;
    fail_full = full;
    pthread_mutex_unlock(&lock);
}

void kami_faultvfs_fail_next_syncs(uint32_t n) {
    pthread_mutex_lock(&lock);
    fail_syncs_next = n;
    pthread_mutex_unlock(&lock);
}

void kami_faultvfs_freeze(void) {
    pthread_mutex_lock(&lock);
    frozen = 1;
    pthread_mutex_unlock(&lock);
}

void kami_faultvfs_freeze_after_writes(uint32_t n) {
    pthread_mutex_lock(&lock);
    if (n == 0) frozen = 1; else freeze_countdown = n;
    pthread_mutex_unlock(&lock);
}

int kami_faultvfs_frozen(void) {
    pthread_mutex_lock(&lock);
    int result = frozen;
    pthread_mutex_unlock(&lock);
    return result;
}

static int write_all(int fd, const unsigned char *bytes, sqlite3_int64 len, sqlite3_int64 offset) {
    while (len > 0) {
        ssize_t n = pwrite(fd, bytes, (size_t)len, (off_t)offset);
        if (n <= 0) return -1;
        bytes += n;
        len -= n;
        offset += n;
    }
    return 0;
}

// Undoes every unsynced change of `r` (newest first), then re-applies the ones the cut keeps.
static int cut_record(struct record *r, int mode) {
    if (r->count == 0) return 0;
    int fd = open(r->path, O_RDWR);
    if (fd < 0) return -1;
    int failed = 0;
    for (size_t i = r->count; i-- > 0;) {
        struct entry *e = &r->entries[i];
        if (e->old_len > 0 && write_all(fd, e->old_bytes, e->old_len, e->offset) != 0) failed = 1;
        if (ftruncate(fd, (off_t)e->size_before) != 0) failed = 1;
    }
    for (size_t i = 0; i < r->count; i++) {
        struct entry *e = &r->entries[i];
        int fate = mode == 0 ? 1 : (int)(next_random() % 3); // 0 kept, 1 dropped, 2 torn
        if (e->kind == ENTRY_TRUNCATE && fate == 2) fate = 0;
        if (fate == 1) { stats.dropped_writes++; continue; }
        if (e->kind == ENTRY_TRUNCATE) {
            if (ftruncate(fd, (off_t)e->offset) != 0) failed = 1;
            stats.kept_writes++;
            continue;
        }
        if (fate == 0) {
            if (write_all(fd, e->new_bytes, e->len, e->offset) != 0) failed = 1;
            stats.kept_writes++;
            continue;
        }
        // Torn: each 512-byte sector of the write (aligned on the file) lands or not.
        stats.torn_writes++;
        sqlite3_int64 start = e->offset, end = e->offset + e->len;
        while (start < end) {
            sqlite3_int64 sector_end = (start / 512 + 1) * 512;
            if (sector_end > end) sector_end = end;
            if (next_random() & 1) {
                if (write_all(fd, e->new_bytes + (start - e->offset), sector_end - start, start) != 0) failed = 1;
            }
            start = sector_end;
        }
    }
    close(fd);
    return failed ? -1 : 0;
}

int kami_faultvfs_power_cut(int mode) {
    pthread_mutex_lock(&lock);
    int rc = 0;
    stats.dropped_writes = stats.torn_writes = stats.kept_writes = 0;
    for (struct record *r = records; r; r = r->next) {
        if (r->open_files > 0) { rc = -1; break; }
    }
    if (rc == 0) {
        for (struct record *r = records; r; r = r->next) {
            if (cut_record(r, mode) != 0) rc = -1;
            clear_record(r);
        }
        frozen = 0;
        freeze_countdown = 0;
    }
    pthread_mutex_unlock(&lock);
    return rc;
}

void kami_faultvfs_get_stats(struct kami_faultvfs_stats *out) {
    pthread_mutex_lock(&lock);
    *out = stats;
    pthread_mutex_unlock(&lock);
}
