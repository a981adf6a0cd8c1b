package rpatterns

import (
	"cmp"
	"slices"
	"strconv"
)

// shardPlan is what one member does after reading the leases: the shards
// it releases (its share shrank) and the free shards it claims.
type shardPlan struct {
	release []int
	claim   []int
}

// planShards returns the plan of member me for the n shards of name, given
// the live members (me among them, no duplicates), the live owner of each
// shard ("" if none), which shards are free to claim, and which of me's
// shards are already being released.
//
// Every member computes the same fair shares from the same reading: each
// member gets n/len(members) shards, and the n%len(members) members that
// hold the most shards (then by owner ID) one more, so that a member
// keeps what it holds when it can. A member over its share releases the
// shards it ranks lowest; free shards go, one by one in shard order, to the
// member under its share that ranks the shard highest (rendezvous hashing
// of the name, shard and owner). A member that joins or leaves therefore
// moves only the shards that must move, and members that read the same
// leases never race for one shard.
func planShards(name string, n int, me string, members []string, owners []string, free, releasing []bool) shardPlan {
	held := make(map[string]int, len(members))
	for _, m := range members {
		held[m] = 0
	}
	for _, o := range owners {
		if _, ok := held[o]; ok {
			held[o]++
		}
	}
	order := slices.Clone(members)
	slices.SortFunc(order, func(a, b string) int {
		if c := cmp.Compare(held[b], held[a]); c != 0 {
			return c
		}
		return cmp.Compare(a, b)
	})
	quota := make(map[string]int, len(order))
	base, extra := n/len(order), n%len(order)
	for i, m := range order {
		quota[m] = base
		if i < extra {
			quota[m]++
		}
	}

	var p shardPlan
	if excess := held[me] - quota[me]; excess > 0 {
		var keep []int
		for s, o := range owners {
			if o == me {
				if releasing[s] {
					excess--
				} else {
					keep = append(keep, s)
				}
			}
		}
		if excess <= 0 {
			return p
		}
		slices.SortFunc(keep, func(a, b int) int { return cmp.Compare(rendezvous(name, a, me), rendezvous(name, b, me)) })
		p.release = keep[:min(excess, len(keep))]
		slices.Sort(p.release)
		return p
	}
	want := make(map[string]int, len(order))
	for _, m := range order {
		if d := quota[m] - held[m]; d > 0 {
			want[m] = d
		}
	}
	if want[me] == 0 {
		return p
	}
	for s := range n {
		if !free[s] {
			continue
		}
		best, bestScore := "", uint64(0)
		for m, d := range want {
			if d == 0 {
				continue
			}
			sc := rendezvous(name, s, m)
			if best == "" || sc > bestScore || (sc == bestScore && m < best) {
				best, bestScore = m, sc
			}
		}
		if best == "" {
			break
		}
		want[best]--
		if best == me {
			p.claim = append(p.claim, s)
		}
	}
	return p
}

// rendezvous is the weight of owner for shard s of name: the 64-bit FNV-1a
// hash of the three, separated by NUL bytes, with a final mix so that
// inputs that differ only in their last bytes get unrelated weights.
func rendezvous(name string, s int, owner string) uint64 {
	const (
		offset64 = 14695981039346656037
		prime64  = 1099511628211
	)
	h := uint64(offset64)
	add := func(str string) {
		for i := 0; i < len(str); i++ {
			h ^= uint64(str[i])
			h *= prime64
		}
		h ^= 0
		h *= prime64
	}
	add(name)
	add(strconv.Itoa(s))
	add(owner)
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
