//go:build linux

package uring

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A wake before the sleep is kept: the sleep returns at once, and consumes
// it, so the next sleep waits.
func TestKickerWakeBeforeSleep(t *testing.T) {
	var k kicker
	k.wake()
	k.wake() // coalesces with the first
	done := make(chan struct{})
	go func() { k.sleep(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("sleep did not return after a wake that came before it")
	}
	if k.word.Load() != 0 {
		t.Fatal("sleep did not consume the wake")
	}
	again := make(chan struct{})
	go func() { k.sleep(); close(again) }()
	select {
	case <-again:
		t.Fatal("a second sleep returned without a wake")
	case <-time.After(50 * time.Millisecond):
	}
	k.wake()
	select {
	case <-again:
	case <-time.After(5 * time.Second):
		t.Fatal("a sleeper was not woken")
	}
}

// Every piece of work that wakers publish is seen by the sleeper without
// its waiting for a wake that never comes: wakers publish then wake, the
// sleeper sleeps then looks, as the ring's submitters and submitter do.
func TestKickerLosesNoWake(t *testing.T) {
	const wakers, each = 4, 20000
	var k kicker
	var published, seen atomic.Int64
	done := make(chan struct{})
	go func() {
		defer close(done)
		for seen.Load() < wakers*each {
			k.sleep()
			seen.Store(published.Load())
		}
	}()
	var wg sync.WaitGroup
	for range wakers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				published.Add(1)
				k.wake()
			}
		}()
	}
	wg.Wait()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatalf("the sleeper saw %d of %d: a wake was lost", seen.Load(), wakers*each)
	}
}
