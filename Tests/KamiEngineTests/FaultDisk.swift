import CKamiFaultVFS
import Foundation

/// The test-only fault-injecting SQLite VFS (Sources/CKamiFaultVFS): a disk that loses what
/// was not synced when the power goes off, and fails writes and fsyncs when told to.
/// Global state: one test at a time uses it (XCTest runs a class's tests one after another).
enum FaultDisk {
    static let vfsName = KAMI_FAULTVFS_NAME

    /// Registers the VFS and watches files under `directory` from now on.
    static func reset(watching directory: String, seed: UInt64) {
        let rc = kami_faultvfs_register()
        precondition(rc == 0, "cannot register the fault VFS: \(rc)")
        kami_faultvfs_reset(directory, seed)
    }

    /// Fails writes and fsyncs at these rates (parts per million).
    static func setFaults(writePPM: UInt32, syncPPM: UInt32, full: Bool = false) {
        kami_faultvfs_set_faults(writePPM, syncPPM, full ? 1 : 0)
    }

    /// The power goes off: every later write, sync, truncate or delete fails.
    static func freeze() { kami_faultvfs_freeze() }

    /// The power goes off after the next `writes` writes (0: now).
    static func freeze(afterWrites writes: UInt32) { kami_faultvfs_freeze_after_writes(writes) }

    static var isFrozen: Bool { kami_faultvfs_frozen() != 0 }

    /// How the unsynced writes fare when the files are put back.
    enum CutMode: Int32 {
        /// Every unsynced write is lost.
        case dropAll = 0
        /// Each unsynced write is kept, lost or torn (seeded).
        case tear = 1
    }

    /// Puts every watched file back to what a power cut leaves; all connections must be closed.
    static func powerCut(_ mode: CutMode) -> Bool { kami_faultvfs_power_cut(mode.rawValue) == 0 }

    static var stats: kami_faultvfs_stats {
        var out = kami_faultvfs_stats()
        kami_faultvfs_get_stats(&out)
        return out
    }
}
