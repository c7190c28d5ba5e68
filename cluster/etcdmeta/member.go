package etcdmeta

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/server/v3/embed"
)

// MemberConfig configures an embedded etcd member (fleetkv meta).
type MemberConfig struct {
	Name string // the member's name in InitialCluster; default "meta"
	Dir  string // its data directory
	// Client and Peer are the host:port it serves clients and its peers
	// on; a port 0 in Client picks a free port (a single member only).
	Client, Peer string
	// InitialCluster lists every member as name=http://host:port (their
	// Peer addresses) when they first start together; empty: this member
	// alone.
	InitialCluster string
	// Join makes a new member join a running cluster instead of starting
	// one (etcd's initial-cluster-state existing).
	Join bool
	// StartTimeout bounds the wait for the member to serve. Default 60 s.
	StartTimeout time.Duration
}

// Member is a running embedded etcd member.
type Member struct {
	e      *embed.Etcd
	client string
	close  sync.Once
}

// StartMember starts an embedded etcd member and returns once it serves
// (for a member of several, once the cluster has a leader).
func StartMember(cfg MemberConfig) (*Member, error) {
	if cfg.Name == "" {
		cfg.Name = "meta"
	}
	if cfg.StartTimeout == 0 {
		cfg.StartTimeout = 60 * time.Second
	}
	ec := embed.NewConfig()
	ec.Name, ec.Dir = cfg.Name, cfg.Dir
	ec.Logger, ec.LogLevel = "zap", "error"
	cu, err := httpURL(cfg.Client)
	if err != nil {
		return nil, err
	}
	pu, err := httpURL(cfg.Peer)
	if err != nil {
		return nil, err
	}
	ec.ListenClientUrls, ec.AdvertiseClientUrls = []url.URL{cu}, []url.URL{cu}
	ec.ListenPeerUrls, ec.AdvertisePeerUrls = []url.URL{pu}, []url.URL{pu}
	ec.InitialCluster = cfg.InitialCluster
	if ec.InitialCluster == "" {
		ec.InitialCluster = cfg.Name + "=" + pu.String()
	}
	ec.InitialClusterToken = "fleetkv-meta"
	if cfg.Join {
		ec.ClusterState = embed.ClusterStateFlagExisting
	}
	// Small metadata: compact history hourly, keep the backend small.
	ec.AutoCompactionMode, ec.AutoCompactionRetention = "periodic", "1h"
	e, err := embed.StartEtcd(ec)
	if err != nil {
		return nil, fmt.Errorf("etcdmeta: start member %s: %w", cfg.Name, err)
	}
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		e.Close()
		return nil, fmt.Errorf("etcdmeta: member %s: %w", cfg.Name, err)
	case <-time.After(cfg.StartTimeout):
		e.Close()
		return nil, fmt.Errorf("etcdmeta: member %s did not become ready within %v (are the other members of --initial-cluster up?)", cfg.Name, cfg.StartTimeout)
	}
	return &Member{e: e, client: e.Clients[0].Addr().String()}, nil
}

// ClientAddr returns the host:port the member serves clients on.
func (m *Member) ClientAddr() string { return m.client }

// IsLeader reports whether the member leads its cluster now.
func (m *Member) IsLeader() bool { return m.e.Server.Leader() == m.e.Server.MemberID() }

// Err returns a channel that reports a failure of the running member.
func (m *Member) Err() <-chan error { return m.e.Err() }

// Close stops the member; later calls do nothing.
func (m *Member) Close() { m.close.Do(m.e.Close) }

func httpURL(hostport string) (url.URL, error) {
	if hostport == "" || strings.Contains(hostport, "://") {
		return url.URL{}, fmt.Errorf("etcdmeta: address %q: want host:port", hostport)
	}
	u, err := url.Parse("http://" + hostport)
	if err != nil {
		return url.URL{}, fmt.Errorf("etcdmeta: address %q: %w", hostport, err)
	}
	return *u, nil
}

// WaitReady waits until the store answers a read (a leader is elected).
func (s *Store) WaitReady(ctx context.Context) error {
	for {
		c, cancel := context.WithTimeout(ctx, time.Second)
		_, err := s.cli.Get(c, s.key("map"))
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return errors.Join(ctx.Err(), err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
