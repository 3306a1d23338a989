package kami

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// kamid POSTs each event to every configured webhook endpoint (docs/webhooks.md) with
//
//	Kami-Event-Id: 123                  the event id (the same on every retry)
//	Kami-Event-Type: order.delivered
//	Kami-Timestamp: 1733390000          Unix seconds when this attempt was sent
//	Kami-Signature: v1=<64 hex digits>  HMAC-SHA256(secret, "<timestamp>.<raw body>")
//
// and a JSON body {"id":123,"type":"order.delivered","created_ms":...,"data":{...}}.

// Webhook header names.
const (
	HeaderEventID   = "Kami-Event-Id"
	HeaderEventType = "Kami-Event-Type"
	HeaderTimestamp = "Kami-Timestamp"
	HeaderSignature = "Kami-Signature"
)

const (
	// WebhookTolerance is how far Kami-Timestamp may be from the receiver's clock.
	WebhookTolerance = 300 * time.Second
	// WebhookSecretMin is the shortest secret kamid accepts in a webhook_secret_file; a
	// shorter one here is a configuration mistake.
	WebhookSecretMin = 16
	// WebhookBodyMax bounds the body WebhookHandler reads; kamid's are a few hundred bytes.
	WebhookBodyMax = 1 << 20
	webhookScheme  = "v1"
)

// Event types kamid sends. A receiver answers 2xx to a type it does not know (a later kamid
// may add some) and ignores it.
const (
	EventOrderDelivered        = "order.delivered"
	EventOrderPendingUpstream  = "order.pending_upstream"
	EventOrderFailed           = "order.failed"
	EventOrderRefunded         = "order.refunded"
	EventCaseOpened            = "case.opened"
	EventCaseResolved          = "case.resolved"
	EventStockLow              = "stock.low"
	EventSupplierBreakerOpened = "supplier.breaker_opened"
)

// Why a delivery was refused; match with errors.Is. Errors never hold the secret, the
// expected MAC or the body.
var (
	// ErrWebhookMissingHeader: Kami-Timestamp or Kami-Signature is absent or empty.
	ErrWebhookMissingHeader = errors.New("kami: webhook: missing header")
	// ErrWebhookBadHeader: a timestamp that is not Unix seconds, or no v1= signature of 64 hex digits.
	ErrWebhookBadHeader = errors.New("kami: webhook: malformed header")
	// ErrWebhookBadSignature: no v1 signature matches the body under the secret(s).
	ErrWebhookBadSignature = errors.New("kami: webhook: bad signature")
	// ErrWebhookStaleTimestamp: signed right, but the timestamp is outside the tolerance.
	ErrWebhookStaleTimestamp = errors.New("kami: webhook: stale timestamp")
	// ErrWebhookBadJSON: the body is not an event object (id, type, created_ms, data).
	ErrWebhookBadJSON = errors.New("kami: webhook: bad JSON")
	// ErrWebhookHeaderMismatch: Kami-Event-Id or Kami-Event-Type disagrees with the signed body.
	ErrWebhookHeaderMismatch = errors.New("kami: webhook: header does not match the body")
)

// Event is a verified webhook delivery. Only the body is signed, so ID and Type come from
// it (the verifier checks the Kami-Event-Id and Kami-Event-Type headers agree). Deduplicate
// on ID: a retry after a lost 2xx delivers the same event again.
type Event struct {
	ID        int64           `json:"id"`
	Type      string          `json:"type"`
	CreatedMs int64           `json:"created_ms"`
	Data      json.RawMessage `json:"data"`
}

// Created is CreatedMs as a time.
func (e Event) Created() time.Time { return time.UnixMilli(e.CreatedMs) }

// DecodeData unmarshals Data into v (an *OrderEvent, *CaseEvent, *StockLowEvent, ...).
func (e Event) DecodeData(v any) error {
	if err := json.Unmarshal(e.Data, v); err != nil {
		return fmt.Errorf("kami: webhook: event %d (%s) data: %w", e.ID, e.Type, err)
	}
	return nil
}

// OrderEvent is the data of order.delivered, order.pending_upstream, order.failed and
// order.refunded. It never holds a secret: fetch the codes with Client.Order.
type OrderEvent struct {
	Order   string  `json:"order"`
	SKU     string  `json:"sku"`
	Units   int     `json:"units"`
	State   string  `json:"state"`
	CodeIDs []int64 `json:"code_ids"`
}

// CaseEvent is the data of case.opened and case.resolved.
type CaseEvent struct {
	Case   int64  `json:"case"`
	Order  string `json:"order"`
	SKU    string `json:"sku"`
	CodeID *int64 `json:"code_id"` // nil: the case is about the whole order
	Reason string `json:"reason"`
	State  string `json:"state"` // open, replaced, refunded, rejected
}

// StockLowEvent is the data of stock.low.
type StockLowEvent struct {
	SKU       string `json:"sku"`
	Available int    `json:"available"`
	LowWater  int    `json:"low_water"`
}

// SupplierEvent is the data of supplier.breaker_opened.
type SupplierEvent struct {
	Supplier string `json:"supplier"`
}

// SignWebhook is the Kami-Signature value kamid sends for body at timestamp (for tests).
func SignWebhook(secret []byte, timestamp int64, body []byte) string {
	return webhookScheme + "=" + hex.EncodeToString(webhookMAC(secret, strconv.FormatInt(timestamp, 10), body))
}

// VerifyWebhook checks one delivery against secret at now and returns its event.
//
//	ev, err := kami.VerifyWebhook(secret, r.Header, body, time.Now())
func VerifyWebhook(secret []byte, header http.Header, body []byte, now time.Time) (Event, error) {
	v := WebhookVerifier{Secrets: [][]byte{secret}, Now: func() time.Time { return now }}
	return v.Verify(header, body)
}

// WebhookVerifier checks deliveries. Secrets holds the endpoint's secret, or several while
// it is rotated (a delivery signed with any of them passes). Tolerance defaults to
// WebhookTolerance, Now to time.Now.
type WebhookVerifier struct {
	Secrets   [][]byte
	Tolerance time.Duration
	Now       func() time.Time
}

// Verify recomputes the MAC over the Kami-Timestamp header, ".", and the raw body, compares
// it in constant time (hmac.Equal), then checks the timestamp is within the tolerance (after
// the signature, so only an authentic delivery learns the clocks differ) and decodes the
// body. A secret shorter than WebhookSecretMin is a programming error: it panics.
func (v *WebhookVerifier) Verify(header http.Header, body []byte) (Event, error) {
	if len(v.Secrets) == 0 {
		panic("kami: WebhookVerifier without a secret")
	}
	for _, s := range v.Secrets {
		if len(s) < WebhookSecretMin {
			panic(fmt.Sprintf("kami: webhook secret of %d bytes, want at least %d", len(s), WebhookSecretMin))
		}
	}
	stamp := strings.TrimSpace(header.Get(HeaderTimestamp))
	if stamp == "" {
		return Event{}, fmt.Errorf("%w: no %s", ErrWebhookMissingHeader, HeaderTimestamp)
	}
	sigs := header.Values(HeaderSignature)
	if len(sigs) == 0 || strings.TrimSpace(strings.Join(sigs, "")) == "" {
		return Event{}, fmt.Errorf("%w: no %s", ErrWebhookMissingHeader, HeaderSignature)
	}
	ts, ok := unixSeconds(stamp)
	if !ok {
		return Event{}, fmt.Errorf("%w: %s is not Unix seconds", ErrWebhookBadHeader, HeaderTimestamp)
	}
	candidates := signatures(sigs)
	if len(candidates) == 0 {
		return Event{}, fmt.Errorf("%w: %s holds no v1= signature of 64 hex digits", ErrWebhookBadHeader, HeaderSignature)
	}
	matched := false
	for _, s := range v.Secrets {
		mac := webhookMAC(s, stamp, body)
		for _, c := range candidates {
			matched = hmac.Equal(mac, c) || matched
		}
	}
	if !matched {
		return Event{}, fmt.Errorf("%w: another secret, or a body changed on the way", ErrWebhookBadSignature)
	}

	now := time.Now
	if v.Now != nil {
		now = v.Now
	}
	tolerance := v.Tolerance
	if tolerance <= 0 {
		tolerance = WebhookTolerance
	}
	skew := now().Unix() - ts
	if skew > int64(tolerance/time.Second) {
		return Event{}, fmt.Errorf("%w: %d s old (tolerance %v)", ErrWebhookStaleTimestamp, skew, tolerance)
	}
	if -skew > int64(tolerance/time.Second) {
		return Event{}, fmt.Errorf("%w: %d s in the future (tolerance %v)", ErrWebhookStaleTimestamp, -skew, tolerance)
	}

	ev, err := decodeEvent(body)
	if err != nil {
		return Event{}, err
	}
	if id := header.Get(HeaderEventID); id != "" && id != strconv.FormatInt(ev.ID, 10) {
		return Event{}, fmt.Errorf("%w: %s", ErrWebhookHeaderMismatch, HeaderEventID)
	}
	if typ := header.Get(HeaderEventType); typ != "" && typ != ev.Type {
		return Event{}, fmt.Errorf("%w: %s", ErrWebhookHeaderMismatch, HeaderEventType)
	}
	return ev, nil
}

// WebhookHandler verifies each delivery with secret and passes the event to handle. It
// answers 204 when handle returns nil, 400 when the delivery is refused (the reason in the
// body; kamid retries, then dead-letters it), 405 to anything but POST, 413 to a body over
// WebhookBodyMax, and 500 when handle fails (kamid sends the event again later). handle
// must deduplicate on Event.ID and should return quickly (kamid waits webhook_timeout_ms).
func WebhookHandler(secret []byte, handle func(Event) error) http.Handler {
	return &WebhookReceiver{Verifier: WebhookVerifier{Secrets: [][]byte{secret}}, Handle: handle}
}

// WebhookReceiver is WebhookHandler with its verifier exposed (rotated secrets, tolerance,
// clock). Log, when set, is told why a delivery was refused or its handler failed.
type WebhookReceiver struct {
	Verifier WebhookVerifier
	Handle   func(Event) error
	Log      func(msg string, err error)
}

// ServeHTTP implements http.Handler.
func (wr *WebhookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "POST only", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, WebhookBodyMax+1))
	if err != nil {
		http.Error(w, "cannot read the body", http.StatusBadRequest)
		return
	}
	if len(body) > WebhookBodyMax {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	ev, err := wr.Verifier.Verify(r.Header, body)
	if err != nil {
		wr.log("webhook refused", err)
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if err := wr.Handle(ev); err != nil {
		wr.log(fmt.Sprintf("webhook handler failed for event %d", ev.ID), err)
		http.Error(w, "handler failed", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (wr *WebhookReceiver) log(msg string, err error) {
	if wr.Log != nil {
		wr.Log(msg, err)
	}
}

func webhookMAC(secret []byte, stamp string, body []byte) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte(stamp))
	m.Write([]byte{'.'})
	m.Write(body)
	return m.Sum(nil)
}

// unixSeconds parses 1 to 12 decimal digits (no sign, no fraction).
func unixSeconds(s string) (int64, bool) {
	if len(s) == 0 || len(s) > 12 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// signatures returns the decoded v1 MACs in Kami-Signature values ("v1=hex", or several
// separated by commas).
func signatures(values []string) [][]byte {
	var out [][]byte
	for _, v := range values {
		for _, part := range strings.Split(v, ",") {
			scheme, hexMAC, ok := strings.Cut(strings.TrimSpace(part), "=")
			if !ok || scheme != webhookScheme || len(hexMAC) != 2*sha256.Size {
				continue
			}
			if mac, err := hex.DecodeString(hexMAC); err == nil {
				out = append(out, mac)
			}
		}
	}
	return out
}

func decodeEvent(body []byte) (Event, error) {
	var raw struct {
		ID        json.RawMessage `json:"id"`
		Type      *string         `json:"type"`
		CreatedMs json.RawMessage `json:"created_ms"`
		Data      json.RawMessage `json:"data"`
	}
	bad := fmt.Errorf("%w: the body is not an event object with id, type, created_ms and data", ErrWebhookBadJSON)
	if err := json.Unmarshal(body, &raw); err != nil {
		return Event{}, bad
	}
	if raw.Type == nil || *raw.Type == "" || len(raw.Data) == 0 || raw.Data[0] != '{' {
		return Event{}, bad
	}
	// Integers only: ParseInt refuses a quoted "7", 7.0, 1e3 and null.
	id, err1 := strconv.ParseInt(string(raw.ID), 10, 64)
	created, err2 := strconv.ParseInt(string(raw.CreatedMs), 10, 64)
	if err1 != nil || err2 != nil || id <= 0 {
		return Event{}, bad
	}
	return Event{ID: id, Type: *raw.Type, CreatedMs: created, Data: raw.Data}, nil
}
