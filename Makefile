# nuclab: `make demo` runs the main job on the simulated lab; `make test` runs every test tier.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

NUCLAB_CACHE ?= $(or $(XDG_CACHE_HOME),$(HOME)/.cache)/nuclab
VENV := $(CURDIR)/.venv
export NUCLAB_CACHE
export PATH := $(VENV)/bin:$(NUCLAB_CACHE)/tools/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export CONTAINERS_CONF := $(CURDIR)/tools/containers.conf

SIM := inventory/sim
KUBECONFIG_SIM := $(CURDIR)/$(SIM)/artifacts/kubeconfig

.PHONY: help setup setup-tests demo sim-up sim-down test test-unit test-podman test-lab lint unit chart molecule integration bench generate clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

setup: ## Install what nuclab needs: Debian packages, .venv, Go tools (cached)
	@bash tools/setup.sh

setup-tests: setup ## Also build what only the tests use: helm-docs, Loki (cached)
	@bash tools/setup.sh --tests

sim-up: setup ## Bring the simulated lab up (site.yml on inventory/sim)
	ansible-playbook -i $(SIM) site.yml

DEMO_TRAFFIC_SECONDS ?= 60
DEMO_DATASET ?= datasets/purple-$(shell date -u +%Y%m%dT%H%M%SZ)

demo: sim-up ## Bring the simulated lab up, run the reference experiment on its real nodes, export what Prometheus scraped and report it
	@echo
	kubectl --kubeconfig $(KUBECONFIG_SIM) get nodes -L nuclab.io/role,topology.kubernetes.io/zone,nuclab.io/node-kind
	@echo
	nuclab create --update --name purple --peers 5 --msg-size 1440 --msg-rate 2000 --cpu 0.05 --ram 16 \
	  --downlink-bw 16 --uplink-bw 16 --connect-to 5 --label node-kind=real --probe
	@echo
	@echo "==> $(DEMO_TRAFFIC_SECONDS) s of traffic between the peers"
	@sleep $(DEMO_TRAFFIC_SECONDS)
	nuclab list
	@echo
	nuclab stats purple
	@echo
	nuclab export purple -o $(DEMO_DATASET)
	nuclab report $(DEMO_DATASET)

sim-down: ## Stop the simulated lab and remove its state
	@if [ -x $(VENV)/bin/ansible-playbook ]; then ansible-playbook -i $(SIM) playbooks/sim_down.yml; \
	else echo "no .venv: nothing was set up, nothing to stop"; fi

# The tiers that need no lab (lint, unit, chart and lab-less integration tests; the K3s roles on
# podman hosts) run beside the lab's tier: the `sim` scenario (sim-down, site.yml from nothing,
# idempotence, verify), the `experiment` scenario and the integration tests on the lab it left
# up, then sim-down, which checks that it left nothing behind. tools/test-tiers.sh streams the
# lab's tier and prints the other two when it ends.
test: setup ## Run every test tier (lint, unit, chart, molecule, integration)
	@bash tools/test-tiers.sh

# The integration tests that need no lab (marked by tests/integration/conftest.py) run in this
# tier, beside the lab's; `-m sim` selects the others for test-lab, which ends with the few
# that measure a rate or a delay to a few percent (`-m quiet`) once the lab is down and the other tiers are done.
# It builds the tools only the tests use first (helm-docs, Loki: minutes when the cache is cold,
# niced), beside the lab's tier, which needs neither.
test-unit:
	@bash tools/setup.sh --tests
	@rc=0; $(MAKE) --no-print-directory lint || rc=$$?; pytest tests/unit tests/chart || rc=$$?; \
	pytest tests/integration -m "not sim and not quiet" --durations=10 || rc=$$?; exit $$rc

test-podman:
	molecule test -s k3s-agents
	molecule test -s k3s-ha

# The experiment scenario's prepare brings the lab up with site.yml; here the sim scenario has
# just done that and proved a second run changes nothing, so it is told not to run it again.
test-lab:
	molecule test -s sim
	NUCLAB_SIM_SCENARIO_LEFT_THE_LAB_UP=yes molecule test -s experiment
	@rc=0; pytest tests/integration -m sim --durations=25 || rc=$$?; \
	ansible-playbook -i $(SIM) playbooks/sim_down.yml || rc=$$?; \
	pytest tests/integration -m "quiet and not sim" || rc=$$?; exit $$rc

lint: ## yamllint, ansible-lint (production profile), ruff, helm lint
	yamllint --strict .
	ansible-lint
	ruff check src tests plugins bench tools roles
	ruff format --check src tests plugins bench tools roles
	@for c in charts/*/Chart.yaml; do [ -e "$$c" ] || continue; helm lint --strict "$$(dirname $$c)"; done

unit: setup-tests ## Unit and chart tests only (fast)
	pytest tests/unit tests/chart

molecule: ## Molecule scenarios only (the sim scenario leaves the lab up: sim_down ends the run)
	@rc=0; molecule test --all || rc=$$?; \
	ansible-playbook -i $(SIM) playbooks/sim_down.yml || rc=$$?; exit $$rc

integration: setup-tests ## Integration tests only
	pytest tests/integration

generate: setup-tests ## Rewrite the generated files: from nuclab.spec's tables (schema rules, playbook fields, docs tables), the chart README (helm-docs), docs/roles.md (argument specs)
	python tools/specgen.py
	bash tools/chart-docs.sh
	python tools/rolespecs.py

bench: setup ## Run the benchmarks (prints figures; see docs/benchmarks.md)
	@for b in bench/*.py; do echo "== $$b"; python "$$b"; done

clean: sim-down ## Stop the simulated lab and remove the venv
	rm -rf $(VENV)
