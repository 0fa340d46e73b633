"""Keeps the copies that kustomize needs in step with their originals.

kustomize reads no file outside a kustomization's folder, so two files exist
twice:

- config/components/prometheusrule/prometheusrule.yaml wraps the groups of
  alerts/strictly-rules.yaml in a PrometheusRule;
- config/components/grafana-dashboard/strictly.json is dashboards/strictly.json.

Run without arguments to rewrite the copies; with --check to fail, without
writing anything, when a copy differs from its original. The rules are
compared as parsed YAML, so only a difference in meaning counts.

Needs PyYAML: run it with .venv/bin/python once ci/deploy-checks.sh has
created .venv.
"""

import argparse
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alerts/strictly-rules.yaml"
PROMETHEUS_RULE = ROOT / "config/components/prometheusrule/prometheusrule.yaml"
DASHBOARD = ROOT / "dashboards/strictly.json"
DASHBOARD_COPY = ROOT / "config/components/grafana-dashboard/strictly.json"

HEADER = """\
# Generated from alerts/strictly-rules.yaml by ci/deploy/sync_generated.py.
# Edit that file and run the script again; CI fails when the two differ.
"""


class Dumper(yaml.SafeDumper):
    """Indents lists under their key and writes multi-line strings (PromQL
    expressions) as literal blocks, so the output reads like the original."""

    def increase_indent(self, flow=False, indentless=False):
        return super().increase_indent(flow, False)


def _str(dumper, value):
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


Dumper.add_representer(str, _str)


def prometheus_rule(groups):
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "strictly", "labels": {"app.kubernetes.io/name": "strictly"}},
        "spec": {"groups": groups},
    }


def render_prometheus_rule():
    groups = yaml.safe_load(RULES.read_text())["groups"]
    # A wide line limit keeps each annotation on one line instead of folding
    # it in the middle of a template.
    body = yaml.dump(prometheus_rule(groups), Dumper=Dumper, sort_keys=False, width=4096)
    return HEADER + body


def check():
    problems = []

    rules = yaml.safe_load(RULES.read_text())["groups"]
    wrapped = yaml.safe_load(PROMETHEUS_RULE.read_text())
    if wrapped != prometheus_rule(rules):
        problems.append(f"{PROMETHEUS_RULE.relative_to(ROOT)} differs from {RULES.relative_to(ROOT)}")

    if DASHBOARD_COPY.read_bytes() != DASHBOARD.read_bytes():
        problems.append(f"{DASHBOARD_COPY.relative_to(ROOT)} differs from {DASHBOARD.relative_to(ROOT)}")

    for problem in problems:
        print(problem)
    if problems:
        print("run `.venv/bin/python ci/deploy/sync_generated.py` to bring the copies up to date")
    return not problems


def write():
    PROMETHEUS_RULE.write_text(render_prometheus_rule())
    DASHBOARD_COPY.write_bytes(DASHBOARD.read_bytes())


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare only, write nothing")
    args = parser.parse_args()

    if args.check:
        sys.exit(0 if check() else 1)
    write()


if __name__ == "__main__":
    main()
