public import KamiCore
import Glibc
import Synchronization

/// How far the import or export running now has come (one runs at a time: both hold the
/// admin lock or run on the operator queue).
public struct JobProgress: Sendable, Equatable {
    /// `import` or `export`.
    public var kind: String
    /// The SKU it is for.
    public var sku: String
    /// Rows read (import) or written (export) so far.
    public var rows: Int
    /// Size of the file being imported; nil for exports.
    public var fileBytes: Int64?
    /// When it started, Unix ms.
    public var startedAtMs: Int64

    public init(kind: String, sku: String, rows: Int, fileBytes: Int64?, startedAtMs: Int64) {
        self.kind = kind
        self.sku = sku
        self.rows = rows
        self.fileBytes = fileBytes
        self.startedAtMs = startedAtMs
    }
}

/// The live counters of a running job.
final class JobTracker: Sendable {
    let kind: String
    let sku: String
    let fileBytes: Int64?
    let startedAtMs: Int64
    private let rows = Atomic<Int>(0)
    private let onEnd: @Sendable () -> Void

    init(kind: String, sku: String, fileBytes: Int64?, startedAtMs: Int64, onEnd: @escaping @Sendable () -> Void) {
        self.kind = kind
        self.sku = sku
        self.fileBytes = fileBytes
        self.startedAtMs = startedAtMs
        self.onEnd = onEnd
    }

    /// One more row.
    func count() { rows.wrappingAdd(1, ordering: .relaxed) }

    /// The job is over.
    func end() { onEnd() }

    var progress: JobProgress {
        JobProgress(kind: kind, sku: sku, rows: rows.load(ordering: .relaxed), fileBytes: fileBytes,
                    startedAtMs: startedAtMs)
    }
}

extension EngineCore {
    /// The engine clock's now, Unix ms.
    var nowMs: Int64 { clock.nowMs() }

    /// The import or export running now, if any.
    var currentJob: JobProgress? { job.withLock { $0?.progress } }

    /// Records the start of a job; the tracker counts its rows and ends it.
    func beginJob(kind: String, sku: String, path: String?) -> JobTracker {
        var fileBytes: Int64?
        if let path {
            var info = stat()
            if stat(path, &info) == 0 { fileBytes = Int64(info.st_size) }
        }
        let tracker = JobTracker(kind: kind, sku: sku, fileBytes: fileBytes, startedAtMs: clock.nowMs()) { [self] in
            job.withLock { $0 = nil }
        }
        job.withLock { $0 = tracker }
        return tracker
    }
}
