// etcd's Go client (go.etcd.io/etcd/clientv3 3.4, Debian's
// golang-etcd-server-dev) and its concurrency package against a Flotilla
// cluster: Mutex, Election and STM, as applications use them.
//
// Run by crates/cli/tests/etcd_go.rs, built in GOPATH mode against
// Debian's packaged sources:
//
//	etcd_concurrency HOST:PORT,HOST:PORT,...
//
// Every check fails the program with what differed; it prints "ALL OK".
package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/clientv3"
	"go.etcd.io/etcd/clientv3/concurrency"
)

func fail(format string, args ...interface{}) {
	fmt.Fprintf(os.Stderr, "FAIL: "+format+"\n", args...)
	os.Exit(1)
}

func client(endpoints []string) *clientv3.Client {
	c, err := clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 10 * time.Second})
	if err != nil {
		fail("connect %v: %v", endpoints, err)
	}
	return c
}

func session(c *clientv3.Client) *concurrency.Session {
	s, err := concurrency.NewSession(c, concurrency.WithTTL(5))
	if err != nil {
		fail("session: %v", err)
	}
	return s
}

// Two sessions on different members: the second waits for the first.
func mutex(a, b *clientv3.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sa, sb := session(a), session(b)
	defer sa.Close()
	defer sb.Close()
	ma, mb := concurrency.NewMutex(sa, "/go/lock"), concurrency.NewMutex(sb, "/go/lock")
	if err := ma.Lock(ctx); err != nil {
		fail("lock a: %v", err)
	}
	got := make(chan error, 1)
	go func() { got <- mb.Lock(ctx) }()
	select {
	case err := <-got:
		fail("b took a held lock (%v)", err)
	case <-time.After(500 * time.Millisecond):
	}
	if err := ma.Unlock(ctx); err != nil {
		fail("unlock a: %v", err)
	}
	if err := <-got; err != nil {
		fail("lock b after a's unlock: %v", err)
	}
	// The holder's key is a fencing token: a Txn guarded by it applies.
	resp, err := b.Txn(ctx).If(mb.IsOwner()).Then(clientv3.OpPut("/go/fenced", "b")).Commit()
	if err != nil || !resp.Succeeded {
		fail("a write guarded by the holder's key: %v %v", resp, err)
	}
	if err := mb.Unlock(ctx); err != nil {
		fail("unlock b: %v", err)
	}
}

// Two candidates: the first leads, the second takes over when it resigns.
func election(a, b *clientv3.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sa, sb := session(a), session(b)
	defer sa.Close()
	defer sb.Close()
	ea, eb := concurrency.NewElection(sa, "/go/elect"), concurrency.NewElection(sb, "/go/elect")
	if err := ea.Campaign(ctx, "a"); err != nil {
		fail("campaign a: %v", err)
	}
	won := make(chan error, 1)
	go func() { won <- eb.Campaign(ctx, "b") }()
	leader, err := ea.Leader(ctx)
	if err != nil || string(leader.Kvs[0].Value) != "a" {
		fail("leader while a leads: %v %v", leader, err)
	}
	if err := ea.Proclaim(ctx, "a2"); err != nil {
		fail("proclaim: %v", err)
	}
	observed := eb.Observe(ctx)
	if v := string((<-observed).Kvs[0].Value); v != "a2" {
		fail("observe saw %q, not a2", v)
	}
	if err := ea.Resign(ctx); err != nil {
		fail("resign: %v", err)
	}
	if err := <-won; err != nil {
		fail("campaign b after a resigned: %v", err)
	}
	leader, err = eb.Leader(ctx)
	if err != nil || string(leader.Kvs[0].Value) != "b" {
		fail("leader after the handover: %v %v", leader, err)
	}
	if err := eb.Resign(ctx); err != nil {
		fail("resign b: %v", err)
	}
}

// Concurrent transfers between accounts under STM keep the total.
func stm(a, b *clientv3.Client) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for i := 0; i < 4; i++ {
		if _, err := a.Put(ctx, fmt.Sprintf("/go/acct/%d", i), "100"); err != nil {
			fail("put account: %v", err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 40)
	for w := 0; w < 4; w++ {
		c := a
		if w%2 == 1 {
			c = b
		}
		wg.Add(1)
		go func(w int, c *clientv3.Client) {
			defer wg.Done()
			for n := 0; n < 10; n++ {
				from, to := fmt.Sprintf("/go/acct/%d", (w+n)%4), fmt.Sprintf("/go/acct/%d", (w+n+1)%4)
				_, err := concurrency.NewSTM(c, func(s concurrency.STM) error {
					var x, y int
					fmt.Sscan(s.Get(from), &x)
					fmt.Sscan(s.Get(to), &y)
					s.Put(from, fmt.Sprint(x-7))
					s.Put(to, fmt.Sprint(y+7))
					return nil
				}, concurrency.WithAbortContext(ctx))
				if err != nil {
					errs <- err
				}
			}
		}(w, c)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		fail("transfer: %v", err)
	}
	resp, err := b.Get(ctx, "/go/acct/", clientv3.WithPrefix())
	if err != nil || len(resp.Kvs) != 4 {
		fail("accounts: %v %v", resp, err)
	}
	total := 0
	for _, kv := range resp.Kvs {
		var x int
		fmt.Sscan(string(kv.Value), &x)
		total += x
	}
	if total != 400 {
		fail("the accounts hold %d after the transfers, not 400", total)
	}
}

func main() {
	endpoints := strings.Split(os.Args[1], ",")
	a := client(endpoints[:1])
	b := client(endpoints[len(endpoints)-1:])
	defer a.Close()
	defer b.Close()
	mutex(a, b)
	election(a, b)
	stm(a, b)
	fmt.Println("ALL OK")
}
