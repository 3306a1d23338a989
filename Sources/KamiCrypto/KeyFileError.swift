/// Why a master key file could not be loaded or created.
///
/// Each message names the file and says what to do. None ever contains key bytes,
/// not even a byte that failed to parse, because the file may hold a real key with
/// one typo in it.
public enum KeyFileError: Error, Equatable, CustomStringConvertible {
    /// No file at `path`.
    case missing(path: String)
    /// `path` exists but is a directory, device, FIFO or socket.
    case notRegularFile(path: String)
    /// The file's permission bits (`mode`, e.g. 0o644) let its group or other users read or write it.
    case permissionsTooOpen(path: String, mode: UInt32)
    /// The file holds `bytes` bytes, which is neither a raw nor a hex key.
    case wrongLength(path: String, bytes: Int)
    /// The file has the length of a hex key but a character at `offset` is not a hex digit.
    case invalidHex(path: String, offset: Int)
    /// `generate(path:)` found a file already at `path` and refused to replace it.
    case alreadyExists(path: String)
    /// A system call on the file failed with `errno`.
    case systemCall(path: String, call: String, errno: Int32)

    /// A stable, machine-readable code for logs and metrics.
    public var code: String {
        switch self {
        case .missing: "key_file_missing"
        case .notRegularFile: "key_file_not_regular"
        case .permissionsTooOpen: "key_file_permissions"
        case .wrongLength: "key_file_length"
        case .invalidHex: "key_file_hex"
        case .alreadyExists: "key_file_exists"
        case .systemCall: "key_file_io"
        }
    }

    private static let expectedFormat =
        "expected \(MasterKey.keyBytes) raw bytes or \(MasterKey.keyBytes * 2) hex characters "
        + "with an optional trailing newline"

    /// What went wrong and what to do about it.
    public var description: String {
        switch self {
        case .missing(let path):
            "master key file \(path) does not exist: check the configured key path. Generate a new key only if "
                + "nothing was sealed with the old one; secrets sealed with a lost key cannot be recovered"
        case .notRegularFile(let path):
            "master key file \(path) is not a regular file: point the key path at the file that holds the key"
        case .permissionsTooOpen(let path, let mode):
            "master key file \(path) has mode 0\(String(mode, radix: 8)), which lets other users access it: "
                + "run `chmod 600 \(path)` (0600 or 0400 are accepted)"
        case .wrongLength(let path, let bytes):
            "master key file \(path) holds \(bytes) bytes: \(Self.expectedFormat)"
        case .invalidHex(let path, let offset):
            "master key file \(path) has a non-hex character at offset \(offset): \(Self.expectedFormat)"
        case .alreadyExists(let path):
            "master key file \(path) already exists: refusing to overwrite a key, because secrets sealed with it "
                + "would become unreadable. Move it away first if you really mean to replace it"
        case .systemCall(let path, let call, let errno):
            "master key file \(path): \(call) failed: \(systemErrorMessage(errno)) (errno \(errno))"
        }
    }
}
