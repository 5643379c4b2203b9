# Terraform/OpenTofu modules under terraform/ (docs/terraform.md). tofu and the kubernetes, helm
# and random providers are built from tools/ like the control plane's binaries and reach tofu
# through a filesystem mirror (terraform/mirror.sh): no registry is ever contacted.
#   make terraform-tools        build/reuse tofu and the providers; write the mirror and CLI config
#   make terraform-fmt          tofu fmt -check over every module and example
#   make terraform-check        fmt, validate and `tofu test` (mock providers) where providers exist
#   make terraform-apply-local  apply examples/local onto the local control plane, then destroy it;
#                               as root also modules/taskq with the operator on the real node
#   make terraform-scan         checkov over terraform/ (and the chart, via chart-scan)
#   make terraform-test         tests/packaging/test_terraform.py (all of the above but the scan)

TF_ENV = eval "$$(terraform/mirror.sh)" &&
TF_CHECKOV_VERSION := 3.3.30
TF_CHECKOV_HOME := $(HOME)/.cache/taskq/checkov-$(TF_CHECKOV_VERSION)

.PHONY: terraform-tools terraform-fmt terraform-check terraform-apply-local terraform-scan terraform-test

terraform-tools:
	@$(TF_ENV) echo "tofu: $$TOFU; CLI config: $$TF_CLI_CONFIG_FILE"

terraform-fmt:
	@$(TF_ENV) "$$TOFU" fmt -check -recursive -diff terraform

terraform-check terraform-apply-local terraform-test: venv
	$(PY) -m pytest tests/packaging/test_terraform.py -q $(if $(filter terraform-check,$@),-k "not apply",) \
	  $(if $(filter terraform-apply-local,$@),-k apply,)

# No severities without a Bridgecrew API key, so every failed check counts: zero are allowed,
# suppressions sit next to the resource (#checkov:skip=ID:reason).
terraform-scan:
	@test -x $(TF_CHECKOV_HOME)/bin/checkov || { python3 -m venv $(TF_CHECKOV_HOME) && \
	  $(TF_CHECKOV_HOME)/bin/pip install --quiet --disable-pip-version-check checkov==$(TF_CHECKOV_VERSION); }
	$(TF_CHECKOV_HOME)/bin/checkov --quiet --compact --skip-download --framework terraform \
	  --directory terraform
	$(MAKE) --no-print-directory chart-scan
