public import KamiCore

/// What a decoder made of the bytes at the front of a connection's buffer.
///
/// Decoders are pure: they look at the buffer, never keep it, and report how many bytes
/// the caller should drop from its front.
public enum DecodeResult<T> {
    /// The buffer holds only part of a frame or line; read more and call again with the
    /// same bytes plus the new ones. Nothing is consumed.
    case needMore
    /// One decoded item, which took the first `consumed` bytes (0 < consumed ≤ count).
    case item(T, consumed: Int)
    /// The bytes were not a valid frame or line.
    ///
    /// Not `fatal`: exactly the bad frame or line was consumed (0 < consumed ≤ count) and
    /// `id` is the request id when it could be read (`.none` otherwise); the server replies
    /// with `error` and goes on with the next request.
    ///
    /// `fatal`: the stream can no longer be trusted (bad magic or version, a length over
    /// the limit, a JSON line longer than the limit): the server replies with `error` and
    /// closes. `consumed` is then the whole buffer given (0 < consumed ≤ count).
    case failure(id: RequestID, error: KamiError, consumed: Int, fatal: Bool)
}

extension DecodeResult: Sendable where T: Sendable {}
