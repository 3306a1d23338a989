// A test-only SQLite VFS that plays an unreliable disk (see faultvfs.c).
#ifndef CKAMI_FAULTVFS_H
#define CKAMI_FAULTVFS_H

#include <stdint.h>

/// The name to pass to sqlite3_open_v2 (Kami's `vfs` options).
#define KAMI_FAULTVFS_NAME "kami-fault"

/// Counters since the last reset.
struct kami_faultvfs_stats {
    uint64_t writes;            // xWrite calls on files in scope that reached the disk
    uint64_t syncs;             // xSync calls on files in scope that succeeded
    uint64_t failed_writes;     // injected write failures
    uint64_t failed_syncs;      // injected fsync failures
    uint64_t unsynced_writes;   // writes not yet covered by a sync, now
    uint64_t dropped_writes;    // writes undone by the last power cut
    uint64_t torn_writes;       // writes half kept by the last power cut
    uint64_t kept_writes;       // unsynced writes that survived the last power cut
    int32_t open_files;         // files in scope open now
};

/// Registers the VFS (wrapping the default one) under KAMI_FAULTVFS_NAME. Idempotent.
/// Returns an SQLite result code.
int kami_faultvfs_register(void);

/// Forgets every record and fault, thaws, and seeds the random source. Only files whose
/// path starts with `scope` are watched (others pass straight through).
void kami_faultvfs_reset(const char *scope, uint64_t seed);

/// Each write (and each fsync) of a watched file fails with the given probability, in
/// parts per million. `full` makes write failures SQLITE_FULL instead of SQLITE_IOERR_WRITE.
void kami_faultvfs_set_faults(uint32_t write_ppm, uint32_t sync_ppm, int full);

/// Fails the next `n` syncs of watched files (deterministic single faults).
void kami_faultvfs_fail_next_syncs(uint32_t n);

/// The power goes off: from now on every write, sync, truncate and delete of a watched file
/// fails with SQLITE_IOERR. Reads still see what the page cache holds.
void kami_faultvfs_freeze(void);

/// The power goes off right after the next `n` writes of watched files reach the page cache
/// (0: now), so a cut can land in the middle of a transaction or a checkpoint.
void kami_faultvfs_freeze_after_writes(uint32_t n);

/// Whether the power is off.
int kami_faultvfs_frozen(void);

/// After a freeze and once every connection is closed: puts each watched file back to what
/// was durable. mode 0 drops every write not covered by a sync; mode 1 decides per write
/// (seeded): kept, dropped, or torn (a random subset of its 512-byte sectors kept).
/// Returns 0, or -1 when a watched file is still open or a file could not be rewritten.
int kami_faultvfs_power_cut(int mode);

/// Copies the counters.
void kami_faultvfs_get_stats(struct kami_faultvfs_stats *out);

#endif
