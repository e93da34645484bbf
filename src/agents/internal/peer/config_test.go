package peer

import (
	"errors"
	"reflect"
	"testing"

	"nuclab.io/agents/internal/discovery"
)

var chartEnv = map[string]string{
	"POD_NAME":            "nuclab-exp-purple-0",
	"NUCLAB_EXPERIMENT":   "purple",
	"NUCLAB_PEERS":        "5",
	"NUCLAB_SERVICE":      "nuclab-exp-purple",
	"NUCLAB_CONNECT_TO":   "5",
	"NUCLAB_MSG_SIZE":     "1440",
	"NUCLAB_MSG_RATE":     "2000",
	"NUCLAB_PARAM_TOPIC":  "blocks",
	"UNRELATED_VARIABLE":  "x",
	"NUCLAB_PARAMS_DIR":   "/etc/nuclab/experiment",
	"NUCLAB_PARAM_ROUNDS": "3",
}

func TestSettingsComeFromTheChartEnvironment(t *testing.T) {
	cfg, err := Parse(nil, chartEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "nuclab-exp-purple-0" || cfg.Experiment != "purple" || cfg.Peers != 5 || cfg.Service != "nuclab-exp-purple" {
		t.Errorf("%+v", cfg)
	}
	if cfg.ConnectTo != 5 || cfg.MsgSize != 1440 || cfg.MsgRateMS != 2000 {
		t.Errorf("%+v", cfg)
	}
	if !reflect.DeepEqual(cfg.Params, map[string]string{"topic": "blocks", "rounds": "3"}) {
		t.Errorf("params %v", cfg.Params)
	}
	if cfg.Port != 4001 || cfg.MetricsPort != 9401 || cfg.Bind != "0.0.0.0" || cfg.RediscoverS != 30 {
		t.Errorf("defaults %+v", cfg)
	}
}

func TestFlagsOverrideTheEnvironment(t *testing.T) {
	cfg, err := Parse([]string{"--msg-size", "100", "--connect-to=1", "--peer", "a=h1", "--peer", "b=h2:9",
		"--metrics-port", "0", "--count", "7", "--duration", "1.5"}, chartEnv)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MsgSize != 100 || cfg.ConnectTo != 1 || cfg.MetricsPort != 0 || cfg.Count != 7 || cfg.DurationS != 1.5 {
		t.Errorf("%+v", cfg)
	}
	want := []discovery.Endpoint{{Name: "a", Host: "h1", Port: 4001}, {Name: "b", Host: "h2", Port: 9}}
	if !reflect.DeepEqual(cfg.Targets, want) {
		t.Errorf("targets %+v", cfg.Targets)
	}
}

// charts/experiment passes NUCLAB_POD_NAME, NUCLAB_PORT, NUCLAB_METRICS_PORT and
// NUCLAB_MSG_INTERVAL_MS: they win over the documented aliases.
func TestTheExperimentChartsNamesWin(t *testing.T) {
	env := map[string]string{
		"NUCLAB_POD_NAME": "nuclab-exp-blue-2", "POD_NAME": "other", "NUCLAB_SERVICE": "s",
		"NUCLAB_PORT": "7000", "NUCLAB_PEER_PORT": "1", "NUCLAB_METRICS_PORT": "9464",
		"NUCLAB_PEER_METRICS_PORT": "2", "NUCLAB_MSG_INTERVAL_MS": "250", "NUCLAB_MSG_RATE": "3",
		"NUCLAB_STATEFULSET": "nuclab-exp-blue",
	}
	cfg, err := Parse(nil, env)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Name != "nuclab-exp-blue-2" || cfg.Port != 7000 || cfg.MetricsPort != 9464 || cfg.MsgRateMS != 250 || cfg.StatefulSet != "nuclab-exp-blue" {
		t.Errorf("%+v", cfg)
	}
	cfg, _ = Parse(nil, map[string]string{"POD_NAME": "p", "NUCLAB_SERVICE": "s", "NUCLAB_PEER_PORT": "7001", "NUCLAB_MSG_RATE": "5"})
	if cfg.Name != "p" || cfg.Port != 7001 || cfg.MsgRateMS != 5 {
		t.Errorf("aliases: %+v", cfg)
	}
}

func TestBadSettingsNameTheFieldAndTheValue(t *testing.T) {
	cases := []struct {
		args         []string
		env          map[string]string
		field, value string
	}{
		{nil, nil, "--peer/--service", ""},
		{[]string{"--service", "s"}, map[string]string{"NUCLAB_MSG_SIZE": "-1"}, "NUCLAB_MSG_SIZE", "-1"},
		{[]string{"--service", "s"}, map[string]string{"NUCLAB_MSG_RATE": "fast"}, "NUCLAB_MSG_RATE", "fast"},
		{[]string{"--service", "s"}, map[string]string{"NUCLAB_PEERS": "2.5"}, "NUCLAB_PEERS", "2.5"},
		{[]string{"--service", "s", "--msg-size", "33554432"}, nil, "--msg-size", "33554432"},
		{[]string{"--peer", "x=h:0"}, nil, "--peer", "x=h:0"},
		{[]string{"--service", "s", "--port", "70000"}, nil, "--port", "70000"},
		{[]string{"--service", "s"}, map[string]string{"NUCLAB_PORT": "x"}, "NUCLAB_PORT", "x"},
		{[]string{"--service", "s"}, map[string]string{"NUCLAB_METRICS_PORT": "-3"}, "NUCLAB_METRICS_PORT", "-3"},
		{[]string{"--service", "s", "--rediscover", "0"}, nil, "--rediscover", "0"},
		{[]string{"--service", "s", "--bogus"}, nil, "--bogus", ""},
		{[]string{"--service"}, nil, "--service", ""},
		{[]string{"--service", "s", "extra"}, nil, "arguments", "extra"},
	}
	for _, c := range cases {
		env := c.env
		if env == nil {
			env = map[string]string{}
		}
		_, err := Parse(c.args, env)
		var e *Error
		if !errors.As(err, &e) || e.Field != c.field || e.Value != c.value || e.Allowed == "" {
			t.Errorf("Parse(%v, %v) = %v; want an error on %s %q", c.args, c.env, err, c.field, c.value)
		}
	}
	_, err := Parse([]string{"-h"}, map[string]string{})
	if !errors.Is(err, ErrHelp) {
		t.Errorf("-h: %v", err)
	}
}
