package discovery

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestParseTarget(t *testing.T) {
	cases := map[string]Endpoint{
		"p1=10.0.0.1:7000": {"p1", "10.0.0.1", 7000},
		"p1=10.0.0.1":      {"p1", "10.0.0.1", 4001},
		"host.svc":         {"", "host.svc", 4001},
		"host.svc:9":       {"", "host.svc", 9},
	}
	for text, want := range cases {
		got, err := ParseTarget(text, 4001, "--peer")
		if err != nil || got != want {
			t.Errorf("ParseTarget(%q) = %+v, %v; want %+v", text, got, err, want)
		}
	}
	for _, text := range []string{"x=h:0", "=h", "x=", "h:70000", "h:port", ""} {
		_, err := ParseTarget(text, 4001, "--peer")
		var e *Error
		if !errors.As(err, &e) || e.Field != "--peer" || e.Value != text {
			t.Errorf("ParseTarget(%q): %v, want an error naming --peer and the value", text, err)
		}
	}
}

// The expected values are what src/nuclab/probe/targets.py computes (the Python probe shares
// the experiment's pods with this peer, so both must pick the same ones).
func TestSpreadAndSelectMatchThePythonProbe(t *testing.T) {
	if got := SpreadOffsets(20, 5); !reflect.DeepEqual(got, []int{1, 2, 3, 8, 16}) {
		t.Errorf("SpreadOffsets(20, 5) = %v", got)
	}
	if got := SelectTargets(3, 20, 5); !reflect.DeepEqual(got, []int{4, 5, 6, 11, 19}) {
		t.Errorf("SelectTargets(3, 20, 5) = %v", got)
	}
	if got := SelectFromOutside("prober-x", 7, 3); !reflect.DeepEqual(got, []int{3, 4, 0}) {
		t.Errorf("SelectFromOutside(prober-x, 7, 3) = %v", got)
	}
	if got := SelectFromOutside("nuclab-exp-a-9", 5, 0); !reflect.DeepEqual(got, []int{3, 4, 0, 1, 2}) {
		t.Errorf("SelectFromOutside(nuclab-exp-a-9, 5, 0) = %v", got)
	}
	if got := SpreadOffsets(1, 0); len(got) != 0 {
		t.Errorf("a single peer has no others: %v", got)
	}
}

func TestRingNeighboursAreTheNextInSortedOrder(t *testing.T) {
	// Sorted as strings, as the Python peer sorts them: p-10 comes before p-2.
	if got := RingNeighbours("p-1", []string{"p-0", "p-10", "p-2", "p-3"}, 2); !reflect.DeepEqual(got, []string{"p-10", "p-2"}) {
		t.Errorf("got %v", got)
	}
	if got := RingNeighbours("p-3", []string{"p-0", "p-10", "p-2", "p-1"}, 3); !reflect.DeepEqual(got, []string{"p-0", "p-1", "p-10"}) {
		t.Errorf("wraps around: got %v", got)
	}
	if got := RingNeighbours("p-0", []string{"p-1", "p-2"}, 10); !reflect.DeepEqual(got, []string{"p-1", "p-2"}) {
		t.Errorf("more than there are means all: got %v", got)
	}
	if got := RingNeighbours("p-0", []string{"p-1"}, 0); len(got) != 0 {
		t.Errorf("connect-to 0: got %v", got)
	}
}

func TestDiscoverPrefersPerPodNames(t *testing.T) {
	asked := []string{}
	resolve := func(host string) []string {
		asked = append(asked, host)
		if rest, ok := strings.CutPrefix(host, "nuclab-exp-purple-"); ok {
			return []string{"10.0.0." + rest[:1]}
		}
		return nil
	}
	got := Discover(Query{Experiment: "purple", Service: "svc", Peers: 4, SelfName: "nuclab-exp-purple-1", Port: 7000}, resolve)
	want := []Endpoint{{"nuclab-exp-purple-0", "10.0.0.0", 7000}, {"nuclab-exp-purple-2", "10.0.0.2", 7000}, {"nuclab-exp-purple-3", "10.0.0.3", 7000}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
	if !reflect.DeepEqual(asked, []string{"nuclab-exp-purple-0.svc", "nuclab-exp-purple-2.svc", "nuclab-exp-purple-3.svc"}) {
		t.Errorf("asked %v", asked)
	}
	got = Discover(Query{StatefulSet: "blue", Service: "svc", Peers: 2, SelfName: "blue-0", Port: 1}, func(h string) []string {
		if h == "blue-1.svc" {
			return []string{"10.0.0.7"}
		}
		return nil
	})
	if !reflect.DeepEqual(got, []Endpoint{{"blue-1", "10.0.0.7", 1}}) {
		t.Errorf("NUCLAB_STATEFULSET names the pods: got %+v", got)
	}
}

func TestDiscoverFallsBackToTheServicesAddresses(t *testing.T) {
	resolve := func(host string) []string {
		if host == "svc" {
			return []string{"10.0.0.10", "10.0.0.9"}
		}
		return nil
	}
	got := Discover(Query{Experiment: "purple", Service: "svc", Peers: 4, SelfName: "nuclab-exp-purple-1", Port: 7000}, resolve)
	want := []Endpoint{{"", "10.0.0.10", 7000}, {"", "10.0.0.9", 7000}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v", got)
	}
	if got := Discover(Query{Experiment: "purple", Peers: 4, SelfName: "x", Port: 1}, resolve); len(got) != 0 {
		t.Errorf("no Service, nothing to resolve: %+v", got)
	}
}

func TestResolveIPv4ReadsTheSystemResolver(t *testing.T) {
	if got := ResolveIPv4("localhost"); !reflect.DeepEqual(got, []string{"127.0.0.1"}) {
		t.Errorf("localhost: %v", got)
	}
	if got := ResolveIPv4("no-such-host.invalid"); len(got) != 0 {
		t.Errorf("an unknown name resolves to nothing: %v", got)
	}
}
