public import KamiCore

/// Errors opening or running the store. Messages name the file or step; never a secret.
public enum StoreError: Error, Sendable, CustomStringConvertible {
    case sqlite(SQLiteError)
    case schemaTooNew(found: Int, supported: Int)
    case migrationFailed(version: Int, SQLiteError)
    case directory(path: String, reason: String)
    case corrupt(String)

    public var description: String {
        switch self {
        case .sqlite(let error): "\(error)"
        case .schemaTooNew(let found, let supported):
            "database schema version \(found) is newer than this kamid supports (\(supported)); upgrade kamid"
        case .migrationFailed(let version, let error): "migration to schema version \(version) failed: \(error)"
        case .directory(let path, let reason): "data directory \(path): \(reason)"
        case .corrupt(let what): "database is inconsistent: \(what)"
        }
    }

    /// The error as Kami reports it.
    public var kamiError: KamiError {
        switch self {
        case .sqlite(let error): error.kamiError
        default: KamiError(.unavailable, description)
        }
    }
}
