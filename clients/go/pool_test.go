package kami

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeServer is a scripted kamid on 127.0.0.1: it answers hello itself and hands every
// other frame to handle, which writes replies (or not) on the connection.
type fakeServer struct {
	ln     net.Listener
	conns  int32
	mu     sync.Mutex
	frames []frameHeader
}

type fakeFrame struct {
	h       frameHeader
	payload []byte
}

func newFakeServer(t *testing.T, handle func(s *fakeServer, c net.Conn, connNo int, f fakeFrame) bool) *fakeServer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &fakeServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			n := int(atomic.AddInt32(&s.conns, 1))
			go func() {
				defer c.Close()
				for {
					hdr := make([]byte, 12)
					if _, err := io.ReadFull(c, hdr); err != nil {
						return
					}
					h, err := parseHeader(hdr, frameBytesMax)
					if err != nil {
						return
					}
					p := make([]byte, h.length)
					if _, err := io.ReadFull(c, p); err != nil {
						return
					}
					if h.op == opHello {
						c.Write(replyFrame(opHello, 0, h.id, nil))
						continue
					}
					s.mu.Lock()
					s.frames = append(s.frames, h)
					s.mu.Unlock()
					if !handle(s, c, n, fakeFrame{h, p}) {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *fakeServer) count(op uint8) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, f := range s.frames {
		if f.op == op {
			n++
		}
	}
	return n
}

func replyFrame(op, status uint8, id uint32, payload []byte) []byte {
	w := newFrame(op, id)
	w.b[3] = status
	w.b = append(w.b, payload...)
	b, _ := w.finish()
	return b
}

func stockPayload(sku string, avail int64) []byte {
	w := &writer{}
	w.str("sku", sku)
	for _, v := range []int64{avail, 0, 0, 0, avail} {
		w.i64(v)
	}
	return w.b
}

func errPayload(msg string) []byte {
	w := &writer{}
	w.str("message", msg)
	return w.b
}

func fastOpts() Options {
	return Options{MaxConns: 1, MaxRetries: 3, RetryBackoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond}
}

// Replies out of request order are matched by id.
func TestPipelinedRepliesMatchedByID(t *testing.T) {
	var mu sync.Mutex
	var held *fakeFrame
	s := newFakeServer(t, func(s *fakeServer, c net.Conn, _ int, f fakeFrame) bool {
		r := &reader{b: f.payload}
		sku := r.str("sku")
		mu.Lock()
		defer mu.Unlock()
		if held == nil {
			held = &f
			return true
		}
		first := &reader{b: held.payload}
		c.Write(replyFrame(opStock, 0, f.h.id, stockPayload(sku, 2)))
		c.Write(replyFrame(opStock, 0, held.h.id, stockPayload(first.str("sku"), 1)))
		held = nil
		return true
	})
	c := NewClient(s.ln.Addr().String(), fastOpts())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, sku := range []string{"a", "b"} {
		wg.Add(1)
		go func(sku string) {
			defer wg.Done()
			st, err := c.Stock(ctx, sku)
			if err != nil || st.SKU != sku {
				t.Errorf("stock %s: %+v %v", sku, st, err)
			}
		}(sku)
	}
	wg.Wait()
	if n := atomic.LoadInt32(&s.conns); n != 1 {
		t.Fatalf("%d connections, want 1 (pipelined)", n)
	}
}

// A connection that breaks under an issue is discarded and the issue is sent again, with
// the same order id, on a new one.
func TestIssueRetriedAfterBrokenConnection(t *testing.T) {
	s := newFakeServer(t, func(s *fakeServer, c net.Conn, connNo int, f fakeFrame) bool {
		if connNo == 1 {
			return false // drop the connection without a reply
		}
		w := &writer{}
		w.str("order", "A1")
		w.u8(1)
		w.str("sku", "vip")
		w.u32(1)
		w.i64(0)
		w.u16(0)
		c.Write(replyFrame(f.h.op, 0, f.h.id, w.b))
		return true
	})
	c := NewClient(s.ln.Addr().String(), fastOpts())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	o, err := c.Issue(ctx, IssueRequest{Order: "A1", User: "u", SKU: "vip", Qty: 1, PaymentRef: "p"})
	if err != nil || o.ID != "A1" {
		t.Fatalf("%+v %v", o, err)
	}
	if s.count(opIssue) != 2 || atomic.LoadInt32(&s.conns) != 2 {
		t.Fatalf("issues %d conns %d", s.count(opIssue), s.conns)
	}
}

// Risk changes counters on the server: it is not repeated after a network error.
func TestRiskNotRetried(t *testing.T) {
	s := newFakeServer(t, func(*fakeServer, net.Conn, int, fakeFrame) bool { return false })
	c := NewClient(s.ln.Addr().String(), fastOpts())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err := c.Risk(ctx, RiskRequest{Event: "login"})
	var ne *NetError
	if !errors.As(err, &ne) || !IsNetwork(err) {
		t.Fatalf("err %v, want a NetError", err)
	}
	if s.count(opRisk) != 1 {
		t.Fatalf("risk sent %d times", s.count(opRisk))
	}
}

// BUSY is retried with the same request; the retries are bounded.
func TestBusyRetriedAndBounded(t *testing.T) {
	var busy int32 = 2
	s := newFakeServer(t, func(s *fakeServer, c net.Conn, _ int, f fakeFrame) bool {
		if atomic.AddInt32(&busy, -1) >= 0 {
			c.Write(replyFrame(f.h.op, uint8(Busy), f.h.id, errPayload("busy")))
			return true
		}
		c.Write(replyFrame(f.h.op, 0, f.h.id, stockPayload("vip", 3)))
		return true
	})
	c := NewClient(s.ln.Addr().String(), fastOpts())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := c.Stock(ctx, "vip"); err != nil || st.Available != 3 {
		t.Fatalf("%+v %v", st, err)
	}
	atomic.StoreInt32(&busy, 100)
	_, err := c.Stock(ctx, "vip")
	if !errors.Is(err, Busy) {
		t.Fatalf("err %v, want BUSY", err)
	}
	if n := s.count(opStock); n != 3+4 {
		t.Fatalf("%d stock frames, want 7 (1+3 retries after 3 first)", n)
	}
}

// A deadline returns DeadlineExceeded at once even when the server never answers, and the
// abandoned connection is not reused.
func TestDeadlineAndAbandonedConnection(t *testing.T) {
	s := newFakeServer(t, func(s *fakeServer, c net.Conn, connNo int, f fakeFrame) bool {
		if connNo == 1 {
			return true // never answers
		}
		c.Write(replyFrame(f.h.op, 0, f.h.id, nil))
		return true
	})
	c := NewClient(s.ln.Addr().String(), fastOpts())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := c.Ping(ctx)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("err %v after %v", err, time.Since(start))
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel2()
	if err := c.Ping(ctx2); err != nil {
		t.Fatalf("ping on a fresh connection: %v", err)
	}
	if n := atomic.LoadInt32(&s.conns); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}

// A garbage reply breaks the connection with an error, not a panic.
func TestGarbageReplyBreaksConnection(t *testing.T) {
	s := newFakeServer(t, func(s *fakeServer, c net.Conn, connNo int, f fakeFrame) bool {
		if connNo == 1 {
			c.Write([]byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4, 5, 6, 7, 8})
			return true
		}
		c.Write(replyFrame(f.h.op, 0, f.h.id, stockPayload("vip", 1)))
		return true
	})
	o := fastOpts()
	o.MaxRetries = -1
	c := NewClient(s.ln.Addr().String(), o)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Stock(ctx, "vip"); !IsNetwork(err) || !errors.Is(err, ErrProtocol) {
		t.Fatalf("err %v, want a network error wrapping ErrProtocol", err)
	}
	if _, err := c.Stock(ctx, "vip"); err != nil {
		t.Fatalf("after garbage: %v", err)
	}
	// A truncated successful reply is an error too.
	s2 := newFakeServer(t, func(s *fakeServer, c net.Conn, _ int, f fakeFrame) bool {
		c.Write(replyFrame(f.h.op, 0, f.h.id, stockPayload("vip", 1)[:9]))
		return true
	})
	c2 := NewClient(s2.ln.Addr().String(), o)
	defer c2.Close()
	if _, err := c2.Stock(ctx, "vip"); !errors.Is(err, ErrProtocol) {
		t.Fatalf("truncated reply: %v", err)
	}
}

func TestClosedClient(t *testing.T) {
	c := NewClient("127.0.0.1:1", Options{})
	c.Close()
	if err := c.Ping(context.Background()); !errors.Is(err, ErrClosed) {
		t.Fatalf("%v", err)
	}
}

// Activate is idempotent: retried after a broken connection with the same request. An
// activation token past its time is Expired, at once, not retried.
func TestActivateRetriedExpiredNot(t *testing.T) {
	var mu sync.Mutex
	var payloads [][]byte
	s := newFakeServer(t, func(s *fakeServer, c net.Conn, connNo int, f fakeFrame) bool {
		mu.Lock()
		payloads = append(payloads, f.payload)
		mu.Unlock()
		r := &reader{b: f.payload}
		r.optStr("order")
		r.optStr("user")
		r.i64("code_id")
		if tok := r.optStr("token"); tok != nil && *tok == "old" {
			c.Write(replyFrame(f.h.op, uint8(Expired), f.h.id, errPayload("the activation token has expired; open the link again from the order")))
			return true
		}
		if connNo == 1 {
			return false // drop the connection without a reply
		}
		c.Write(replyFrame(f.h.op, 0, f.h.id, encEntitlements(&Entitlements{Codes: []Entitlement{
			{Order: "A1", ID: 12, SKU: "vip", State: CodeUsed, Status: StatusUsed, UsedAtMs: 1796460116593}}}, true)))
		return true
	})
	c := NewClient(s.ln.Addr().String(), fastOpts())
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	got, err := c.Activate(ctx, "A1", "alice", 12, "")
	if err != nil || len(got) != 1 || got[0].ID != 12 || got[0].State != CodeUsed || got[0].UsedAtMs != 1796460116593 {
		t.Fatalf("%+v %v", got, err)
	}
	if s.count(opActivate) != 2 || atomic.LoadInt32(&s.conns) != 2 {
		t.Fatalf("activates %d conns %d", s.count(opActivate), s.conns)
	}
	mu.Lock()
	same := string(payloads[0]) == string(payloads[1])
	mu.Unlock()
	if !same {
		t.Fatal("the retry sent another request")
	}
	_, err = c.ActivateToken(ctx, "old", "")
	if !errors.Is(err, Expired) {
		t.Fatalf("old token: %v, want Expired", err)
	}
	var ke *Error
	if !errors.As(err, &ke) || ke.Op != "activate" {
		t.Fatalf("error %#v", err)
	}
	if s.count(opActivate) != 3 {
		t.Fatalf("EXPIRED was retried: %d activates", s.count(opActivate))
	}
	if _, err := c.Activate(ctx, "A1", "alice", -1, ""); !errors.Is(err, BadRequest) || s.count(opActivate) != 3 {
		t.Fatalf("negative code id: %v (%d sent)", err, s.count(opActivate))
	}
}
