// Package discovery finds an experiment's peers: explicit targets, or the peers of the
// experiment chart's StatefulSet through DNS. It is the Go twin of src/nuclab/probe/targets.py
// (the probe still uses that one): the same pod names, the same spread and the same ring order,
// so a Go peer and a Python probe in one pod agree on who the neighbours are.
package discovery

import (
	"context"
	"fmt"
	"hash/crc32"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Endpoint is a peer to reach; Name is empty when only its address is known (Service A records).
type Endpoint struct {
	Name string
	Host string
	Port int
}

// Label is the name when known, else the host.
func (e Endpoint) Label() string {
	if e.Name != "" {
		return e.Name
	}
	return e.Host
}

// Error is input that is not allowed: it names the field, the value and what is allowed.
type Error struct {
	Field, Value, Allowed string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s: '%s' is not allowed; %s", e.Field, e.Value, e.Allowed)
}

// Resolver returns the IPv4 addresses of a host, sorted and unique; empty when it does not resolve.
type Resolver func(host string) []string

// ResolveIPv4 resolves with the system's resolver (/etc/hosts, then DNS), 5 s at most per name.
func ResolveIPv4(host string) []string { return ResolveIPv4Context(context.Background(), host) }

// ResolveIPv4Context is ResolveIPv4 that also gives up when ctx ends.
func ResolveIPv4Context(ctx context.Context, host string) []string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip4", host)
	if err != nil {
		return nil
	}
	seen := map[string]bool{}
	out := []string{}
	for _, ip := range ips {
		s := ip.String()
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	sort.Strings(out)
	return out
}

// ParsePort checks a TCP/UDP port (1 to 65535).
func ParsePort(field, text string) (int, error) {
	port, err := strconv.Atoi(strings.TrimSpace(text))
	if err != nil || port < 1 || port > 65535 {
		return 0, &Error{field, text, "a TCP/UDP port from 1 to 65535"}
	}
	return port, nil
}

// ParseTarget reads NAME=HOST[:PORT] or HOST[:PORT] (the port defaults to defaultPort).
func ParseTarget(text string, defaultPort int, field string) (Endpoint, error) {
	name, rest, named := strings.Cut(text, "=")
	if !named {
		name, rest = "", text
	}
	host, portText := rest, strconv.Itoa(defaultPort)
	if i := strings.LastIndex(rest, ":"); i >= 0 {
		host, portText = rest[:i], rest[i+1:]
	}
	if host == "" || (named && name == "") {
		return Endpoint{}, &Error{field, text, "NAME=HOST[:PORT] or HOST[:PORT]"}
	}
	port, err := ParsePort(field, portText)
	if err != nil {
		return Endpoint{}, &Error{field, text, "NAME=HOST[:PORT] or HOST[:PORT] with a port from 1 to 65535"}
	}
	return Endpoint{name, host, port}, nil
}

// PodNames are the names the experiment chart gives the pods of its StatefulSet
// (NUCLAB_STATEFULSET; nuclab-exp-<experiment> by default).
func PodNames(experiment string, peers int, statefulset string) []string {
	prefix := statefulset
	if prefix == "" {
		prefix = "nuclab-exp-" + experiment
	}
	names := make([]string, peers)
	for i := range names {
		names[i] = prefix + "-" + strconv.Itoa(i)
	}
	return names
}

// SpreadOffsets are the ring offsets (1 .. peers-1) a peer picks: all of them when maxTargets is 0
// or covers them, else its ceil(max/2) next neighbours plus the rest strided over the far side.
func SpreadOffsets(peers, maxTargets int) []int {
	others := peers - 1
	if others <= 0 {
		return nil
	}
	out := []int{}
	if maxTargets <= 0 || maxTargets >= others {
		for d := 1; d < peers; d++ {
			out = append(out, d)
		}
		return out
	}
	near := (maxTargets + 1) / 2
	far := maxTargets - near
	span := others - near
	for d := 1; d <= near; d++ {
		out = append(out, d)
	}
	for j := 0; j < far; j++ {
		out = append(out, near+1+((2*j+1)*span)/(2*far))
	}
	return out
}

// SelectTargets are the indices peer selfIndex picks among peers (see SpreadOffsets).
func SelectTargets(selfIndex, peers, maxTargets int) []int {
	out := []int{}
	for _, d := range SpreadOffsets(peers, maxTargets) {
		out = append(out, (selfIndex+d)%peers)
	}
	return out
}

// SelectFromOutside is the same spread for a peer that is not one of the size peers: it stands
// just before a start its name fixes (zlib's CRC-32 of the name, as the Python probe computes it).
func SelectFromOutside(name string, size, maxTargets int) []int {
	start := 0
	if size > 0 {
		start = int(crc32.ChecksumIEEE([]byte(name)) % uint32(size))
	}
	out := []int{}
	for _, d := range SpreadOffsets(size+1, maxTargets) {
		out = append(out, ((start+d-1)%size+size)%size)
	}
	return out
}

// Query says whom to look for.
type Query struct {
	Experiment, Service, SelfName, StatefulSet string
	Peers, Port, MaxTargets                    int
}

// Discover returns the experiment's other peers: per-pod DNS names (<pod>.<service>) first,
// then the Service's A records (names unknown).
func Discover(q Query, resolve Resolver) []Endpoint {
	found := []Endpoint{}
	if (q.Experiment != "" || q.StatefulSet != "") && q.Peers > 0 {
		pods := PodNames(q.Experiment, q.Peers, q.StatefulSet)
		self := -1
		for i, p := range pods {
			if p == q.SelfName {
				self = i
			}
		}
		var picked []int
		if self >= 0 {
			picked = SelectTargets(self, q.Peers, q.MaxTargets)
		} else {
			picked = SelectFromOutside(q.SelfName, q.Peers, q.MaxTargets)
		}
		sort.Ints(picked)
		for _, i := range picked {
			if q.Service == "" {
				continue
			}
			if addrs := resolve(pods[i] + "." + q.Service); len(addrs) > 0 {
				found = append(found, Endpoint{pods[i], addrs[0], q.Port})
			}
		}
	}
	if len(found) > 0 || q.Service == "" {
		return found
	}
	ips := resolve(q.Service)
	picked := SelectFromOutside(q.SelfName, len(ips), q.MaxTargets)
	sort.Ints(picked)
	for _, i := range picked {
		found = append(found, Endpoint{"", ips[i], q.Port})
	}
	return found
}

// RingNeighbours are the count keys after selfKey in sorted ring order: every peer picks its next
// ones, so the peers always form one connected ring (plus chords), whatever count is.
func RingNeighbours(selfKey string, keys []string, count int) []string {
	set := map[string]bool{selfKey: true}
	for _, k := range keys {
		set[k] = true
	}
	ordered := make([]string, 0, len(set))
	for k := range set {
		ordered = append(ordered, k)
	}
	sort.Strings(ordered)
	start := sort.SearchStrings(ordered, selfKey)
	ring := append(append([]string{}, ordered[start+1:]...), ordered[:start]...)
	if count < 0 {
		count = 0
	}
	if count < len(ring) {
		ring = ring[:count]
	}
	return ring
}
