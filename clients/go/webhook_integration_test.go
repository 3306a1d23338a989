package kami

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// One delivery as the receiver saw it.
type delivery struct {
	header http.Header
	body   []byte
	status int
}

// recorder keeps every request an httptest server got and what it answered.
type recorder struct {
	mu    sync.Mutex
	got   []delivery
	inner http.Handler
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, WebhookBodyMax+1))
	r.Body = io.NopCloser(bytes.NewReader(body))
	sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
	rc.inner.ServeHTTP(sw, r)
	rc.mu.Lock()
	rc.got = append(rc.got, delivery{header: r.Header.Clone(), body: body, status: sw.status})
	rc.mu.Unlock()
}

func (rc *recorder) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

// outboxRow is a row of `kamictl --json webhooks pending|delivered`.
type outboxRow struct {
	ID        int64  `json:"id"`
	Type      string `json:"type"`
	Attempts  int    `json:"attempts"`
	LastError string `json:"last_error"`
	Data      string `json:"data"`
}

func (d *daemon) outbox(t *testing.T, state, endpoint string) []outboxRow {
	t.Helper()
	var reply struct {
		Events []outboxRow `json:"events"`
	}
	out := d.ctl(t, "--json", "webhooks", state, "--endpoint", endpoint)
	if err := json.Unmarshal([]byte(out), &reply); err != nil {
		t.Fatalf("kamictl webhooks %s: %v\n%s", state, err, out)
	}
	return reply.Events
}

// eventually polls cond every 50ms for at most limit.
func eventually(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func randomSecret(t *testing.T) []byte {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return []byte("whsec_" + hex.EncodeToString(b))
}

// A kamid with two endpoints on httptest servers (127.0.0.1): `shop` takes order events,
// with the secret its WebhookHandler knows; `wrongkey` takes every event and signs with
// another secret. The orders issued and committed arrive at shop verified, once each.
func TestWebhooksEndToEnd(t *testing.T) {
	binaries(t)
	dir, etc := t.TempDir(), t.TempDir()
	secret := randomSecret(t)
	if err := os.WriteFile(filepath.Join(dir, "shop.secret"), append(secret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "wrong.secret"), randomSecret(t), 0o600); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	events := map[int64]Event{} // by id: what the shop's handler accepted
	failedFirst := map[int64]bool{}
	duplicates := 0
	shop := &recorder{inner: WebhookHandler(secret, func(e Event) error {
		mu.Lock()
		defer mu.Unlock()
		if _, ok := events[e.ID]; ok {
			duplicates++
			return nil
		}
		var o OrderEvent
		if err := e.DecodeData(&o); err != nil {
			return err
		}
		// The first delivery of the first order's event fails: kamid must retry it.
		if strings.HasSuffix(o.Order, "-wh1") && !failedFirst[e.ID] {
			failedFirst[e.ID] = true
			return errors.New("the shop's database is busy")
		}
		events[e.ID] = e
		return nil
	})}
	shopSrv := httptest.NewServer(shop)
	defer shopSrv.Close()
	wrongCalls := 0
	wrong := &recorder{inner: WebhookHandler(secret, func(Event) error {
		mu.Lock()
		defer mu.Unlock()
		wrongCalls++
		return nil
	})}
	wrongSrv := httptest.NewServer(wrong)
	defer wrongSrv.Close()

	conf := filepath.Join(etc, "kamid.conf")
	text := strings.Join([]string{
		"webhook_url.shop = " + shopSrv.URL + "/kami/webhooks",
		"webhook_secret_file.shop = shop.secret",
		"webhook_events.shop = order.delivered, order.refunded",
		"webhook_url.wrongkey = " + wrongSrv.URL + "/hooks",
		"webhook_secret_file.wrongkey = " + filepath.Join(etc, "wrong.secret"),
		"webhook_backoff_ms = 100",
		"webhook_backoff_max_ms = 500",
		"webhook_timeout_ms = 5000",
	}, "\n") + "\n"
	if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	d, err := startDaemon(t, dir, "0", "--config", conf)
	if err != nil {
		t.Fatal(err)
	}
	defer d.kill()
	secrets := d.addCodes(t, "whk", 0, 6)

	c, err := Dial(ctxT(t, 10*time.Second), d.addr(), Options{Token: d.token(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := ctxT(t, 60*time.Second)
	orders := map[string]*Order{}
	issue := func(id string, qty int) *Order {
		o, err := c.Issue(ctx, IssueRequest{Order: id, User: "u-" + id, SKU: "whk", Qty: qty, PaymentRef: "pay-" + id})
		if err != nil || o.State != StateCommitted {
			t.Fatalf("issue %s: %+v %v", id, o, err)
		}
		return o
	}
	orders["e2e-wh1"] = issue("e2e-wh1", 1)
	orders["e2e-wh2"] = issue("e2e-wh2", 2)
	orders["e2e-wh3"] = issue("e2e-wh3", 1)
	if _, err := c.Reserve(ctx, ReserveRequest{Order: "e2e-wh4", User: "u-e2e-wh4", SKU: "whk", Qty: 1}); err != nil {
		t.Fatal(err)
	}
	if orders["e2e-wh4"], err = c.Commit(ctx, CommitRequest{Order: "e2e-wh4", PaymentRef: "pay-e2e-wh4"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Reserve(ctx, ReserveRequest{Order: "e2e-wh5", User: "u-e2e-wh5", SKU: "whk", Qty: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Release(ctx, "e2e-wh5"); err != nil { // never delivered: no event
		t.Fatal(err)
	}
	if again := issue("e2e-wh1", 1); again.Codes[0].ID != orders["e2e-wh1"].Codes[0].ID { // no second event
		t.Fatalf("repeat: %+v", again)
	}
	// Stock under a low-water mark: a stock.low event, which shop's filter keeps away.
	d.ctl(t, "sku", "source", "whk", "--low-water", "10")

	// snapshot copies what the handlers recorded (they run on the servers' goroutines).
	snapshot := func() (map[int64]Event, int, int) {
		mu.Lock()
		defer mu.Unlock()
		copied := map[int64]Event{}
		for id, e := range events {
			copied[id] = e
		}
		return copied, duplicates, wrongCalls
	}
	eventually(t, 20*time.Second, "4 order.delivered events accepted and nothing pending for shop", func() bool {
		n, _, _ := snapshot()
		return len(n) >= 4 && len(d.outbox(t, "pending", "shop")) == 0
	})

	events, duplicates, _ = snapshot()
	if len(events) != 4 || duplicates != 0 {
		t.Fatalf("%d events, %d duplicates; want 4, 0: %+v", len(events), duplicates, events)
	}
	byOrder := map[string]Event{}
	for _, e := range events {
		var o OrderEvent
		if err := e.DecodeData(&o); err != nil || e.Type != EventOrderDelivered {
			t.Fatalf("event %+v: %v", e, err)
		}
		if _, dup := byOrder[o.Order]; dup {
			t.Fatalf("two events for %s", o.Order)
		}
		byOrder[o.Order] = e
		want, ok := orders[o.Order]
		if !ok {
			t.Fatalf("an event for an order not delivered: %+v", o)
		}
		var ids []int64
		for _, code := range want.Codes {
			ids = append(ids, code.ID)
		}
		if o.SKU != "whk" || o.Units != want.Qty || o.State != "committed" || fmt.Sprint(o.CodeIDs) != fmt.Sprint(ids) {
			t.Fatalf("data of %s: %+v, want codes %v qty %d", o.Order, o, ids, want.Qty)
		}
		if age := time.Since(e.Created()); age < -time.Minute || age > time.Minute {
			t.Fatalf("created_ms %d is not recent", e.CreatedMs)
		}
	}
	if len(byOrder) != len(orders) {
		t.Fatalf("events for %d orders, want %d", len(byOrder), len(orders))
	}

	// Every request shop got: kamid's headers, signed, each event's retries identical.
	bodies := map[int64][]byte{}
	tries := map[int64]int{}
	for _, del := range shop.deliveries() {
		h := del.header
		if h.Get("Content-Type") != "application/json" || h.Get("User-Agent") != "kamid-webhooks" {
			t.Fatalf("headers %v", h)
		}
		ev, err := VerifyWebhook(secret, h, del.body, time.Now())
		if err != nil {
			t.Fatalf("a delivery that does not verify: %v", err)
		}
		if h.Get(HeaderEventID) != strconv.FormatInt(ev.ID, 10) || h.Get(HeaderEventType) != ev.Type {
			t.Fatalf("id/type headers %v for event %d %s", h, ev.ID, ev.Type)
		}
		if prev, ok := bodies[ev.ID]; ok && !bytes.Equal(prev, del.body) {
			t.Fatalf("event %d: a retry with another body:\n%s\n%s", ev.ID, prev, del.body)
		}
		bodies[ev.ID] = del.body
		tries[ev.ID]++
		for s := range secrets {
			if bytes.Contains(del.body, []byte(s)) {
				t.Fatalf("a code's secret in event %d", ev.ID)
			}
		}
	}
	if first := byOrder["e2e-wh1"].ID; tries[first] != 2 {
		t.Fatalf("event %d (failed once with 500) was sent %d times, want 2", first, tries[first])
	}

	// kamid's outbox agrees: the same ids delivered to shop.
	var want, got []int64
	for id := range events {
		want = append(want, id)
	}
	for _, r := range d.outbox(t, "delivered", "shop") {
		got = append(got, r.ID)
	}
	sort.Slice(want, func(i, j int) bool { return want[i] < want[j] })
	sort.Slice(got, func(i, j int) bool { return got[i] < got[j] })
	if fmt.Sprint(want) != fmt.Sprint(got) {
		t.Fatalf("kamictl webhooks delivered: %v, receiver: %v", got, want)
	}

	// wrongkey took every event (stock.low too); each was refused with 400 and stays pending.
	var rows []outboxRow
	eventually(t, 20*time.Second, "wrongkey's 5 events attempted", func() bool {
		rows = d.outbox(t, "pending", "wrongkey")
		for _, r := range rows {
			if r.Attempts == 0 {
				return false
			}
		}
		return len(rows) == 5
	})
	types := map[string]int{}
	for _, r := range rows {
		types[r.Type]++
		if r.LastError != "HTTP 400" {
			t.Fatalf("wrongkey row %+v, want last_error HTTP 400", r)
		}
	}
	if types[EventOrderDelivered] != 4 || types[EventStockLow] != 1 {
		t.Fatalf("wrongkey events %v", types)
	}
	for _, del := range wrong.deliveries() {
		if del.status != http.StatusBadRequest {
			t.Fatalf("wrongkey answered %d", del.status)
		}
	}
	if _, _, wrongCalls := snapshot(); wrongCalls != 0 {
		t.Fatalf("the handler ran %d times for deliveries with a wrong secret", wrongCalls)
	}
}
