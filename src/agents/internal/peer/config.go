package peer

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"

	"nuclab.io/agents/internal/discovery"
)

const (
	DefaultPort        = 4001
	DefaultMetricsPort = 9401
)

// Config is what a peer does; flags override the environment the experiment chart gives a pod.
type Config struct {
	Name, Experiment, Service, StatefulSet string
	Peers, ConnectTo, MsgSize              int
	MsgRateMS                              float64 // ms between two messages
	Targets                                []discovery.Endpoint
	Bind                                   string
	Port, MetricsPort                      int // MetricsPort 0 = no /metrics, /healthz, /readyz
	Count                                  int64
	DurationS, RediscoverS                 float64
	Params                                 map[string]string
}

// Error is bad input: the field (flag or environment variable), the value, what is allowed.
type Error = discovery.Error

func bad(field, value, allowed string) error {
	return &Error{Field: field, Value: value, Allowed: allowed}
}

// ErrHelp is returned for -h/--help (the usage was written).
var ErrHelp = flag.ErrHelp

type peerList []string

func (p *peerList) String() string     { return strings.Join(*p, ",") }
func (p *peerList) Set(v string) error { *p = append(*p, v); return nil }

// Usage of the command, as -h prints it.
const Usage = `usage: nuclab-peer [flags]

The default experiment workload of nuclab: a small gossip network over TCP. Each peer connects to
--connect-to others (the next ones in sorted ring order), publishes a --msg-size byte message
every --msg-rate ms, relays every message it sees for the first time to all its other
connections, and exports counts and delivery latency on /metrics (with /healthz and /readyz).

flags (environment variables in brackets; flags win):
  --name NAME             this peer's name [NUCLAB_POD_NAME, POD_NAME; default the hostname]
  --experiment NAME       experiment name [NUCLAB_EXPERIMENT]
  --service DNS           headless Service to discover peers through [NUCLAB_SERVICE]
  --peers N               peers in the experiment [NUCLAB_PEERS] (StatefulSet: NUCLAB_STATEFULSET)
  --connect-to N          peers to connect to [NUCLAB_CONNECT_TO; 3]
  --msg-size BYTES        message size [NUCLAB_MSG_SIZE; 1024]
  --msg-rate MS           ms between messages [NUCLAB_MSG_INTERVAL_MS, NUCLAB_MSG_RATE; 1000]
  --peer NAME=HOST[:PORT] a peer to consider instead of discovering (repeatable)
  --bind ADDR             listen address [0.0.0.0]
  --port PORT             gossip TCP port [NUCLAB_PORT, NUCLAB_PEER_PORT; 4001]
  --metrics-port PORT     /metrics, /healthz, /readyz port, 0 = off
                          [NUCLAB_METRICS_PORT, NUCLAB_PEER_METRICS_PORT; 9401]
  --count N               publish this many messages, then only relay [0 = no end]
  --duration S            stop after this many seconds [0 = run until SIGTERM]
  --rediscover S          seconds between DNS discoveries [30]
NUCLAB_PARAM_<KEY> variables are logged at start.
`

// envFirst returns the first of names set (non-empty) and its value, or (names[0], "", false).
func envFirst(env map[string]string, names ...string) (string, string, bool) {
	for _, n := range names {
		if v := env[n]; v != "" {
			return n, v, true
		}
	}
	return names[0], "", false
}

// number reads a flag (when given) or else the environment, checks it is within [low, high] (and
// whole, unless real), and falls back to def.
func number(flagName, flagValue string, given bool, env map[string]string, envNames []string,
	def, low, high float64, real bool) (float64, error) {
	field, raw, ok := flagName, flagValue, given
	if !given && len(envNames) > 0 {
		field, raw, ok = envFirst(env, envNames...)
	}
	if !ok {
		return def, nil
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(raw), 64)
	what := "a whole number"
	if real {
		what = "a number"
	}
	if err != nil || math.IsNaN(v) || v < low || v > high || (!real && v != math.Trunc(v)) {
		return 0, bad(field, raw, fmt.Sprintf("%s from %s to %s", what, fmtNum(low), fmtNum(high)))
	}
	return v, nil
}

func fmtNum(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// flagError turns the flag package's message into one naming the flag.
func flagError(err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return bad("--"+strings.TrimLeft(name, "-"), "", "not a flag of nuclab-peer (see --help)")
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return bad("--"+strings.TrimLeft(name, "-"), "", "a value after the flag")
	}
	return bad("flags", msg, "see --help")
}

// Parse reads the flags and the environment (env nil = os.Environ()).
func Parse(args []string, env map[string]string) (*Config, error) {
	if env == nil {
		env = map[string]string{}
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			env[k] = v
		}
	}
	fs := flag.NewFlagSet("nuclab-peer", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	str := func(name string) *string { return fs.String(name, "", "") }
	name, experiment, service := str("name"), str("experiment"), str("service")
	peers, connectTo, msgSize, msgRate := str("peers"), str("connect-to"), str("msg-size"), str("msg-rate")
	bind := fs.String("bind", "0.0.0.0", "")
	port, metricsPort := str("port"), str("metrics-port")
	count, duration, rediscover := str("count"), str("duration"), str("rediscover")
	var targets peerList
	fs.Var(&targets, "peer", "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, ErrHelp
		}
		return nil, flagError(err)
	}
	if fs.NArg() > 0 {
		return nil, bad("arguments", strings.Join(fs.Args(), " "), "none: every setting is a --flag (see --help)")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	cfg := &Config{Bind: *bind, Params: map[string]string{}}
	var err error
	num := func(flagName string, v *string, envNames []string, def, low, high float64, real bool) float64 {
		if err != nil {
			return 0
		}
		var out float64
		out, err = number("--"+flagName, *v, set[flagName], env, envNames, def, low, high, real)
		return out
	}
	cfg.Peers = int(num("peers", peers, []string{"NUCLAB_PEERS"}, 0, 0, 100_000, false))
	cfg.ConnectTo = int(num("connect-to", connectTo, []string{"NUCLAB_CONNECT_TO"}, 3, 0, 10_000, false))
	cfg.MsgSize = int(num("msg-size", msgSize, []string{"NUCLAB_MSG_SIZE"}, 1024, 0, MaxPayload, false))
	cfg.MsgRateMS = num("msg-rate", msgRate, []string{"NUCLAB_MSG_INTERVAL_MS", "NUCLAB_MSG_RATE"}, 1000, 0, 86_400_000, true)
	cfg.Count = int64(num("count", count, nil, 0, 0, 1e12, false))
	cfg.DurationS = num("duration", duration, nil, 0, 0, 1e9, true)
	cfg.RediscoverS = num("rediscover", rediscover, nil, 30, 1, 86400, true)
	if err != nil {
		return nil, err
	}

	portField, portRaw, ok := "--port", *port, set["port"]
	if !ok {
		portField, portRaw, ok = envFirst(env, "NUCLAB_PORT", "NUCLAB_PEER_PORT")
	}
	cfg.Port = DefaultPort
	if ok {
		if cfg.Port, err = discovery.ParsePort(portField, portRaw); err != nil {
			return nil, err
		}
	}
	mField, mRaw, ok := "--metrics-port", *metricsPort, set["metrics-port"]
	if !ok {
		mField, mRaw, ok = envFirst(env, "NUCLAB_METRICS_PORT", "NUCLAB_PEER_METRICS_PORT")
	}
	cfg.MetricsPort = DefaultMetricsPort
	if ok {
		if strings.TrimSpace(mRaw) == "0" {
			cfg.MetricsPort = 0
		} else if cfg.MetricsPort, err = discovery.ParsePort(mField, mRaw); err != nil {
			return nil, bad(mField, mRaw, "0 (off) or a TCP port from 1 to 65535")
		}
	}
	for _, t := range targets {
		ep, err := discovery.ParseTarget(t, cfg.Port, "--peer")
		if err != nil {
			return nil, err
		}
		cfg.Targets = append(cfg.Targets, ep)
	}

	pick := func(flagValue string, envNames ...string) string {
		if flagValue != "" {
			return flagValue
		}
		_, v, _ := envFirst(env, envNames...)
		return v
	}
	cfg.Name = pick(*name, "NUCLAB_POD_NAME", "POD_NAME")
	if cfg.Name == "" {
		cfg.Name, _ = os.Hostname()
	}
	if len(cfg.Name) > math.MaxUint16 {
		return nil, bad("--name", cfg.Name[:40]+"...", "a name of at most 65535 bytes")
	}
	cfg.Experiment = pick(*experiment, "NUCLAB_EXPERIMENT")
	cfg.Service = pick(*service, "NUCLAB_SERVICE")
	cfg.StatefulSet = env["NUCLAB_STATEFULSET"]
	for k, v := range env {
		if key, ok := strings.CutPrefix(k, "NUCLAB_PARAM_"); ok {
			cfg.Params[strings.ToLower(key)] = v
		}
	}
	if len(cfg.Targets) == 0 && cfg.Service == "" {
		return nil, bad("--peer/--service", "",
			"give --peer NAME=HOST[:PORT] or a headless Service (--service, env NUCLAB_SERVICE)")
	}
	return cfg, nil
}
