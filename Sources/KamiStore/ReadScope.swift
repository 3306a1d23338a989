import Glibc
import KamiCore
import Synchronization

/// A read transaction that one thread keeps open across the code reads of one batch of work
/// (an event-loop pass), so that the reads share one snapshot instead of starting one each.
///
/// Why: in WAL mode every read transaction takes the shared-memory locks (a process-wide
/// mutex that the writer also takes, and `fcntl` calls), and after any commit it also drops
/// the connection's page cache, so the next code read re-reads its B-tree pages with
/// `pread`. One transaction per pass pays that once for all the issues of the pass.
///
/// Only the immutable `codes` rows are read through a scope (`Store.codes`): a snapshot a
/// few milliseconds old can lack codes imported since, never show a changed one, and a
/// missing code is looked up again in a fresh snapshot. Reads of state that changes (code
/// states, the audit chain) never use it.
final class ReadScope {
    /// The store whose scope is open on this thread (nil when none is).
    var store: ObjectIdentifier?
    /// The reader checked out for the scope, inside its open read transaction.
    var connection: Connection?

    private static let key: pthread_key_t = {
        var key = pthread_key_t()
        let rc = pthread_key_create(&key) { pointer in
            if let pointer { Unmanaged<ReadScope>.fromOpaque(pointer).release() }
        }
        precondition(rc == 0, "pthread_key_create failed: \(rc)")
        return key
    }()

    /// This thread's scope object, if it ever opened one.
    static var current: ReadScope? {
        guard let pointer = pthread_getspecific(key) else { return nil }
        return Unmanaged<ReadScope>.fromOpaque(pointer).takeUnretainedValue()
    }

    /// This thread's scope object, made on first use (released when the thread ends).
    static func currentOrNew() -> ReadScope {
        if let scope = current { return scope }
        let scope = ReadScope()
        pthread_setspecific(key, Unmanaged.passRetained(scope).toOpaque())
        return scope
    }
}

/// What the writer's WAL checkpoints see: whether the last one was held back by readers.
/// While it is, read scopes stop holding snapshots, so that the next checkpoint can copy the
/// whole WAL and SQLite can start it over (with many loops, each holding a snapshot for part
/// of its pass, there might otherwise never be a moment when none is held).
public final class WALWatch: Sendable {
    /// WAL frames after which the writer checkpoints.
    let threshold: Int32
    /// Readers hold the WAL back (see `Connection.checkpointWAL`).
    let behind = Atomic<Bool>(false)
    /// Checkpoints run by the hook.
    let checkpoints = Atomic<Int>(0)

    init(threshold: Int32) { self.threshold = threshold }

    /// Whether readers hold the WAL back.
    public var isBehind: Bool { behind.load(ordering: .relaxed) }
    /// How many checkpoints the writer ran.
    public var checkpointCount: Int { checkpoints.load(ordering: .relaxed) }
}

extension Store {
    /// Opens a read scope on this thread: until `endReadScope`, code reads share one read
    /// transaction, started at the first of them. Call around one pass of work, never around
    /// a wait: an open snapshot keeps the WAL from being checkpointed past it.
    public func beginReadScope() {
        let scope = ReadScope.currentOrNew()
        precondition(scope.store == nil, "a read scope is already open on this thread")
        scope.store = ObjectIdentifier(self)
    }

    /// Ends this thread's read scope: the read transaction (if a read started one) ends and
    /// its reader returns to the pool.
    public func endReadScope() {
        guard let scope = ReadScope.current, scope.store == ObjectIdentifier(self) else { return }
        scope.store = nil
        releaseScopeConnection(scope)
    }

    /// The open scope of this thread for this store, if any.
    var openReadScope: ReadScope? {
        guard let scope = ReadScope.current, scope.store == ObjectIdentifier(self) else { return nil }
        return scope
    }

    /// Ends the scope's transaction and returns its reader (dropped if it is not idle).
    func releaseScopeConnection(_ scope: ReadScope) {
        guard let connection = scope.connection else { return }
        scope.connection = nil
        do { try connection.run(HotSQL.commit) } catch { return }
        returnReader(connection)
    }

    /// Runs `body` with the scope's reader, inside its read transaction (begun on first use).
    /// An error ends the transaction, so the next read starts afresh.
    func readInScope<T>(
        _ scope: ReadScope, _ body: (Connection) throws(SQLiteError) -> T
    ) throws(KamiError) -> T {
        let connection: Connection
        if let open = scope.connection {
            connection = open
        } else {
            do { connection = try checkoutReader() } catch { throw error.kamiError }
            do { try connection.run(HotSQL.beginRead) } catch {
                returnReader(connection)
                throw error.kamiError
            }
            scope.connection = connection
        }
        do { return try body(connection) } catch {
            releaseScopeConnection(scope)
            throw error.kamiError
        }
    }
}
