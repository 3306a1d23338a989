public import KamiCore
import KamiPool
import Synchronization
public import KamiCrypto
public import KamiStore

/// Which pool implementation to run (both have the same semantics; see the pool benchmark).
public enum PoolKind: String, Sendable {
    case lockFree
    case mutex
}

/// How to build an engine.
public struct EngineConfig: Sendable {
    /// Data directory (created 0700).
    public var directory: String
    /// The sealing keys.
    public var sealer: Sealer
    public var durability: Durability = .full
    public var commit = CommitSettings()
    public var clock: any Clock = SystemClock()
    public var pool: PoolKind = .lockFree
    /// Run a thread that expires holds on time. Tests with a manual clock turn it off and
    /// call `Engine.expireDue()` themselves.
    public var expiryThread = true
    /// The SQLite VFS to open the database through; nil is SQLite's default. Tests name a
    /// fault-injecting one (power cuts, write and fsync errors).
    public var vfs: String?

    /// Makes a config with defaults for everything but the directory and the keys.
    public init(directory: String, sealer: Sealer) {
        self.directory = directory
        self.sealer = sealer
    }
}
