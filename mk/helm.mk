# The Helm chart charts/taskq (docs/helm.md). helm is built from tools/helm like the control
# plane's binaries; checkov is installed into a throwaway venv under ~/.cache/taskq/ (not into the
# project's environment).
#   make chart-lint    helm lint (default values and the bundled-PostgreSQL variant), README,
#                      values.schema.json and CRD copies up to date
#   make chart-docs    regenerate charts/taskq/README.md and values.schema.json from values.yaml
#   make crds          regenerate crds/ and the chart's copy (files/crds/) from the operator's models
#   make chart-scan    checkov over the rendered chart: no failed check allowed
#   make chart-test    the chart's tests (render, drift, a real install/upgrade/uninstall)

CHART := charts/taskq
HELM = $(shell tools/build.sh helm)/helm
CHECKOV_VERSION := 3.3.30
CHECKOV_HOME := $(HOME)/.cache/taskq/checkov-$(CHECKOV_VERSION)
CHECKOV := $(CHECKOV_HOME)/bin/checkov

.PHONY: chart-lint chart-docs crds chart-scan chart-test helm

helm:
	@tools/build.sh helm >/dev/null

crds: venv
	$(PY) -m taskq_operator.crdgen

chart-docs: venv
	$(PY) tools/chart_docs.py $(CHART)

chart-lint: venv
	$(HELM) lint --strict $(CHART)
	$(HELM) lint --strict $(CHART) -f $(CHART)/ci/all-features-values.yaml
	$(PY) tools/chart_docs.py --check $(CHART)
	$(PY) -m taskq_operator.crdgen --check

$(CHECKOV):
	python3 -m venv $(CHECKOV_HOME)
	$(CHECKOV_HOME)/bin/pip install --quiet --disable-pip-version-check checkov==$(CHECKOV_VERSION)

# checkov's Kubernetes checks over what the chart renders, with the default values and with every
# optional part on. Suppressions sit in the templates as checkov.io/skip annotations, each with its
# reason. Any failed check fails the target. --skip-download: checkov fetches nothing.
CHART_SCAN_DIR := .state/chart-scan
chart-scan: $(CHECKOV) helm
	rm -rf $(CHART_SCAN_DIR) && mkdir -p $(CHART_SCAN_DIR)
	$(HELM) template taskq $(CHART) --namespace taskq-system --include-crds >$(CHART_SCAN_DIR)/default.yaml
	$(HELM) template taskq $(CHART) --namespace taskq-system -f $(CHART)/ci/all-features-values.yaml \
	  >$(CHART_SCAN_DIR)/all-features.yaml
	BC_SKIP_MAPPING=TRUE $(CHECKOV) --quiet --compact --skip-download --framework kubernetes \
	  --directory $(CHART_SCAN_DIR)

chart-test: venv helm
	$(PY) -m pytest tests/packaging/test_chart.py -q
