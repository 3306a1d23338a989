package kami

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	whSecret = []byte("whsec_test_0123456789abcdef")
	whNow    = time.Unix(1733390000, 0)
)

const whBody = `{"id":7,"type":"order.delivered","created_ms":1733389999123,` +
	`"data":{"order":"o-1","sku":"netflix-1m","units":1,"state":"committed","code_ids":[12]}}`

// whHeader is what kamid sends with body at ts.
func whHeader(secret []byte, ts int64, body string) http.Header {
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("User-Agent", "kamid-webhooks")
	h.Set(HeaderEventID, "7")
	h.Set(HeaderEventType, "order.delivered")
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, SignWebhook(secret, ts, []byte(body)))
	return h
}

func withHeader(h http.Header, kv ...string) http.Header {
	c := h.Clone()
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == "<delete>" {
			c.Del(kv[i])
		} else {
			c.Set(kv[i], kv[i+1])
		}
	}
	return c
}

// wantRefused checks the error is want and leaks neither secret nor body.
func wantRefused(t *testing.T, err error, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("error %v, want %v", err, want)
	}
	if msg := err.Error(); strings.Contains(msg, string(whSecret)) || strings.Contains(msg, "netflix") {
		t.Fatalf("error leaks the secret or body: %s", msg)
	}
}

func TestWebhookSignatureVector(t *testing.T) {
	const vector = "v1=ac2ca165f25a760320d4257c2242ef4fa79c047676046f46ce73646b8adb28b4"
	if got := SignWebhook(whSecret, 1733390000, []byte(`{"id":1}`)); got != vector {
		t.Fatalf("SignWebhook = %s, want %s", got, vector)
	}
	// The vector's body is not a whole event: the MAC passes, then the JSON check refuses it.
	h := http.Header{HeaderTimestamp: {"1733390000"}, HeaderSignature: {vector}}
	_, err := VerifyWebhook(whSecret, h, []byte(`{"id":1}`), whNow)
	wantRefused(t, err, ErrWebhookBadJSON)
	_, err = VerifyWebhook(whSecret, h, []byte(`{"id":2}`), whNow)
	wantRefused(t, err, ErrWebhookBadSignature)

	ev, err := VerifyWebhook(whSecret, whHeader(whSecret, whNow.Unix(), whBody), []byte(whBody), whNow)
	if err != nil {
		t.Fatal(err)
	}
	if ev.ID != 7 || ev.Type != EventOrderDelivered || ev.CreatedMs != 1733389999123 ||
		!ev.Created().Equal(time.UnixMilli(1733389999123)) {
		t.Fatalf("event %+v", ev)
	}
	var o OrderEvent
	if err := ev.DecodeData(&o); err != nil {
		t.Fatal(err)
	}
	if o.Order != "o-1" || o.SKU != "netflix-1m" || o.Units != 1 || o.State != "committed" ||
		len(o.CodeIDs) != 1 || o.CodeIDs[0] != 12 {
		t.Fatalf("data %+v", o)
	}
}

func TestWebhookRefusesTamperingAndWrongSecret(t *testing.T) {
	h := whHeader(whSecret, whNow.Unix(), whBody)
	mac := strings.TrimPrefix(h.Get(HeaderSignature), "v1=")
	cases := []struct {
		name   string
		secret []byte
		header http.Header
		body   string
		want   error
	}{
		{"tampered body", whSecret, h, strings.Replace(whBody, `"units":1`, `"units":9`, 1), ErrWebhookBadSignature},
		{"trailing byte", whSecret, h, whBody + " ", ErrWebhookBadSignature},
		{"wrong secret", []byte("whsec_another_secret_0123456789"), h, whBody, ErrWebhookBadSignature},
		{"other timestamp", whSecret, withHeader(h, HeaderTimestamp, strconv.FormatInt(whNow.Unix()+1, 10)), whBody, ErrWebhookBadSignature},
		{"other MAC", whSecret, withHeader(h, HeaderSignature, "v1="+strings.Repeat("0", 64)), whBody, ErrWebhookBadSignature},
		{"other scheme", whSecret, withHeader(h, HeaderSignature, "v0="+mac), whBody, ErrWebhookBadHeader},
		{"no scheme", whSecret, withHeader(h, HeaderSignature, mac), whBody, ErrWebhookBadHeader},
		{"short MAC", whSecret, withHeader(h, HeaderSignature, "v1="+mac[1:]), whBody, ErrWebhookBadHeader},
		{"fractional timestamp", whSecret, withHeader(h, HeaderTimestamp, "1733390000.5"), whBody, ErrWebhookBadHeader},
		{"negative timestamp", whSecret, withHeader(h, HeaderTimestamp, "-1"), whBody, ErrWebhookBadHeader},
		{"signed timestamp", whSecret, withHeader(h, HeaderTimestamp, "+1733390000"), whBody, ErrWebhookBadHeader},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := VerifyWebhook(c.secret, c.header, []byte(c.body), whNow)
			wantRefused(t, err, c.want)
		})
	}
}

func TestWebhookTimestampTolerance(t *testing.T) {
	h := whHeader(whSecret, whNow.Unix(), whBody)
	for _, d := range []time.Duration{0, 300 * time.Second, -300 * time.Second} {
		if _, err := VerifyWebhook(whSecret, h, []byte(whBody), whNow.Add(d)); err != nil {
			t.Fatalf("now %+v: %v", d, err)
		}
	}
	for _, d := range []time.Duration{301 * time.Second, 24 * time.Hour, -301 * time.Second, -time.Hour} {
		_, err := VerifyWebhook(whSecret, h, []byte(whBody), whNow.Add(d))
		wantRefused(t, err, ErrWebhookStaleTimestamp)
		if d < 0 && !strings.Contains(err.Error(), "in the future") {
			t.Fatalf("future: %v", err)
		}
	}
	v := WebhookVerifier{Secrets: [][]byte{whSecret}, Tolerance: 10 * time.Minute,
		Now: func() time.Time { return whNow.Add(500 * time.Second) }}
	if _, err := v.Verify(h, []byte(whBody)); err != nil {
		t.Fatalf("wider tolerance: %v", err)
	}
	// A forged stale delivery learns nothing about the clock: the signature is checked first.
	_, err := VerifyWebhook(whSecret, h, []byte(whBody+" "), whNow.Add(24*time.Hour))
	wantRefused(t, err, ErrWebhookBadSignature)
}

func TestWebhookMissingHeadersAndBadJSON(t *testing.T) {
	h := whHeader(whSecret, whNow.Unix(), whBody)
	for _, name := range []string{HeaderTimestamp, HeaderSignature} {
		_, err := VerifyWebhook(whSecret, withHeader(h, name, "<delete>"), []byte(whBody), whNow)
		wantRefused(t, err, ErrWebhookMissingHeader)
		_, err = VerifyWebhook(whSecret, withHeader(h, name, ""), []byte(whBody), whNow)
		wantRefused(t, err, ErrWebhookMissingHeader)
	}
	_, err := VerifyWebhook(whSecret, http.Header{}, []byte(whBody), whNow)
	wantRefused(t, err, ErrWebhookMissingHeader)

	for _, bad := range []string{`not json`, `[1,2]`, `null`, ``, `{"id":"7","type":"x","created_ms":1,"data":{}}`,
		`{"id":7,"type":"x","data":{}}`, `{"id":7,"type":"x","created_ms":1,"data":[1]}`,
		`{"id":0,"type":"x","created_ms":1,"data":{}}`, `{"id":7,"type":"","created_ms":1,"data":{}}`,
		`{"id":7.5,"type":"x","created_ms":1,"data":{}}`, `{"id":7,"type":"x","created_ms":1,"data":null}`,
		`{"id":7,"type":"x","created_ms":1,"data":{}} trailing`} {
		_, err := VerifyWebhook(whSecret, withHeader(whHeader(whSecret, whNow.Unix(), bad), HeaderEventType, "<delete>"), []byte(bad), whNow)
		wantRefused(t, err, ErrWebhookBadJSON)
	}
	_, err = VerifyWebhook(whSecret, withHeader(h, HeaderEventID, "8"), []byte(whBody), whNow)
	wantRefused(t, err, ErrWebhookHeaderMismatch)
	_, err = VerifyWebhook(whSecret, withHeader(h, HeaderEventType, EventOrderRefunded), []byte(whBody), whNow)
	wantRefused(t, err, ErrWebhookHeaderMismatch)

	// The id and type headers are not signed: the body alone is enough.
	bare := http.Header{HeaderTimestamp: h.Values(HeaderTimestamp), HeaderSignature: h.Values(HeaderSignature)}
	if ev, err := VerifyWebhook(whSecret, bare, []byte(whBody), whNow); err != nil || ev.ID != 7 {
		t.Fatalf("bare: %+v %v", ev, err)
	}
	// A type this client does not know, and a field a later kamid adds, are accepted.
	later := `{"id":3,"type":"x.y","created_ms":5,"data":{"order":1},"new":true}`
	if ev, err := VerifyWebhook(whSecret, withHeader(whHeader(whSecret, whNow.Unix(), later), HeaderEventID, "3",
		HeaderEventType, "x.y"), []byte(later), whNow); err != nil || ev.Type != "x.y" || string(ev.Data) != `{"order":1}` {
		t.Fatalf("later kamid: %+v %v", ev, err)
	}
}

func TestWebhookRotatedSecrets(t *testing.T) {
	next := []byte("whsec_new_secret_after_rotation")
	h := whHeader(whSecret, whNow.Unix(), whBody)
	v := WebhookVerifier{Secrets: [][]byte{next, whSecret}, Now: func() time.Time { return whNow }}
	if _, err := v.Verify(h, []byte(whBody)); err != nil {
		t.Fatalf("old secret while rotating: %v", err)
	}
	both := withHeader(h, HeaderSignature, SignWebhook(next, whNow.Unix(), []byte(whBody))+", "+h.Get(HeaderSignature))
	if _, err := VerifyWebhook(whSecret, both, []byte(whBody), whNow); err != nil {
		t.Fatalf("one of several v1 entries: %v", err)
	}
	_, err := VerifyWebhook(next, h, []byte(whBody), whNow)
	wantRefused(t, err, ErrWebhookBadSignature)
	for _, bad := range [][]byte{nil, []byte("short")} {
		func() {
			defer func() {
				if recover() == nil {
					t.Fatalf("secret %q: no panic", bad)
				}
			}()
			VerifyWebhook(bad, h, []byte(whBody), whNow)
		}()
	}
}

func TestWebhookHandlerStatuses(t *testing.T) {
	var got []Event
	fail := false
	var h http.Handler = WebhookHandler(whSecret, func(e Event) error {
		if fail {
			return errors.New("database down")
		}
		got = append(got, e)
		return nil
	})
	now := time.Now().Unix()
	send := func(method string, header http.Header, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, "/kami/webhooks", strings.NewReader(body))
		for k, v := range header {
			r.Header[k] = v
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	if w := send("POST", whHeader(whSecret, now, whBody), whBody); w.Code != http.StatusNoContent || len(got) != 1 || got[0].ID != 7 {
		t.Fatalf("good delivery: %d %q, events %+v", w.Code, w.Body.String(), got)
	}
	w := send("POST", whHeader(whSecret, now, whBody), whBody+" ")
	if w.Code != http.StatusBadRequest || !strings.Contains(w.Body.String(), "bad signature") || len(got) != 1 {
		t.Fatalf("tampered: %d %q", w.Code, w.Body.String())
	}
	if w := send("POST", whHeader(whSecret, now-3600, whBody), whBody); w.Code != http.StatusBadRequest {
		t.Fatalf("stale: %d", w.Code)
	}
	if w := send("GET", nil, ""); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "POST" {
		t.Fatalf("GET: %d", w.Code)
	}
	big := strings.Repeat("x", WebhookBodyMax+1)
	if w := send("POST", whHeader(whSecret, now, big), big); w.Code != http.StatusRequestEntityTooLarge {
		t.Fatalf("big: %d", w.Code)
	}
	fail = true
	w = send("POST", whHeader(whSecret, now, whBody), whBody)
	if w.Code != http.StatusInternalServerError || strings.Contains(w.Body.String(), "database") {
		t.Fatalf("handler failure: %d %q", w.Code, w.Body.String())
	}
}
