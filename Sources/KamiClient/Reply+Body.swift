public import KamiCore
public import KamiProtocol

extension Reply {
    /// The body of a successful reply; throws the server's error (code and message as
    /// kamid sent them) for a failed one.
    @discardableResult
    public func successBody() throws(KamiError) -> ReplyBody {
        switch result {
        case .success(let body): return body
        case .failure(let error): throw error
        }
    }

    /// The order of a successful `reserve`, `commit`, `issue`, `release`, `order` or
    /// `refund` reply.
    func wireOrder(_ op: Operation) throws(KamiError) -> WireOrder {
        guard case .order(let order) = try successBody() else { throw unexpected(op, "an order") }
        return order
    }

    func wireCodes(_ op: Operation) throws(KamiError) -> (codes: [WireCode], nextCursor: String?) {
        guard case .codes(let codes, let next) = try successBody() else { throw unexpected(op, "a list of codes") }
        return (codes, next)
    }

    /// The server's hello; an older server that answers an empty hello speaks protocol 1
    /// with no features announced.
    func wireHello() throws(KamiError) -> WireHello {
        switch try successBody() {
        case .hello(let hello): return hello
        case .empty: return WireHello(protocolVersion: 1, server: "kamid", features: [])
        default: throw unexpected(.hello, "its protocol version")
        }
    }

    func wireStock(_ op: Operation) throws(KamiError) -> WireStock {
        guard case .stock(let stock) = try successBody() else { throw unexpected(op, "stock counters") }
        return stock
    }

    func verdict(_ op: Operation) throws(KamiError) -> RiskVerdict {
        guard case .risk(let verdict) = try successBody() else { throw unexpected(op, "a risk verdict") }
        return verdict
    }

    func empty(_ op: Operation) throws(KamiError) {
        guard case .empty = try successBody() else { throw unexpected(op, "an empty body") }
    }

    /// A reply of the wrong shape means kamid speaks another version of the protocol:
    /// repeating will not help, so it is not UNAVAILABLE.
    private func unexpected(_ op: Operation, _ expected: String) -> KamiError {
        KamiError(.badRequest, "kamid answered \(op.name) without \(expected); is it a different protocol version?")
    }
}
