package testenv

import (
	"strings"

	"errors"
	"github.com/gantry-ml/gantry/internal/objstore"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
)

// Proxy is a TCP proxy on 127.0.0.1 in front of a real server that injects the faults a
// network really has: with CutAfter(n), every connection is reset (TCP RST, "connection reset
// by peer") once n bytes have passed through it in either direction — mid-request or
// mid-response, on every retry too — until CutAfter(0) heals it.
type Proxy struct {
	Addr     string // host:port to dial instead of the target
	target   string
	ln       net.Listener
	cutAfter atomic.Int64
	cuts     atomic.Int64
	bytes    atomic.Int64
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	wg       sync.WaitGroup
}

// StartProxy forwards a new port on 127.0.0.1 to target (host:port) until the test ends.
func StartProxy(t testing.TB, target string) *Proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &Proxy{Addr: ln.Addr().String(), target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.close)
	return p
}

// URL is the proxy's address as http://host:port.
func (p *Proxy) URL() string { return "http://" + p.Addr }

// CutAfter makes every connection, new or open, reset after n bytes; 0 passes everything.
func (p *Proxy) CutAfter(n int64) { p.cutAfter.Store(n) }

// Bytes is how many bytes have passed through the proxy, both directions, since it started.
func (p *Proxy) Bytes() int64 { return p.bytes.Load() }

// Cuts is how many connections the proxy has reset.
func (p *Proxy) Cuts() int64 { return p.cuts.Load() }

func (p *Proxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			p.handle(c)
		}()
	}
}

func (p *Proxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = struct{}{}
	} else {
		delete(p.conns, c)
	}
}

func (p *Proxy) handle(client net.Conn) {
	server, err := net.Dial("tcp", p.target)
	if err != nil {
		reset(client)
		return
	}
	p.track(client, true)
	p.track(server, true)
	defer func() {
		p.track(client, false)
		p.track(server, false)
	}()
	var passed atomic.Int64
	var once sync.Once
	cut := func() {
		once.Do(func() {
			p.cuts.Add(1)
			reset(client)
			reset(server)
		})
	}
	pipe := func(dst, src net.Conn, done chan<- struct{}) {
		defer close(done)
		buf := make([]byte, 16<<10)
		for {
			n, err := src.Read(buf)
			if n > 0 {
				if limit := p.cutAfter.Load(); limit > 0 {
					left := limit - passed.Load()
					if left <= 0 {
						cut()
						return
					}
					if int64(n) > left {
						_, _ = dst.Write(buf[:left])
						passed.Add(left)
						p.bytes.Add(left)
						cut()
						return
					}
				}
				if _, werr := dst.Write(buf[:n]); werr != nil {
					cut()
					return
				}
				passed.Add(int64(n))
				p.bytes.Add(int64(n))
			}
			if err != nil {
				if errors.Is(err, io.EOF) {
					// Half-close: pass the FIN on, keep the other direction open.
					if tc, ok := dst.(*net.TCPConn); ok {
						_ = tc.CloseWrite()
					}
				}
				return
			}
		}
	}
	up, down := make(chan struct{}), make(chan struct{})
	go pipe(server, client, up)
	go pipe(client, server, down)
	<-up
	<-down
	client.Close()
	server.Close()
}

// reset closes c with an RST instead of a FIN.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

func (p *Proxy) close() {
	p.ln.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// Proxied starts a Proxy in front of m and returns it with a store that reaches m only through
// it; maxRetries is the S3 client's own retries per request.
func (m *MinIO) Proxied(t testing.TB, maxRetries int) (*Proxy, *objstore.Router) {
	t.Helper()
	p := StartProxy(t, strings.TrimPrefix(m.Endpoint, "http://"))
	s, err := objstore.New(&objstore.S3Config{Endpoint: p.URL(), Creds: m.Creds(), MaxRetries: maxRetries})
	if err != nil {
		t.Fatal(err)
	}
	return p, s
}
