package kami

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The integration tests start a real kamid from $KAMID and load codes with $KAMICTL
// (test.sh sets both). Without them they are skipped.

type daemon struct {
	t        *testing.T
	dir      string
	port     string
	cmd      *exec.Cmd
	done     chan struct{}
	stderrMu sync.Mutex
	stderr   strings.Builder
}

func binaries(t *testing.T) (string, string) {
	kamid, kamictl := os.Getenv("KAMID"), os.Getenv("KAMICTL")
	if kamid == "" || kamictl == "" {
		t.Skip("integration test skipped: set KAMID and KAMICTL to the kamid and kamictl binaries (clients/go/test.sh does)")
	}
	for _, p := range []string{kamid, kamictl} {
		if st, err := os.Stat(p); err != nil || st.IsDir() {
			t.Skipf("integration test skipped: %s is not a binary (%v)", p, err)
		}
	}
	return kamid, kamictl
}

var readyPort = regexp.MustCompile(`tcp=([0-9]+)`)

// startDaemon starts kamid on 127.0.0.1:port (port "0" for any) over dir and waits for
// its ready line. extra are more arguments (a --config FILE).
func startDaemon(t *testing.T, dir, port string, extra ...string) (*daemon, error) {
	kamid, _ := binaries(t)
	d := &daemon{t: t, dir: dir, done: make(chan struct{})}
	args := []string{"--data-dir", dir, "--listen", "127.0.0.1:" + port, "--durability", "full", "--metrics-listen", "off"}
	d.cmd = exec.Command(kamid, append(args, extra...)...)
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	pipe, err := d.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := d.cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			line := sc.Text()
			d.stderrMu.Lock()
			d.stderr.WriteString(line + "\n")
			d.stderrMu.Unlock()
			if strings.Contains(line, "ready") {
				if m := readyPort.FindStringSubmatch(line); m != nil {
					select {
					case ready <- m[1]:
					default:
					}
				}
			}
		}
	}()
	go func() { d.cmd.Wait(); close(d.done) }()
	select {
	case d.port = <-ready:
		return d, nil
	case <-d.done:
		return nil, fmt.Errorf("kamid exited before ready:\n%s", d.log())
	case <-time.After(30 * time.Second):
		d.kill()
		return nil, fmt.Errorf("kamid not ready in 30s:\n%s", d.log())
	}
}

func (d *daemon) log() string {
	d.stderrMu.Lock()
	defer d.stderrMu.Unlock()
	return d.stderr.String()
}

func (d *daemon) kill() {
	if d.cmd.Process != nil {
		d.cmd.Process.Signal(syscall.SIGKILL)
	}
	select {
	case <-d.done:
	case <-time.After(10 * time.Second):
		d.t.Errorf("kamid pid %d did not exit", d.cmd.Process.Pid)
	}
}

func (d *daemon) addr() string { return "127.0.0.1:" + d.port }

func (d *daemon) token(t *testing.T) string {
	b, err := os.ReadFile(filepath.Join(d.dir, "default.token"))
	if err != nil {
		t.Fatalf("token: %v", err)
	}
	return strings.TrimSpace(string(b))
}

func (d *daemon) ctl(t *testing.T, args ...string) string {
	t.Helper()
	_, kamictl := binaries(t)
	args = append([]string{"--socket", filepath.Join(d.dir, "kamid.sock")}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, kamictl, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("kamictl %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// operator sends one operator request as a JSON line over kamid's Unix socket (for fields
// kamictl has no flag for) and returns the reply; a refusal fails the test.
func (d *daemon) operator(t *testing.T, req map[string]any) map[string]any {
	t.Helper()
	conn, err := net.DialTimeout("unix", filepath.Join(d.dir, "kamid.sock"), 5*time.Second)
	if err != nil {
		t.Fatalf("unix socket: %v", err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	req["id"] = 1
	line, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Write(append(line, '\n')); err != nil {
		t.Fatalf("unix socket: %v", err)
	}
	reply, err := bufio.NewReader(conn).ReadBytes('\n')
	if err != nil {
		t.Fatalf("%v: no reply: %v", req["op"], err)
	}
	var m map[string]any
	if err := json.Unmarshal(reply, &m); err != nil || m["ok"] != true {
		t.Fatalf("%v refused: %s (%v)", req["op"], reply, err)
	}
	return m
}

// addCodes creates sku with the given per-user limit and imports n codes; it returns
// their secrets.
func (d *daemon) addCodes(t *testing.T, sku string, limit, n int) map[string]bool {
	t.Helper()
	d.ctl(t, "sku", "set", sku, "--price", "990", "--per-user-limit", fmt.Sprint(limit))
	secrets := map[string]bool{}
	var b strings.Builder
	b.WriteString("secret,card_number\n")
	for i := 0; i < n; i++ {
		s := fmt.Sprintf("%s-SECRET-%04d", strings.ToUpper(sku), i)
		secrets[s] = true
		fmt.Fprintf(&b, "%s,\n", s)
	}
	path := filepath.Join(d.dir, sku+".csv")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	out := d.ctl(t, "import", path, "--sku", sku)
	if !strings.Contains(out, fmt.Sprintf("imported %d code", n)) {
		t.Fatalf("import: %s", out)
	}
	return secrets
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func secretsOf(o *Order) []string {
	var s []string
	for _, c := range o.Codes {
		s = append(s, c.Secret.Reveal())
	}
	return s
}

func wantCode(t *testing.T, err error, code Code) {
	t.Helper()
	if !errors.Is(err, code) {
		t.Fatalf("error %v, want %s", err, code)
	}
	var ke *Error
	if !errors.As(err, &ke) || ke.Code != code {
		t.Fatalf("errors.As: %v", err)
	}
}

func TestIntegration(t *testing.T) {
	binaries(t)
	dir := t.TempDir()
	d, err := startDaemon(t, dir, "0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.kill() })

	opts := Options{Token: d.token(t), MaxConns: 4, MaxRetries: 8, RetryBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond}
	c, err := Dial(ctxT(t, 10*time.Second), d.addr(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if s := c.Server(); s == nil || !s.HasFeature("binary") {
		t.Fatalf("hello: %+v", s)
	}

	t.Run("BadToken", func(t *testing.T) {
		bad := NewClient(d.addr(), Options{Token: "nope"})
		defer bad.Close()
		wantCode(t, bad.Ping(ctxT(t, 5*time.Second)), Unauthorized)
	})

	t.Run("IssueIdempotentLimitNotFound", func(t *testing.T) {
		secrets := d.addCodes(t, "vip", 2, 5)
		ctx := ctxT(t, 20*time.Second)
		req := IssueRequest{Order: "A1", User: "alice", SKU: "vip", Qty: 2, PaymentRef: "pay-1"}
		o, err := c.Issue(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if o.State != StateCommitted || o.ID != "A1" || o.Qty != 2 || len(o.Codes) != 2 {
			t.Fatalf("order %+v", o)
		}
		for _, s := range secretsOf(o) {
			if !secrets[s] {
				t.Fatalf("secret %q was not imported", s)
			}
		}
		if strings.Contains(fmt.Sprintf("%v %+v", o, o), "VIP-SECRET") {
			t.Fatal("a secret prints with fmt")
		}
		again, err := c.Issue(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(secretsOf(again)) != fmt.Sprint(secretsOf(o)) || again.Codes[0].ID != o.Codes[0].ID {
			t.Fatalf("repeat gave other codes: %v vs %v", secretsOf(again), secretsOf(o))
		}
		look, err := c.Order(ctx, "A1", "alice", "")
		if err != nil || fmt.Sprint(secretsOf(look)) != fmt.Sprint(secretsOf(o)) {
			t.Fatalf("order lookup %+v %v", look, err)
		}
		// Over the per-user limit (2 units of vip).
		_, err = c.Issue(ctx, IssueRequest{Order: "A2", User: "alice", SKU: "vip", Qty: 1, PaymentRef: "pay-2"})
		wantCode(t, err, LimitReached)
		// Same id, other arguments.
		_, err = c.Issue(ctx, IssueRequest{Order: "A1", User: "alice", SKU: "vip", Qty: 1, PaymentRef: "pay-1"})
		wantCode(t, err, Conflict)
		// Unknown order, and another user's.
		_, err = c.Order(ctx, "no-such-order", "alice", "")
		wantCode(t, err, NotFound)
		_, err = c.Order(ctx, "A1", "mallory", "")
		wantCode(t, err, NotFound)
		if err != nil && strings.Contains(err.Error(), "VIP-SECRET") {
			t.Fatal("secret in an error")
		}
		_, err = c.Stock(ctx, "no-such-sku")
		wantCode(t, err, NotFound)
		ents, err := c.Entitlements(ctx, EntitlementsRequest{User: "alice"})
		if err != nil || len(ents.Codes) != 2 || ents.Codes[0].Order != "A1" || !secrets[ents.Codes[0].Secret.Reveal()] {
			t.Fatalf("entitlements %+v %v", ents, err)
		}
	})

	t.Run("SoldOut", func(t *testing.T) {
		d.addCodes(t, "tiny", 0, 1)
		ctx := ctxT(t, 20*time.Second)
		if _, err := c.Issue(ctx, IssueRequest{Order: "T1", User: "u1", SKU: "tiny", Qty: 1, PaymentRef: "p1"}); err != nil {
			t.Fatal(err)
		}
		_, err := c.Issue(ctx, IssueRequest{Order: "T2", User: "u2", SKU: "tiny", Qty: 1, PaymentRef: "p2"})
		wantCode(t, err, SoldOut)
		_, err = c.Reserve(ctx, ReserveRequest{Order: "T3", User: "u3", SKU: "tiny", Qty: 1})
		wantCode(t, err, SoldOut)
	})

	t.Run("ReserveCommitRelease", func(t *testing.T) {
		secrets := d.addCodes(t, "rc", 0, 3)
		ctx := ctxT(t, 20*time.Second)
		r, err := c.Reserve(ctx, ReserveRequest{Order: "R1", User: "bob", SKU: "rc", Qty: 1, TTL: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		if r.State != StateReserved || r.ExpiresAtMs <= time.Now().UnixMilli() {
			t.Fatalf("reserve %+v", r)
		}
		for _, code := range r.Codes {
			if code.HasSecret {
				t.Fatal("a reserved order shows a secret")
			}
		}
		st, _ := c.Stock(ctx, "rc")
		if st == nil || st.Reserved != 1 || st.Available != 2 {
			t.Fatalf("stock after reserve %+v", st)
		}
		cm, err := c.Commit(ctx, CommitRequest{Order: "R1", PaymentRef: "pay-r1", User: "bob"})
		if err != nil {
			t.Fatal(err)
		}
		if cm.State != StateCommitted || len(cm.Codes) != 1 || !secrets[cm.Codes[0].Secret.Reveal()] {
			t.Fatalf("commit %+v", cm)
		}
		again, err := c.Commit(ctx, CommitRequest{Order: "R1", PaymentRef: "pay-r1"})
		if err != nil || again.Codes[0].ID != cm.Codes[0].ID {
			t.Fatalf("repeated commit %+v %v", again, err)
		}
		_, err = c.Commit(ctx, CommitRequest{Order: "R1", PaymentRef: "pay-other"})
		wantCode(t, err, Conflict)

		if _, err := c.Reserve(ctx, ReserveRequest{Order: "R2", User: "bob", SKU: "rc", Qty: 2}); err != nil {
			t.Fatal(err)
		}
		rel, err := c.Release(ctx, "R2")
		if err != nil || rel.State != StateReleased {
			t.Fatalf("release %+v %v", rel, err)
		}
		_, err = c.Commit(ctx, CommitRequest{Order: "R2", PaymentRef: "pay-r2"})
		wantCode(t, err, InvalidState)
		_, err = c.Release(ctx, "R1") // paid
		wantCode(t, err, InvalidState)
		_, err = c.Release(ctx, "nope")
		wantCode(t, err, NotFound)
		st, _ = c.Stock(ctx, "rc")
		if st == nil || st.Available != 2 || st.Reserved != 0 || st.Issued != 1 {
			t.Fatalf("stock after release %+v", st)
		}
	})

	t.Run("Concurrent32", func(t *testing.T) {
		const codes, workers, perWorker = 64, 32, 3
		secrets := d.addCodes(t, "flash", 0, codes)
		ctx := ctxT(t, 60*time.Second)
		var mu sync.Mutex
		seenID := map[int64]string{}
		seenSecret := map[string]bool{}
		soldOut, ok := 0, 0
		var wg sync.WaitGroup
		errs := make(chan error, workers*perWorker)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < perWorker; i++ {
					order := fmt.Sprintf("F-%d-%d", w, i)
					o, err := c.Issue(ctx, IssueRequest{Order: order, User: fmt.Sprintf("fu%d", w), SKU: "flash", Qty: 1, PaymentRef: "p-" + order})
					mu.Lock()
					switch {
					case errors.Is(err, SoldOut):
						soldOut++
					case err != nil:
						errs <- fmt.Errorf("%s: %w", order, err)
					default:
						ok++
						for _, code := range o.Codes {
							if prev, dup := seenID[code.ID]; dup {
								errs <- fmt.Errorf("code %d issued to %s and %s", code.ID, prev, order)
							}
							seenID[code.ID] = order
							s := code.Secret.Reveal()
							if seenSecret[s] || !secrets[s] {
								errs <- fmt.Errorf("secret of code %d duplicated or unknown", code.ID)
							}
							seenSecret[s] = true
						}
					}
					mu.Unlock()
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if ok != codes || soldOut != workers*perWorker-codes || len(seenID) != codes {
			t.Fatalf("ok %d sold out %d distinct %d", ok, soldOut, len(seenID))
		}
		st, err := c.Stock(ctx, "flash")
		if err != nil || st.Issued != codes || st.Available != 0 || st.Reserved != 0 || st.Imported != codes {
			t.Fatalf("stock %+v %v", st, err)
		}
		if ps := c.PoolStats(); ps.Conns > opts.MaxConns {
			t.Fatalf("pool grew past its bound: %+v", ps)
		}
	})

	t.Run("WaitDeadline", func(t *testing.T) {
		d.ctl(t, "sku", "set", "manual", "--price", "100", "--manual-delivery", "on")
		ctx := ctxT(t, 20*time.Second)
		o, err := c.Issue(ctx, IssueRequest{Order: "M1", User: "carol", SKU: "manual", Qty: 1, PaymentRef: "pm"})
		if err != nil {
			t.Fatal(err)
		}
		if o.State != StateReview || len(o.Codes) != 0 {
			t.Fatalf("manual order %+v", o)
		}
		short, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err = c.Wait(short, "M1", "carol", 10*time.Second)
		took := time.Since(start)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("wait: %v, want context.DeadlineExceeded", err)
		}
		if took > 1500*time.Millisecond {
			t.Fatalf("wait returned after %v", took)
		}
		// A wait that runs out on the server answers the order still in review.
		w, err := c.Wait(ctx, "M1", "carol", 200*time.Millisecond)
		if err != nil || w.State != StateReview {
			t.Fatalf("short wait %+v %v", w, err)
		}
		_, err = c.Wait(ctx, "nope", "carol", 0)
		wantCode(t, err, NotFound)
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("pool after a cancelled wait: %v", err)
		}
	})

	t.Run("Activation", func(t *testing.T) { testActivation(t, d, c) })

	t.Run("RestartRecovers", func(t *testing.T) {
		d.addCodes(t, "after", 0, 4)
		ctx := ctxT(t, 60*time.Second)
		req := IssueRequest{Order: "X1", User: "dave", SKU: "after", Qty: 2, PaymentRef: "px"}
		before, err := c.Issue(ctx, req)
		if err != nil {
			t.Fatal(err)
		}
		port := d.port
		d.kill() // SIGKILL: a crash; the committed order is on disk
		// While kamid is down a call fails with a network error once its retries run out.
		down := NewClient("127.0.0.1:"+port, Options{Token: opts.Token, MaxRetries: 1})
		err = down.Ping(ctxT(t, 5*time.Second))
		down.Close()
		if !IsNetwork(err) {
			t.Fatalf("kamid down: %v, want a network error", err)
		}
		var d2 *daemon
		for i := 0; i < 20; i++ { // the port may be briefly unavailable
			if d2, err = startDaemon(t, dir, port); err == nil {
				break
			}
			time.Sleep(250 * time.Millisecond)
		}
		if err != nil {
			t.Fatalf("restart on port %s: %v", port, err)
		}
		t.Cleanup(func() { d2.kill() })
		*d = daemon{t: t, dir: dir, port: d2.port, cmd: d2.cmd, done: d2.done}
		after, err := c.Issue(ctx, req) // the same pooled client: its old connections are dead
		if err != nil {
			t.Fatalf("issue after restart: %v", err)
		}
		if fmt.Sprint(secretsOf(after)) != fmt.Sprint(secretsOf(before)) || after.State != StateCommitted {
			t.Fatalf("after restart %v, before %v", secretsOf(after), secretsOf(before))
		}
		st, err := c.Stock(ctx, "after")
		if err != nil || st.Issued != 2 || st.Available != 2 {
			t.Fatalf("stock after restart %+v %v", st, err)
		}
	})
}

const usageGuide = "打开 App → 我的 → 兑换\n输入卡密"

func byID(codes []Entitlement) map[int64]Entitlement {
	m := map[int64]Entitlement{}
	for _, x := range codes {
		m[x.ID] = x
	}
	return m
}

// tokenOf returns the t parameter of an activation link made from the template
// https://brand.example/redeem?t={token}.
func tokenOf(t *testing.T, link string) string {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil || u.Host != "brand.example" || u.Path != "/redeem" || u.Query().Get("t") == "" {
		t.Fatalf("activation link %q (%v)", link, err)
	}
	return u.Query().Get("t")
}

// testActivation: activate by order and by token, and the buyer's view in entitlements
// (the binary trailing block: status, SKU name, a multi-line Chinese usage guide, times).
func testActivation(t *testing.T, d *daemon, c *Client) {
	d.addCodes(t, "act", 0, 8)
	sku := d.operator(t, map[string]any{"op": "sku_set", "sku": "act", "name": "月卡 act",
		"activation_url": "https://brand.example/redeem?t={token}", "usage_guide": usageGuide})
	if sku["usage_guide"] != usageGuide {
		t.Fatalf("sku_set: %v", sku)
	}
	ctx := ctxT(t, 30*time.Second)
	v1, err := c.Issue(ctx, IssueRequest{Order: "V1", User: "kim", SKU: "act", Qty: 2, PaymentRef: "pay-v1"})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := c.Issue(ctx, IssueRequest{Order: "V2", User: "kim", SKU: "act", Qty: 1, PaymentRef: "pay-v2"})
	if err != nil {
		t.Fatal(err)
	}
	first, second := v1.Codes[0].ID, v1.Codes[1].ID
	now := time.Now().UnixMilli()
	near := func(ms int64) bool { return ms > now-60000 && ms < now+60000 }

	t.Run("ByOrder", func(t *testing.T) {
		got, err := c.Activate(ctx, "V1", "kim", first, "203.0.113.7")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Fatalf("activated %+v", got)
		}
		a := got[0]
		if a.ID != first || a.Order != "V1" || a.SKU != "act" || a.State != CodeUsed || a.Status != StatusUsed ||
			a.HasSecret || a.ActivationURL != "" || !near(a.UsedAtMs) {
			t.Fatalf("activated %+v", a)
		}
		again, err := c.Activate(ctx, "V1", "kim", first, "")
		if err != nil || len(again) != 1 || again[0].UsedAtMs != a.UsedAtMs || again[0].State != CodeUsed {
			t.Fatalf("repeat %+v %v (first used at %d)", again, err, a.UsedAtMs)
		}

		_, errOther := c.Activate(ctx, "V1", "mallory", 0, "")
		wantCode(t, errOther, NotFound)
		_, errUnknown := c.Activate(ctx, "V9", "kim", 0, "")
		wantCode(t, errUnknown, NotFound)
		var eo, eu *Error
		errors.As(errOther, &eo)
		errors.As(errUnknown, &eu)
		if strings.ReplaceAll(eo.Message, "V1", "ID") != strings.ReplaceAll(eu.Message, "V9", "ID") {
			t.Fatalf("another user's order %q, an unknown one %q", eo.Message, eu.Message)
		}
		_, err = c.Activate(ctx, "V1", "kim", v2.Codes[0].ID, "")
		wantCode(t, err, NotFound)
		_, err = c.Activate(ctx, "V1", "kim", 999999, "")
		wantCode(t, err, NotFound)

		ents, err := c.Entitlements(ctx, EntitlementsRequest{User: "kim"})
		if err != nil {
			t.Fatal(err)
		}
		if len(ents.Codes) != 3 || ents.Codes[0].ID != v2.Codes[0].ID || ents.Codes[0].OrderedAtMs < ents.Codes[2].OrderedAtMs {
			t.Fatalf("entitlements not newest first: %+v", ents.Codes)
		}
		lines := byID(ents.Codes)
		if u := lines[first]; u.State != CodeUsed || u.Status != StatusUsed || u.UsedAtMs != a.UsedAtMs || !u.HasSecret {
			t.Fatalf("activated line %+v", u)
		}
		if o := lines[second]; o.State != CodeIssued || o.Status != StatusDelivered || o.UsedAtMs != 0 {
			t.Fatalf("other line %+v", o)
		}
		for _, x := range ents.Codes {
			if x.SKUName != "月卡 act" || x.UsageGuide != usageGuide || x.ExpiresAtMs != 0 || !near(x.OrderedAtMs) {
				t.Fatalf("buyer's view %+v", x)
			}
		}

		all, err := c.Activate(ctx, "V1", "kim", 0, "")
		if err != nil || len(all) != 2 {
			t.Fatalf("every code: %+v %v", all, err)
		}
		m := byID(all)
		if m[first].UsedAtMs != a.UsedAtMs || m[second].State != CodeUsed || m[second].UsedAtMs == 0 {
			t.Fatalf("every code: %+v", all)
		}
		ents, err = c.Entitlements(ctx, EntitlementsRequest{User: "kim"})
		if err != nil || byID(ents.Codes)[v2.Codes[0].ID].Status != StatusDelivered {
			t.Fatalf("the other order: %+v %v", ents, err)
		}
	})

	t.Run("ByToken", func(t *testing.T) {
		o, err := c.Issue(ctx, IssueRequest{Order: "V3", User: "lee", SKU: "act", Qty: 2, PaymentRef: "pay-v3"})
		if err != nil {
			t.Fatal(err)
		}
		keep, target := o.Codes[0], o.Codes[1]
		tokenOf(t, keep.ActivationURL)
		token := tokenOf(t, target.ActivationURL)
		last := token[len(token)-1]
		flip := byte('0')
		if last == '0' {
			flip = '1'
		}
		_, err = c.ActivateToken(ctx, token[:len(token)-1]+string(flip), "")
		wantCode(t, err, NotFound)
		_, err = c.ActivateToken(ctx, "not-a-token", "203.0.113.8")
		wantCode(t, err, NotFound)

		got, err := c.ActivateToken(ctx, token, "203.0.113.8")
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].ID != target.ID || got[0].Order != "V3" || got[0].State != CodeUsed || got[0].HasSecret || got[0].UsedAtMs == 0 {
			t.Fatalf("by token %+v", got)
		}
		again, err := c.ActivateToken(ctx, token, "")
		if err != nil || len(again) != 1 || again[0].UsedAtMs != got[0].UsedAtMs {
			t.Fatalf("repeat %+v %v", again, err)
		}
		ents, err := c.Entitlements(ctx, EntitlementsRequest{User: "lee"})
		if err != nil {
			t.Fatal(err)
		}
		lines := byID(ents.Codes)
		if x := lines[target.ID]; x.Status != StatusUsed || x.UsedAtMs != got[0].UsedAtMs {
			t.Fatalf("the token's code %+v", x)
		}
		if x := lines[keep.ID]; x.Status != StatusDelivered || x.State != CodeIssued || x.UsedAtMs != 0 {
			t.Fatalf("the order's other code %+v", x)
		}
	})

	t.Run("PendingLine", func(t *testing.T) {
		d.operator(t, map[string]any{"op": "sku_set", "sku": "byhand", "name": "手动 byhand", "price_cents": 100, "manual_delivery": true})
		o, err := c.Issue(ctx, IssueRequest{Order: "P1", User: "ned", SKU: "byhand", Qty: 2, PaymentRef: "pay-p1"})
		if err != nil || o.State != StateReview {
			t.Fatalf("manual order %+v %v", o, err)
		}
		ents, err := c.Entitlements(ctx, EntitlementsRequest{User: "ned"})
		if err != nil || len(ents.Codes) != 1 {
			t.Fatalf("entitlements %+v %v", ents, err)
		}
		x := ents.Codes[0]
		if x.ID != 0 || x.Order != "P1" || x.State != CodeReserved || x.Status != StatusPending || x.SKUName != "手动 byhand" ||
			x.UsageGuide != "" || x.HasSecret || x.OrderedAtMs == 0 {
			t.Fatalf("pending line %+v", x)
		}
		_, err = c.Activate(ctx, "P1", "ned", 0, "")
		wantCode(t, err, InvalidState)
	})
}
