package kami

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"sync"
	"time"
)

// Options configure a Client. Zero values take the defaults noted.
type Options struct {
	// Client and Token are sent in hello (TCP needs them). Client defaults to "default".
	Client string
	Token  string
	// MaxConns bounds the pool (default 8). MaxIdle bounds idle connections kept
	// (default MaxConns); IdleTimeout closes ones idle longer (default 60s).
	MaxConns    int
	MaxIdle     int
	IdleTimeout time.Duration
	// MaxPipeline bounds requests in flight on one connection (default 64; kamid stops
	// reading a connection past 1,024).
	MaxPipeline int
	// DialTimeout bounds a connect plus hello (default 5s).
	DialTimeout time.Duration
	// Timeout applies to a call whose context has no deadline (default 30s; a Wait's
	// own duration is added).
	Timeout time.Duration
	// MaxRetries bounds the retries of an idempotent call after a network error, BUSY
	// or UNAVAILABLE (default 4; negative: none). RetryBackoff is the first pause
	// (default 50ms), doubled each time up to MaxBackoff (default 1s), with jitter.
	MaxRetries   int
	RetryBackoff time.Duration
	MaxBackoff   time.Duration
}

func (o Options) withDefaults() Options {
	if o.Client == "" {
		o.Client = "default"
	}
	if o.MaxConns <= 0 {
		o.MaxConns = 8
	}
	if o.MaxIdle <= 0 || o.MaxIdle > o.MaxConns {
		o.MaxIdle = o.MaxConns
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 60 * time.Second
	}
	if o.MaxPipeline <= 0 {
		o.MaxPipeline = 64
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxRetries == 0 {
		o.MaxRetries = 4
	} else if o.MaxRetries < 0 {
		o.MaxRetries = 0
	}
	if o.RetryBackoff <= 0 {
		o.RetryBackoff = 50 * time.Millisecond
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = time.Second
	}
	return o
}

// Client is a pool of binary-frame connections to one kamid. It is safe for concurrent
// use; create one per kamid and share it.
type Client struct {
	addr string
	opts Options

	mu      sync.Mutex
	conns   []*conn
	dialing int
	closed  bool
	notify  chan struct{} // closed and replaced whenever a connection frees up
	info    *ServerInfo
}

// NewClient returns a Client for addr ("host:port"). It connects lazily, on the first call.
func NewClient(addr string, opts Options) *Client {
	return &Client{addr: addr, opts: opts.withDefaults(), notify: make(chan struct{})}
}

// Dial returns a Client for addr and checks that kamid answers (a connection, hello
// and ping).
func Dial(ctx context.Context, addr string, opts Options) (*Client, error) {
	c := NewClient(addr, opts)
	if err := c.Ping(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Close closes every connection; calls in flight fail with ErrClosed or a NetError.
func (c *Client) Close() error {
	c.mu.Lock()
	c.closed = true
	conns := c.conns
	c.conns = nil
	c.wake()
	c.mu.Unlock()
	for _, cn := range conns {
		cn.fail(ErrClosed)
	}
	return nil
}

// Server returns what kamid said in hello on the newest connection (nil before any).
func (c *Client) Server() *ServerInfo {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.info
}

// Stats describes the pool.
type Stats struct{ Conns, Idle, InFlight int }

// PoolStats returns the pool's current numbers.
func (c *Client) PoolStats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	var s Stats
	for _, cn := range c.conns {
		if cn.isDead() {
			continue
		}
		s.Conns++
		s.InFlight += cn.inflight
		if cn.inflight == 0 {
			s.Idle++
		}
	}
	return s
}

// wake tells waiters in acquire that something changed. Called with c.mu held.
func (c *Client) wake() {
	close(c.notify)
	c.notify = make(chan struct{})
}

// acquire returns a connection with one more request counted in flight. exclusive asks
// for a connection with nothing else in flight, kept for this request alone (waits).
func (c *Client) acquire(ctx context.Context, exclusive bool) (*conn, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, ErrClosed
		}
		c.prune()
		var pick *conn
		for _, cn := range c.conns {
			if !cn.retired && !cn.exclusive && cn.inflight == 0 {
				pick = cn
				break
			}
		}
		if pick == nil && len(c.conns)+c.dialing < c.opts.MaxConns {
			c.dialing++
			c.mu.Unlock()
			cn, err := c.dial(ctx)
			c.mu.Lock()
			c.dialing--
			if err != nil {
				c.wake()
				c.mu.Unlock()
				return nil, err
			}
			if c.closed {
				c.mu.Unlock()
				cn.fail(ErrClosed)
				return nil, ErrClosed
			}
			c.conns = append(c.conns, cn)
			c.info = cn.info
			c.wake() // requests waiting for the pool may pipeline on it
			pick = cn
		}
		if pick == nil && !exclusive {
			for _, cn := range c.conns {
				if !cn.retired && !cn.exclusive && cn.inflight < c.opts.MaxPipeline && (pick == nil || cn.inflight < pick.inflight) {
					pick = cn
				}
			}
		}
		if pick != nil {
			pick.inflight++
			pick.exclusive = exclusive
			c.mu.Unlock()
			return pick, nil
		}
		ch := c.notify
		c.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// prune drops dead connections, retired ones with nothing in flight, and idle ones past
// IdleTimeout. Called with c.mu held.
func (c *Client) prune() {
	now := time.Now()
	live := c.conns[:0]
	for _, cn := range c.conns {
		drop := cn.isDead() || (cn.inflight == 0 && (cn.retired || now.Sub(cn.lastUsed) > c.opts.IdleTimeout))
		if drop {
			go cn.fail(errors.New("connection retired"))
			continue
		}
		live = append(live, cn)
	}
	for i := len(live); i < len(c.conns); i++ {
		c.conns[i] = nil
	}
	c.conns = live
}

// release gives a connection back. retire: it must not be used again (a broken
// connection, or one whose abandoned request would hold back later replies).
func (c *Client) release(cn *conn, retire bool) {
	c.mu.Lock()
	cn.inflight--
	cn.exclusive = false
	cn.lastUsed = time.Now()
	if retire {
		cn.retired = true
	}
	if cn.inflight == 0 && !cn.retired {
		idle := 0
		for _, x := range c.conns {
			if x.inflight == 0 && !x.retired && !x.isDead() {
				idle++
			}
		}
		if idle > c.opts.MaxIdle {
			cn.retired = true
		}
	}
	c.prune()
	c.wake()
	c.mu.Unlock()
}

func (c *Client) dial(ctx context.Context) (*conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	var d net.Dialer
	nc, err := d.DialContext(dctx, "tcp", c.addr)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &NetError{Op: "dial", Err: err}
	}
	if tc, ok := nc.(*net.TCPConn); ok {
		tc.SetNoDelay(true)
	}
	cn := &conn{nc: nc, pending: map[uint32]chan result{}, lastUsed: time.Now()}
	go cn.readLoop()
	w := func(id uint32) ([]byte, error) {
		f := newFrame(opHello, id)
		f.str("client", c.opts.Client)
		f.str("token", c.opts.Token)
		return f.finish()
	}
	rep, err := cn.roundTrip(dctx, w)
	if err != nil {
		cn.fail(err)
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	if rep.status != 0 {
		cn.fail(errors.New("hello refused"))
		return nil, decodeError(opHello, rep.status, rep.payload)
	}
	info, err := decodeHello(rep.payload)
	if err != nil {
		cn.fail(err)
		return nil, &NetError{Op: "hello", Err: err}
	}
	cn.info = info
	return cn, nil
}

type result struct {
	rep reply
	err error
}

// conn is one connection: a reader goroutine hands replies to waiting callers by id.
type conn struct {
	nc   net.Conn
	info *ServerInfo

	wmu sync.Mutex // one writer at a time

	mu      sync.Mutex
	pending map[uint32]chan result
	nextID  uint32
	dead    bool
	deadErr error

	// guarded by Client.mu
	inflight  int
	exclusive bool
	retired   bool
	lastUsed  time.Time
}

func (cn *conn) isDead() bool {
	cn.mu.Lock()
	defer cn.mu.Unlock()
	return cn.dead
}

// fail marks the connection dead, closes it and fails every pending request.
func (cn *conn) fail(err error) {
	cn.mu.Lock()
	if cn.dead {
		cn.mu.Unlock()
		return
	}
	cn.dead = true
	cn.deadErr = err
	pending := cn.pending
	cn.pending = nil
	cn.mu.Unlock()
	cn.nc.Close()
	for _, ch := range pending {
		ch <- result{err: err}
	}
}

func (cn *conn) readLoop() {
	var hdr [frameHeaderBytes]byte
	for {
		if _, err := io.ReadFull(cn.nc, hdr[:]); err != nil {
			cn.fail(err)
			return
		}
		h, err := parseHeader(hdr[:], replyBytesMax)
		if err != nil {
			cn.fail(err)
			return
		}
		payload := make([]byte, h.length)
		if _, err := io.ReadFull(cn.nc, payload); err != nil {
			cn.fail(err)
			return
		}
		rep := reply{op: h.op, status: h.status, id: h.id, payload: payload}
		cn.mu.Lock()
		ch, ok := cn.pending[h.id]
		if ok {
			delete(cn.pending, h.id)
		}
		cn.mu.Unlock()
		if ok {
			ch <- result{rep: rep}
			continue
		}
		if h.id == 0 && h.status != 0 {
			// A fatal error the server could not tie to a request: it closes the connection.
			cn.fail(decodeError(h.op, h.status, payload))
			return
		}
		// Otherwise a late reply to an abandoned request: dropped.
	}
}

// roundTrip sends one frame built for a fresh request id and waits for its reply.
func (cn *conn) roundTrip(ctx context.Context, build func(id uint32) ([]byte, error)) (reply, error) {
	ch := make(chan result, 1)
	cn.mu.Lock()
	if cn.dead {
		err := cn.deadErr
		cn.mu.Unlock()
		return reply{}, &NetError{Op: "send", Err: err}
	}
	cn.nextID++
	if cn.nextID == 0 {
		cn.nextID = 1
	}
	id := cn.nextID
	cn.pending[id] = ch
	cn.mu.Unlock()

	frame, err := build(id)
	if err != nil {
		cn.forget(id)
		return reply{}, &Error{Code: BadRequest, Message: "client: " + err.Error()}
	}
	cn.wmu.Lock()
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(30 * time.Second)
	}
	cn.nc.SetWriteDeadline(dl)
	_, err = cn.nc.Write(frame)
	cn.wmu.Unlock()
	if err != nil {
		cn.fail(err)
		if ctx.Err() != nil {
			return reply{}, ctx.Err()
		}
		return reply{}, &NetError{Op: "write", Err: err}
	}
	select {
	case r := <-ch:
		if r.err != nil {
			return reply{}, &NetError{Op: "read", Err: r.err}
		}
		return r.rep, nil
	case <-ctx.Done():
		cn.forget(id)
		return reply{}, ctx.Err()
	}
}

func (cn *conn) forget(id uint32) {
	cn.mu.Lock()
	if cn.pending != nil {
		delete(cn.pending, id)
	}
	cn.mu.Unlock()
}

// call runs one operation with the pool, the deadline and the retries.
func (c *Client) call(ctx context.Context, op uint8, idempotent, exclusive bool, extra time.Duration,
	build func(w *writer)) (reply, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.opts.Timeout+extra)
		defer cancel()
	}
	retries := 0
	if idempotent {
		retries = c.opts.MaxRetries
	}
	for attempt := 0; ; attempt++ {
		rep, err := c.once(ctx, op, exclusive, build)
		if ke, ok := err.(*Error); ok && ke.Op == "" {
			ke.Op = opName(op)
		}
		if err == nil && rep.status == 0 {
			return rep, nil
		}
		if err == nil {
			kerr := decodeError(op, rep.status, rep.payload)
			if !kerr.Code.Retryable() || attempt >= retries {
				return rep, kerr
			}
			err = kerr
		} else {
			if ctxErr := ctx.Err(); ctxErr != nil {
				return reply{}, ctxErr
			}
			if !IsNetwork(err) || attempt >= retries {
				if n, ok := err.(*NetError); ok {
					n.Op = opName(op) + " " + n.Op
				}
				return reply{}, err
			}
		}
		if err := c.backoff(ctx, attempt); err != nil {
			return reply{}, err
		}
	}
}

func (c *Client) backoff(ctx context.Context, attempt int) error {
	d := c.opts.RetryBackoff << uint(attempt)
	if d > c.opts.MaxBackoff || d <= 0 {
		d = c.opts.MaxBackoff
	}
	d = d/2 + time.Duration(rand.Int63n(int64(d/2)+1))
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (c *Client) once(ctx context.Context, op uint8, exclusive bool, build func(w *writer)) (reply, error) {
	cn, err := c.acquire(ctx, exclusive)
	if err != nil {
		return reply{}, err
	}
	rep, err := cn.roundTrip(ctx, func(id uint32) ([]byte, error) {
		w := newFrame(op, id)
		build(w)
		return w.finish()
	})
	// A failed or abandoned request retires its connection: a broken one is useless, and
	// an abandoned one would still hold back later replies behind it.
	retire := err != nil && !isClientError(err)
	if err == nil && rep.op != op && rep.status == 0 {
		err = &NetError{Op: "read", Err: fmt.Errorf("%w: reply op %d to request op %d", errCodec, rep.op, op)}
		cn.fail(err)
		retire = true
	}
	c.release(cn, retire)
	return rep, err
}

func isClientError(err error) bool {
	var e *Error
	return errors.As(err, &e)
}
