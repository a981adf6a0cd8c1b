package rpatterns

import (
	"fmt"
	"slices"
	"testing"
)

// cluster simulates members that all read the same leases and carry out
// their plans in turns: releases free shards at once, claims take free
// shards. It returns the owner of each shard after the plans settle and
// how many shards changed owner.
func settle(t *testing.T, name string, n int, members []string, owners []string) ([]string, int) {
	t.Helper()
	owners = slices.Clone(owners)
	moves := 0
	for round := 0; round < 10; round++ {
		changed := false
		free := make([]bool, n)
		for s, o := range owners {
			free[s] = o == "" || !slices.Contains(members, o)
		}
		// Every member plans from the same reading.
		var plans []shardPlan
		for _, m := range members {
			plans = append(plans, planShards(name, n, m, members, owners, free, make([]bool, n)))
		}
		for i, m := range members {
			for _, s := range plans[i].release {
				if owners[s] != m {
					t.Fatalf("round %d: %s releases shard %d owned by %q", round, m, s, owners[s])
				}
				owners[s] = ""
				changed = true
			}
			for _, s := range plans[i].claim {
				if !free[s] {
					t.Fatalf("round %d: %s claims shard %d, which is not free", round, m, s)
				}
				if owners[s] != "" && slices.Contains(members, owners[s]) {
					t.Fatalf("round %d: %s and %s both claim shard %d from one reading", round, m, owners[s], s)
				}
				if owners[s] != m {
					moves++
				}
				owners[s] = m
				changed = true
			}
		}
		if !changed {
			return owners, moves
		}
	}
	t.Fatalf("plans did not settle: %v", owners)
	return nil, 0
}

func counts(owners []string) map[string]int {
	c := map[string]int{}
	for _, o := range owners {
		c[o]++
	}
	return c
}

func TestPlanShardsFairAndMinimal(t *testing.T) {
	const name, n = "orders", 8
	owners := make([]string, n)

	// One member takes every shard.
	owners, moves := settle(t, name, n, []string{"a"}, owners)
	if c := counts(owners); c["a"] != 8 || moves != 8 {
		t.Fatalf("one member: owners %v, %d moves; want all 8 to a", owners, moves)
	}
	// A second member takes half: exactly 4 shards move.
	owners, moves = settle(t, name, n, []string{"a", "b"}, owners)
	if c := counts(owners); c["a"] != 4 || c["b"] != 4 || moves != 4 {
		t.Fatalf("two members: counts %v, %d moves; want 4/4 with 4 moves", c, moves)
	}
	// A third takes its share (2) from the others; the 6 others stay.
	before := slices.Clone(owners)
	owners, moves = settle(t, name, n, []string{"a", "b", "c"}, owners)
	c := counts(owners)
	if c["a"] != 3 || c["b"] != 3 || c["c"] != 2 || moves != 2 {
		t.Fatalf("three members: counts %v, %d moves; want 3/3/2 with 2 moves", c, moves)
	}
	for s := range n {
		if owners[s] != "c" && owners[s] != before[s] {
			t.Errorf("shard %d moved from %s to %s, not to the new member", s, before[s], owners[s])
		}
	}
	// b leaves (its shards are free): only its 3 shards move.
	before = slices.Clone(owners)
	owners, moves = settle(t, name, n, []string{"a", "c"}, owners)
	if c := counts(owners); c["a"] != 4 || c["c"] != 4 || moves != 3 {
		t.Fatalf("b left: counts %v, %d moves; want 4/4 with 3 moves", c, moves)
	}
	for s := range n {
		if before[s] != "b" && owners[s] != before[s] {
			t.Errorf("shard %d moved from %s to %s although its owner stayed", s, before[s], owners[s])
		}
	}
}

func TestPlanShardsMoreMembersThanShards(t *testing.T) {
	members := []string{"a", "b", "c"}
	owners, _ := settle(t, "x", 1, members[:1], make([]string, 1))
	if owners[0] != "a" {
		t.Fatalf("owner %q, want a", owners[0])
	}
	// Joiners do not take the only shard from its holder.
	owners, moves := settle(t, "x", 1, members, owners)
	if owners[0] != "a" || moves != 0 {
		t.Fatalf("owner %q after %d moves, want a kept", owners[0], moves)
	}
	owners, _ = settle(t, "x", 2, members, make([]string, 2))
	if c := counts(owners); len(c) != 2 || c[""] != 0 {
		t.Fatalf("2 shards for 3 members: %v, want two members with one each", owners)
	}
}

func TestPlanShardsReleasingCounts(t *testing.T) {
	// a holds 6 of 8 with b present: it must release 2; with 1 already
	// being released, it releases 1 more.
	owners := []string{"a", "a", "a", "a", "a", "a", "b", "b"}
	releasing := make([]bool, 8)
	releasing[0] = true
	free := make([]bool, 8)
	p := planShards("x", 8, "a", []string{"a", "b"}, owners, free, releasing)
	if len(p.release) != 1 || p.release[0] == 0 || len(p.claim) != 0 {
		t.Fatalf("plan %+v, want one release other than shard 0", p)
	}
}

func TestRendezvousSpreads(t *testing.T) {
	// Each of 4 members should rank first for some of 64 shards.
	first := map[string]int{}
	members := []string{"m1", "m2", "m3", "m4"}
	for s := range 64 {
		best, bs := "", uint64(0)
		for _, m := range members {
			if sc := rendezvous("orders", s, m); best == "" || sc > bs {
				best, bs = m, sc
			}
		}
		first[best]++
	}
	for _, m := range members {
		if first[m] < 5 {
			t.Errorf("member %s ranks first for %d of 64 shards: %v", m, first[m], first)
		}
	}
	if fmt.Sprint(rendezvous("a", 1, "b")) == fmt.Sprint(rendezvous("a", 1, "c")) {
		t.Error("rendezvous ignores the owner")
	}
}
