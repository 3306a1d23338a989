package kami

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand"
	"strings"
	"testing"
)

func unhex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The issue request of docs/protocol.md's example, byte for byte.
func TestIssueFrameMatchesProtocolExample(t *testing.T) {
	w := newFrame(opIssue, 7)
	w.str("order", "A1")
	w.str("user", "alice")
	w.str("sku", "vip")
	w.u32(1)
	w.str("payment_ref", "pay-1")
	w.optStr("ip", nil)
	w.optStr("device", nil)
	got, err := w.finish()
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, `b1 01 05 00 07 00 00 00 1f 00 00 00 02 00 41 31 05 00 61 6c 69 63 65
		03 00 76 69 70 01 00 00 00 05 00 70 61 79 2d 31 ff ff ff ff`)
	if !bytes.Equal(got, want) {
		t.Fatalf("frame\n got %x\nwant %x", got, want)
	}
}

const exampleOrderReply = `b1 01 05 00 07 00 00 00 2e 00 00 00
	02 00 41 31 01 03 00 76 69 70 01 00 00 00
	00 00 00 00 00 00 00 00 01 00
	7b 00 00 00 00 00 00 00 03 00 76 69 70
	03 00 4b 2d 31 ff ff ff ff`

func TestDecodeOrderReplyExample(t *testing.T) {
	b := unhex(t, exampleOrderReply)
	h, err := parseHeader(b, replyBytesMax)
	if err != nil {
		t.Fatal(err)
	}
	if h.op != opIssue || h.id != 7 || h.status != 0 || int(h.length) != len(b)-12 {
		t.Fatalf("header %+v", h)
	}
	o, err := decodeOrder(b[12:])
	if err != nil {
		t.Fatal(err)
	}
	if o.ID != "A1" || o.State != StateCommitted || o.SKU != "vip" || o.Qty != 1 || len(o.Codes) != 1 {
		t.Fatalf("order %+v", o)
	}
	c := o.Codes[0]
	if c.ID != 123 || c.Secret.Reveal() != "K-1" || !c.HasSecret || c.CardNumber != "" {
		t.Fatalf("code %+v", c)
	}
	// Trailing bytes (a newer server's fields) are skipped.
	if _, err := decodeOrder(append(b[12:], 1, 2, 3)); err != nil {
		t.Fatalf("trailing bytes: %v", err)
	}
}

func TestDecodeSoldOutExample(t *testing.T) {
	b := unhex(t, `b1 01 05 04 07 00 00 00 0a 00 00 00 08 00 73 6f 6c 64 20 6f 75 74`)
	h, err := parseHeader(b, replyBytesMax)
	if err != nil {
		t.Fatal(err)
	}
	e := decodeError(h.op, h.status, b[12:])
	if !errors.Is(e, SoldOut) || e.Message != "sold out" || e.Verdict != nil {
		t.Fatalf("error %+v", e)
	}
	var ke *Error
	if !errors.As(fmt.Errorf("wrapped: %w", e), &ke) || ke.Code != SoldOut {
		t.Fatal("errors.As through a wrap")
	}
	if e.Error() != "kami: issue: SOLD_OUT: sold out" {
		t.Fatalf("error text %q", e.Error())
	}
	if errors.Is(e, NotFound) {
		t.Fatal("SOLD_OUT is NOT_FOUND")
	}
}

// encOrder is the test's own encoder of an order reply payload.
func encOrder(o *Order) []byte {
	w := &writer{}
	w.str("order", o.ID)
	w.u8(uint8(o.State))
	w.str("sku", o.SKU)
	w.u32(uint32(o.Qty))
	w.i64(o.ExpiresAtMs)
	w.u16(uint16(len(o.Codes)))
	for _, c := range o.Codes {
		w.i64(c.ID)
		w.str("sku", c.SKU)
		if c.HasSecret {
			s := c.Secret.Reveal()
			w.optStr("secret", &s)
		} else {
			w.optStr("secret", nil)
		}
		w.optStr("card_number", opt(c.CardNumber))
		w.optStr("activation_url", opt(c.ActivationURL))
	}
	return w.b
}

func TestOrderRoundTrip(t *testing.T) {
	o := &Order{ID: "订单-1", State: StatePendingUpstream, SKU: "vip", Qty: 3, ExpiresAtMs: -5}
	for i := 0; i < 3; i++ {
		o.Codes = append(o.Codes, CardCode{ID: int64(i) << 40, SKU: "vip", Secret: Secret(fmt.Sprintf("S-%d", i)), HasSecret: i != 1,
			CardNumber: "", ActivationURL: "https://x/?a=b"})
	}
	o.Codes[1].Secret = ""
	got, err := decodeOrder(encOrder(o))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", o) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, o)
	}
	if OrderState(42).String() != "#42" || got.State.String() != "pending_upstream" {
		t.Fatal("state names")
	}
}

func TestStockEntitlementsHelloVerdictRoundTrip(t *testing.T) {
	w := &writer{}
	w.str("sku", "vip")
	for _, v := range []int64{10, 2, 5, 1, 18} {
		w.i64(v)
	}
	s, err := decodeStock(w.b)
	if err != nil || *s != (Stock{"vip", 10, 2, 5, 1, 18}) {
		t.Fatalf("stock %+v %v", s, err)
	}

	w = &writer{}
	w.u16(1)
	w.str("order", "A1")
	w.i64(9)
	w.str("sku", "vip")
	w.u8(2)
	sec := "K"
	w.optStr("secret", &sec)
	w.optStr("card_number", nil)
	w.optStr("activation_url", nil)
	cur := "17.0"
	w.optStr("next_cursor", &cur)
	e, err := decodeEntitlements(w.b)
	if err != nil || len(e.Codes) != 1 || e.Codes[0].State != CodeIssued || e.Codes[0].Secret.Reveal() != "K" || e.NextCursor != "17.0" {
		t.Fatalf("entitlements %+v %v", e, err)
	}

	w = &writer{}
	w.u16(1)
	w.str("server", "kamid")
	w.u16(2)
	w.str("f", "binary")
	w.str("f", "upstream")
	h, err := decodeHello(w.b)
	if err != nil || h.Protocol != 1 || !h.HasFeature("upstream") || h.HasFeature("x") {
		t.Fatalf("hello %+v %v", h, err)
	}

	w = &writer{}
	w.str("message", "the risk gate wants a challenge")
	w.u8(1)
	w.str("reason", "suspicious_attributes")
	w.u16(2)
	w.str("r", "new_account")
	w.str("r", "no_phone")
	w.i64(45)
	tok := "v1.tok"
	w.optStr("challenge", &tok)
	w.u8(99) // a newer field: skipped
	ke := decodeError(opIssue, uint8(ChallengeRequired), w.b)
	if !errors.Is(ke, ChallengeRequired) || ke.Verdict == nil || ke.Verdict.Challenge != "v1.tok" || ke.Verdict.Score != 45 || len(ke.Verdict.Rules) != 2 {
		t.Fatalf("verdict %+v %+v", ke, ke.Verdict)
	}
}

func TestSignalsLayout(t *testing.T) {
	w := &writer{}
	w.signals(nil)
	want := unhex(t, `ff ff 00 00 00 00 00 00 00 80 00 00 00 00 00 00 00 80 00 ff ff`)
	if !bytes.Equal(w.b, want) {
		t.Fatalf("empty signals %x", w.b)
	}
}

// Every truncation of a valid reply, and random garbage, gives an error, never a panic.
func TestTruncatedAndGarbageReplies(t *testing.T) {
	full := unhex(t, exampleOrderReply)[12:]
	for n := 0; n < len(full); n++ {
		if _, err := decodeOrder(full[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: no error", n)
		} else if !errors.Is(err, ErrProtocol) {
			t.Fatalf("truncated to %d: error %v does not wrap ErrProtocol", n, err)
		}
	}
	rng := rand.New(rand.NewSource(1))
	for i := 0; i < 20000; i++ {
		b := make([]byte, rng.Intn(64))
		rng.Read(b)
		decodeOrder(b)
		decodeStock(b)
		decodeEntitlements(b)
		decodeHello(b)
		decodeError(opIssue, uint8(Denied), b)
		parseHeader(b, replyBytesMax)
		rd := &reader{b: b}
		decodeVerdict(rd)
	}
	// Bad header fields.
	for _, h := range []string{
		`b2 01 05 00 07 00 00 00 00 00 00 00`, // magic
		`b1 02 05 00 07 00 00 00 00 00 00 00`, // version
		`b1 01 05 00 07 00 00 00 ff ff ff ff`, // length beyond the reply limit
		`b1 01 05`,                            // short
	} {
		if _, err := parseHeader(unhex(t, h), replyBytesMax); err == nil {
			t.Fatalf("header %s accepted", h)
		}
	}
	// Invalid UTF-8 in a string.
	if _, err := decodeStock([]byte{2, 0, 0xff, 0xfe}); err == nil {
		t.Fatal("invalid UTF-8 accepted")
	}
}

func TestWriterRefusesBadStrings(t *testing.T) {
	w := newFrame(opStock, 1)
	w.str("sku", string([]byte{0xff}))
	if _, err := w.finish(); err == nil {
		t.Fatal("invalid UTF-8 written")
	}
	w = newFrame(opStock, 1)
	w.str("sku", strings.Repeat("x", 70000))
	if _, err := w.finish(); err == nil {
		t.Fatal("oversized string written")
	}
}

func TestSecretIsRedacted(t *testing.T) {
	s := Secret("VIP-AAAA-0001")
	c := CardCode{ID: 1, Secret: s, HasSecret: true}
	for _, out := range []string{fmt.Sprint(s), fmt.Sprintf("%s %q %v %+v %#v", s, s, s, c, c), fmt.Sprintf("%v", []Secret{s})} {
		if strings.Contains(out, "AAAA") {
			t.Fatalf("secret leaked: %s", out)
		}
	}
	if j, err := json.Marshal(c); err != nil || strings.Contains(string(j), "AAAA") {
		t.Fatalf("json: %s %v", j, err)
	}
	if s.Reveal() != "VIP-AAAA-0001" {
		t.Fatal("reveal")
	}
}

// The activate request (op 12): optstr order, optstr user, i64 code_id, optstr token,
// optstr ip, byte for byte.
func TestActivateFrames(t *testing.T) {
	order, user := "A1", "alice"
	w := newFrame(opActivate, 7)
	w.activate(&order, &user, 12, nil, nil)
	got, err := w.finish()
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, `b1 01 0c 00 07 00 00 00 17 00 00 00
		02 00 41 31  05 00 61 6c 69 63 65  0c 00 00 00 00 00 00 00  ff ff  ff ff`)
	if !bytes.Equal(got, want) {
		t.Fatalf("by order\n got %x\nwant %x", got, want)
	}
	token, ip := "1.2.ab", "::1"
	w = newFrame(opActivate, 8)
	w.activate(nil, nil, 0, &token, &ip)
	got, err = w.finish()
	if err != nil {
		t.Fatal(err)
	}
	want = unhex(t, `b1 01 0c 00 08 00 00 00 19 00 00 00
		ff ff  ff ff  00 00 00 00 00 00 00 00  06 00 31 2e 32 2e 61 62  03 00 3a 3a 31`)
	if !bytes.Equal(got, want) {
		t.Fatalf("by token\n got %x\nwant %x", got, want)
	}
	if opName(opActivate) != "activate" || CodeUsed.String() != "used" {
		t.Fatal("names")
	}
}

// encEntitlements is the test's own encoder of an entitlements (codes) reply payload; with
// details, the block kamid appends since activation.
func encEntitlements(e *Entitlements, details bool) []byte {
	w := &writer{}
	w.u16(uint16(len(e.Codes)))
	for _, x := range e.Codes {
		w.str("order", x.Order)
		w.i64(x.ID)
		w.str("sku", x.SKU)
		w.u8(uint8(x.State))
		if x.HasSecret {
			s := x.Secret.Reveal()
			w.optStr("secret", &s)
		} else {
			w.optStr("secret", nil)
		}
		w.optStr("card_number", opt(x.CardNumber))
		w.optStr("activation_url", opt(x.ActivationURL))
	}
	w.optStr("next_cursor", opt(e.NextCursor))
	if !details {
		return w.b
	}
	w.u16(uint16(len(e.Codes)))
	ms := func(v int64) int64 {
		if v == 0 {
			return -1
		}
		return v
	}
	for _, x := range e.Codes {
		w.optStr("status", opt(string(x.Status)))
		w.optStr("sku_name", opt(x.SKUName))
		w.optStr("usage_guide", opt(x.UsageGuide))
		w.i64(ms(x.ExpiresAtMs))
		w.i64(ms(x.OrderedAtMs))
		w.i64(ms(x.UsedAtMs))
	}
	return w.b
}

func TestEntitlementDetails(t *testing.T) {
	e := &Entitlements{NextCursor: "42.7", Codes: []Entitlement{
		{Order: "M1", ID: 0, SKU: "manual", State: CodeReserved, Status: StatusPending, SKUName: "手动",
			OrderedAtMs: 1796460138343},
		{Order: "A1", ID: 9, SKU: "vip", State: CodeUsed, Secret: "K-9", HasSecret: true, CardNumber: "C9",
			Status: StatusUsed, SKUName: "月卡", UsageGuide: "打开 App → 我的 → 兑换\n输入卡密",
			ExpiresAtMs: 1830000000000, OrderedAtMs: 1796460114233, UsedAtMs: 1796460116593},
		{Order: "A1", ID: 10, SKU: "vip", State: CodeIssued, Secret: "K-10", HasSecret: true,
			ActivationURL: "https://brand.example/redeem?t=10.1796461014.00", Status: StatusDelivered, SKUName: "月卡",
			OrderedAtMs: 1796460114233},
	}}
	full := encEntitlements(e, true)
	got, err := decodeEntitlements(full)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", e) {
		t.Fatalf("round trip\n got %+v\nwant %+v", got, e)
	}
	if got.Codes[1].UsageGuide != "打开 App → 我的 → 兑换\n输入卡密" || got.Codes[1].Secret.Reveal() != "K-9" {
		t.Fatalf("details %+v", got.Codes[1])
	}
	// An older kamid ends after next_cursor: the details stay zero.
	old, err := decodeEntitlements(encEntitlements(e, false))
	if err != nil || old.Codes[1].Status != "" || old.Codes[1].UsedAtMs != 0 || old.NextCursor != "42.7" {
		t.Fatalf("without details %+v %v", old, err)
	}
	// A newer kamid's fields after the block are skipped.
	if _, err := decodeEntitlements(append(append([]byte{}, full...), 7, 7)); err != nil {
		t.Fatalf("trailing bytes: %v", err)
	}
	// Every truncation inside the block is an error (at its very start it is an older reply).
	start := len(encEntitlements(e, false))
	for n := start + 1; n < len(full); n++ {
		if _, err := decodeEntitlements(full[:n]); !errors.Is(err, ErrProtocol) {
			t.Fatalf("truncated to %d of %d bytes: %v", n, len(full), err)
		}
	}
	// A count that does not match the codes.
	bad := append([]byte{}, full...)
	bad[start] = 2
	if _, err := decodeEntitlements(bad); !errors.Is(err, ErrProtocol) {
		t.Fatalf("2 details for 3 codes: %v", err)
	}
}
