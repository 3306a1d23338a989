package kami

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
)

// Wire constants of the binary encoding (docs/protocol.md, "Binary frames").
const (
	frameMagic       = 0xB1
	frameVersion     = 1
	frameHeaderBytes = 12
	// frameBytesMax bounds a request frame, header included.
	frameBytesMax = 65536
	// replyBytesMax bounds a reply frame.
	replyBytesMax = 2 * 1024 * 1024
	strBytesMax   = 65534
	optAbsent     = 0xFFFF
)

// Operation numbers.
const (
	opHello        uint8 = 1
	opPing         uint8 = 2
	opReserve      uint8 = 3
	opCommit       uint8 = 4
	opIssue        uint8 = 5
	opRelease      uint8 = 6
	opOrder        uint8 = 7
	opEntitlements uint8 = 8
	opStock        uint8 = 9
	opWait         uint8 = 10
	opRisk         uint8 = 11
	opActivate     uint8 = 12
)

var opNames = map[uint8]string{
	opHello: "hello", opPing: "ping", opReserve: "reserve", opCommit: "commit", opIssue: "issue",
	opRelease: "release", opOrder: "order", opEntitlements: "entitlements", opStock: "stock",
	opWait: "wait", opRisk: "risk", opActivate: "activate",
}

func opName(op uint8) string {
	if n, ok := opNames[op]; ok {
		return n
	}
	return fmt.Sprintf("op#%d", op)
}

// errCodec is wrapped by every decoding failure.
var errCodec = errors.New("kami: malformed frame")

// frameHeader is the 12-byte header common to requests and replies.
type frameHeader struct {
	op     uint8
	status uint8 // flags in a request
	id     uint32
	length uint32
}

// parseHeader checks magic, version and the payload length against max.
func parseHeader(b []byte, max int) (frameHeader, error) {
	if len(b) < frameHeaderBytes {
		return frameHeader{}, fmt.Errorf("%w: header of %d bytes, want %d", errCodec, len(b), frameHeaderBytes)
	}
	if b[0] != frameMagic {
		return frameHeader{}, fmt.Errorf("%w: bad magic 0x%02x", errCodec, b[0])
	}
	if b[1] != frameVersion {
		return frameHeader{}, fmt.Errorf("%w: unsupported version %d", errCodec, b[1])
	}
	h := frameHeader{op: b[2], status: b[3], id: binary.LittleEndian.Uint32(b[4:8]), length: binary.LittleEndian.Uint32(b[8:12])}
	if uint64(h.length)+frameHeaderBytes > uint64(max) {
		return frameHeader{}, fmt.Errorf("%w: frame of %d bytes exceeds %d", errCodec, uint64(h.length)+frameHeaderBytes, max)
	}
	return h, nil
}

// writer builds a request frame.
type writer struct {
	b   []byte
	err error
}

func newFrame(op uint8, id uint32) *writer {
	w := &writer{b: make([]byte, frameHeaderBytes, 128)}
	w.b[0], w.b[1], w.b[2], w.b[3] = frameMagic, frameVersion, op, 0
	binary.LittleEndian.PutUint32(w.b[4:8], id)
	return w
}

func (w *writer) u8(v uint8)   { w.b = append(w.b, v) }
func (w *writer) u16(v uint16) { w.b = binary.LittleEndian.AppendUint16(w.b, v) }
func (w *writer) u32(v uint32) { w.b = binary.LittleEndian.AppendUint32(w.b, v) }
func (w *writer) i64(v int64)  { w.b = binary.LittleEndian.AppendUint64(w.b, uint64(v)) }

func (w *writer) str(field, s string) {
	if len(s) > strBytesMax {
		w.fail(fmt.Errorf("field %s: %d bytes, at most %d", field, len(s), strBytesMax))
		return
	}
	if !utf8.ValidString(s) {
		w.fail(fmt.Errorf("field %s: not valid UTF-8", field))
		return
	}
	w.u16(uint16(len(s)))
	w.b = append(w.b, s...)
}

func (w *writer) optStr(field string, s *string) {
	if s == nil {
		w.u16(optAbsent)
		return
	}
	w.str(field, *s)
}

func (w *writer) fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// finish fills in the payload length and checks the frame limit.
func (w *writer) finish() ([]byte, error) {
	if w.err != nil {
		return nil, w.err
	}
	if len(w.b) > frameBytesMax {
		return nil, fmt.Errorf("request frame of %d bytes exceeds %d", len(w.b), frameBytesMax)
	}
	binary.LittleEndian.PutUint32(w.b[8:12], uint32(len(w.b)-frameHeaderBytes))
	return w.b, nil
}

// reader decodes a payload; the first error sticks and every later read returns zero.
type reader struct {
	b   []byte
	off int
	err error
}

func (r *reader) need(n int, field string) []byte {
	if r.err != nil {
		return nil
	}
	if n < 0 || len(r.b)-r.off < n {
		r.err = fmt.Errorf("%w: truncated at field %s (offset %d, need %d, have %d)", errCodec, field, r.off, n, len(r.b)-r.off)
		return nil
	}
	s := r.b[r.off : r.off+n]
	r.off += n
	return s
}

func (r *reader) u8(f string) uint8 {
	if s := r.need(1, f); s != nil {
		return s[0]
	}
	return 0
}

func (r *reader) u16(f string) uint16 {
	if s := r.need(2, f); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}

func (r *reader) u32(f string) uint32 {
	if s := r.need(4, f); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (r *reader) i64(f string) int64 {
	if s := r.need(8, f); s != nil {
		return int64(binary.LittleEndian.Uint64(s))
	}
	return 0
}

func (r *reader) str(f string) string {
	n := r.u16(f)
	if r.err == nil && n == optAbsent {
		r.err = fmt.Errorf("%w: field %s is absent but required", errCodec, f)
		return ""
	}
	s := r.need(int(n), f)
	if s == nil {
		return ""
	}
	if !utf8.Valid(s) {
		r.err = fmt.Errorf("%w: field %s is not valid UTF-8", errCodec, f)
		return ""
	}
	return string(s)
}

// optStr returns nil for an absent string.
func (r *reader) optStr(f string) *string {
	n := r.u16(f)
	if r.err != nil || n == optAbsent {
		return nil
	}
	s := r.need(int(n), f)
	if s == nil {
		return nil
	}
	if !utf8.Valid(s) {
		r.err = fmt.Errorf("%w: field %s is not valid UTF-8", errCodec, f)
		return nil
	}
	v := string(s)
	return &v
}

func (r *reader) remaining() int { return len(r.b) - r.off }

// ---- requests ----

// Signals are the optional risk signals of reserve, issue and Risk.
type Signals struct {
	PaymentAccount *string
	AmountCents    *int64
	AccountAgeDays *int64
	PhoneVerified  *bool
	ChallengeToken *string
}

func (s *Signals) empty() bool {
	return s == nil || (s.PaymentAccount == nil && s.AmountCents == nil && s.AccountAgeDays == nil && s.PhoneVerified == nil && s.ChallengeToken == nil)
}

func (w *writer) signals(s *Signals) {
	if s == nil {
		s = &Signals{}
	}
	w.optStr("payment_account", s.PaymentAccount)
	absent := int64(math.MinInt64)
	if s.AmountCents != nil {
		w.i64(*s.AmountCents)
	} else {
		w.i64(absent)
	}
	if s.AccountAgeDays != nil {
		w.i64(*s.AccountAgeDays)
	} else {
		w.i64(absent)
	}
	switch {
	case s.PhoneVerified == nil:
		w.u8(0)
	case *s.PhoneVerified:
		w.u8(2)
	default:
		w.u8(1)
	}
	w.optStr("challenge_token", s.ChallengeToken)
}

// Money are the optional labels of an order (docs/money.md). AmountCents travels in
// Signals.
type Money struct {
	Currency, Channel, Campaign, Coupon, Distributor *string
}

func (m *Money) empty() bool {
	return m == nil || (m.Currency == nil && m.Channel == nil && m.Campaign == nil && m.Coupon == nil && m.Distributor == nil)
}

func (w *writer) money(m *Money) {
	w.optStr("currency", m.Currency)
	w.optStr("channel", m.Channel)
	w.optStr("campaign", m.Campaign)
	w.optStr("coupon", m.Coupon)
	w.optStr("distributor", m.Distributor)
}

// activate writes an activate request: optstr order, optstr user, i64 code_id (0: every
// code of the order), optstr token, optstr ip.
func (w *writer) activate(order, user *string, codeID int64, token, ip *string) {
	w.optStr("order", order)
	w.optStr("user", user)
	w.i64(codeID)
	w.optStr("token", token)
	w.optStr("ip", ip)
}

func checkQty(q int) (uint32, error) {
	if q < 0 || int64(q) > math.MaxUint32 {
		return 0, fmt.Errorf("qty %d out of range", q)
	}
	return uint32(q), nil
}

func waitMsU32(ms int64) uint32 {
	if ms <= 0 {
		return 0
	}
	if ms > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(ms)
}

// ---- replies ----

// reply is one decoded reply frame: header plus the raw payload.
type reply struct {
	op      uint8
	status  uint8
	id      uint32
	payload []byte
}

// decodeError reads an error payload: message, then a verdict for DENIED and
// CHALLENGE_REQUIRED when bytes follow. Trailing bytes are skipped.
func decodeError(op, status uint8, payload []byte) *Error {
	r := &reader{b: payload}
	e := &Error{Code: Code(status), Op: opName(op)}
	e.Message = r.str("message")
	if r.err != nil {
		e.Message = "(unreadable error message)"
		return e
	}
	if (e.Code == Denied || e.Code == ChallengeRequired) && r.remaining() > 0 {
		v := decodeVerdict(r)
		if r.err == nil {
			e.Verdict = &v
		}
	}
	return e
}

func decodeVerdict(r *reader) Verdict {
	var v Verdict
	v.Decision = Decision(r.u8("decision"))
	if v.Decision > DecisionDeny {
		v.Decision = DecisionDeny // unknown reads as deny
	}
	v.Reason = r.str("reason")
	n := int(r.u16("rules"))
	for i := 0; i < n && r.err == nil; i++ {
		v.Rules = append(v.Rules, r.str("rule"))
	}
	v.Score = r.i64("score")
	if c := r.optStr("challenge"); c != nil {
		v.Challenge = *c
	}
	return v
}

func decodeCode(r *reader) CardCode {
	var c CardCode
	c.ID = r.i64("code_id")
	c.SKU = r.str("sku")
	if s := r.optStr("secret"); s != nil {
		c.Secret = Secret(*s)
		c.HasSecret = true
	}
	c.CardNumber = deref(r.optStr("card_number"))
	c.ActivationURL = deref(r.optStr("activation_url"))
	return c
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func decodeOrder(payload []byte) (*Order, error) {
	r := &reader{b: payload}
	o := &Order{}
	o.ID = r.str("order")
	o.State = OrderState(r.u8("state"))
	o.SKU = r.str("sku")
	o.Qty = int(r.u32("qty"))
	o.ExpiresAtMs = r.i64("expires_at_ms")
	n := int(r.u16("count"))
	if r.err == nil && n > 0 {
		o.Codes = make([]CardCode, 0, min(n, 1024))
	}
	for i := 0; i < n && r.err == nil; i++ {
		o.Codes = append(o.Codes, decodeCode(r))
	}
	return o, r.err // trailing bytes: newer fields, skipped
}

func decodeStock(payload []byte) (*Stock, error) {
	r := &reader{b: payload}
	s := &Stock{SKU: r.str("sku")}
	s.Available = r.i64("available")
	s.Reserved = r.i64("reserved")
	s.Issued = r.i64("issued")
	s.Voided = r.i64("voided")
	s.Imported = r.i64("imported")
	return s, r.err
}

func decodeEntitlements(payload []byte) (*Entitlements, error) {
	r := &reader{b: payload}
	e := &Entitlements{}
	n := int(r.u16("count"))
	for i := 0; i < n && r.err == nil; i++ {
		var x Entitlement
		x.Order = r.str("order")
		x.ID = r.i64("code_id")
		x.SKU = r.str("sku")
		x.State = CodeState(r.u8("state"))
		if s := r.optStr("secret"); s != nil {
			x.Secret = Secret(*s)
			x.HasSecret = true
		}
		x.CardNumber = deref(r.optStr("card_number"))
		x.ActivationURL = deref(r.optStr("activation_url"))
		e.Codes = append(e.Codes, x)
	}
	e.NextCursor = deref(r.optStr("next_cursor"))
	// Added with activation: the buyer's view of each code, in the same order. An older
	// server ends before it; bytes after it (newer fields) are skipped.
	if r.err == nil && r.remaining() > 0 {
		m := int(r.u16("details"))
		if r.err == nil && m != len(e.Codes) {
			return e, fmt.Errorf("%w: %d entitlement details for %d codes", errCodec, m, len(e.Codes))
		}
		for i := 0; i < m && r.err == nil; i++ {
			x := &e.Codes[i]
			x.Status = EntitlementStatus(deref(r.optStr("status")))
			x.SKUName = deref(r.optStr("sku_name"))
			x.UsageGuide = deref(r.optStr("usage_guide"))
			x.ExpiresAtMs = msOrZero(r.i64("expires_at_ms"))
			x.OrderedAtMs = msOrZero(r.i64("ordered_at_ms"))
			x.UsedAtMs = msOrZero(r.i64("used_at_ms"))
		}
	}
	return e, r.err
}

// msOrZero maps the wire's "absent" time (-1, or any negative) to 0.
func msOrZero(ms int64) int64 {
	if ms < 0 {
		return 0
	}
	return ms
}

func decodeHello(payload []byte) (*ServerInfo, error) {
	if len(payload) == 0 {
		return &ServerInfo{Protocol: 1}, nil
	}
	r := &reader{b: payload}
	s := &ServerInfo{Protocol: int(r.u16("protocol"))}
	s.Server = r.str("server")
	n := int(r.u16("count"))
	for i := 0; i < n && r.err == nil; i++ {
		s.Features = append(s.Features, r.str("feature"))
	}
	return s, r.err
}

func min(a, b int) int {
	if a < b {
		return a
	}
	return b
}
