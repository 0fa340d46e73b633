"""Checks the PromQL in strictly's alerting rules and Grafana dashboard.

usage:
  promql_check.py rules-file OUT.yaml   write every dashboard query, Grafana
                                        variables replaced by sample values,
                                        as recording rules for `promtool check
                                        rules` to parse
  promql_check.py names METRICS.txt     fail unless every metric, label and
                                        label value that a rule or a panel
                                        names appears in METRICS.txt, a
                                        captured /metrics answer of strictly

The name check reads PromQL with a small tokenizer, not a full parser: it
knows selectors, label matchers, function calls and the label lists of
by / without / on / ignoring / group_left / group_right, which is all that
these queries use. promtool has parsed every expression before it runs.
"""

import json
import re
import sys
from collections import defaultdict
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "alerts/strictly-rules.yaml"
DASHBOARD = ROOT / "dashboards/strictly.json"

# Values Grafana would put in place of its variables. The query variables are
# multi-value with "All" selected by default, which Grafana sends as `.*`.
GRAFANA_VARIABLES = {
    "datasource": "prometheus",
    "mesh": ".*",
    "service": ".*",
    "__rate_interval": "2m",
    "__interval": "30s",
    "__range": "1d",
}

# Series that Prometheus itself records for every scrape target, and labels it
# attaches to every series it scrapes; neither is in strictly's own answer.
PROMETHEUS_SERIES = {"up"}
TARGET_LABELS = {"job", "instance"}

LABEL_LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
KEYWORDS = {"and", "or", "unless", "bool", "offset", "inf", "nan"} | LABEL_LIST_KEYWORDS
AGGREGATIONS = {
    "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
    "bottomk", "topk", "quantile", "limitk", "limit_ratio",
}

TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<comment>\#[^\n]*)
    | (?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`)
    | (?P<duration>\[[^\]]*\])
    | (?P<ident>[a-zA-Z_:][a-zA-Z0-9_:]*)
    | (?P<number>[0-9][0-9.eE+\-]*)
    | (?P<op>=~|!~|!=|==|>=|<=|[-+*/%^<>=,(){}@])
    """,
    re.VERBOSE,
)


def substitute(expr):
    """Replaces Grafana's $name and ${name} by sample values."""

    def value(match):
        name = match.group(1) or match.group(2)
        if name not in GRAFANA_VARIABLES:
            raise ValueError(f"unknown Grafana variable ${name} in: {expr}")
        return GRAFANA_VARIABLES[name]

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", value, expr)


def tokens(expr):
    out = []
    pos = 0
    while pos < len(expr):
        match = TOKEN.match(expr, pos)
        if not match:
            raise ValueError(f"cannot read PromQL at {expr[pos:pos + 20]!r}")
        pos = match.end()
        if match.lastgroup not in ("space", "comment"):
            out.append((match.lastgroup, match.group()))
    return out


def unquote(text):
    return json.loads(text) if text.startswith('"') else text[1:-1]


class Usage:
    """What one expression refers to."""

    def __init__(self):
        self.selectors = []  # (metric, [(label, op, value)])
        self.grouping_labels = set()


def read_usage(expr):
    usage = Usage()
    toks = tokens(expr)
    i = 0
    while i < len(toks):
        kind, text = toks[i]
        following = toks[i + 1][1] if i + 1 < len(toks) else None

        if kind == "ident" and text in LABEL_LIST_KEYWORDS and following == "(":
            i += 2
            while toks[i][1] != ")":
                if toks[i][0] == "ident":
                    usage.grouping_labels.add(toks[i][1])
                i += 1
        elif kind == "ident" and following == "(":
            pass  # a function or an aggregation
        elif kind == "ident" and text in AGGREGATIONS and following in ("by", "without"):
            pass  # an aggregation with its grouping first
        elif kind == "ident" and text.lower() not in KEYWORDS:
            matchers = []
            if following == "{":
                i += 2
                while toks[i][1] != "}":
                    if toks[i][0] == "ident":
                        label, op, value = toks[i][1], toks[i + 1][1], unquote(toks[i + 2][1])
                        matchers.append((label, op, value))
                        i += 3
                    else:
                        i += 1
            usage.selectors.append((text, matchers))
        i += 1
    return usage


def rule_expressions():
    """(where, expression, label names its annotations use) for every rule."""
    out = []
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            name = rule.get("alert") or rule.get("record")
            texts = " ".join((rule.get("annotations") or {}).values())
            labels = set(re.findall(r"\$labels\.(\w+)", texts))
            out.append((f"rule {name}", rule["expr"], labels))
    return out


def dashboard_expressions():
    """(where, expression, label names its legend uses) for every query."""
    dashboard = json.loads(DASHBOARD.read_text())
    out = []
    for panel in dashboard["panels"]:
        for target in panel.get("targets", []):
            where = f"panel {panel['id']} ({panel['title']}) query {target['refId']}"
            legend = set(re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")))
            out.append((where, substitute(target["expr"]), legend))

    # Query variables: label_values(selector, label) is Grafana's, not PromQL;
    # its selector is PromQL and its label must exist on the selected metric.
    for variable in dashboard["templating"]["list"]:
        if variable["type"] != "query":
            continue
        query = variable["query"]["query"] if isinstance(variable["query"], dict) else variable["query"]
        match = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query)
        if not match:
            raise ValueError(f"variable {variable['name']}: expected label_values(selector, label)")
        out.append((f"variable {variable['name']}", substitute(match.group(1)), {match.group(2)}))
    return out


def write_rules_file(path):
    rules = []
    for n, (where, expr, _) in enumerate(dashboard_expressions()):
        rules.append({"record": f"strictly_dashboard_query_{n}", "expr": expr, "labels": {"where": where}})
    Path(path).write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}, sort_keys=False))
    print(f"{len(rules)} dashboard queries written to {path}")


def read_sample(path):
    """Series name -> label name -> values seen, from Prometheus text format."""
    series = defaultdict(lambda: defaultdict(set))
    line_re = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+\S+")
    label_re = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')
    for line in Path(path).read_text().splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        match = line_re.match(line)
        if not match:
            raise ValueError(f"{path}: cannot read line {line!r}")
        labels = series[match.group(1)]
        for label, value in label_re.findall(match.group(3) or ""):
            labels[label].add(value)
    return series


def check_names(sample_path):
    sample = read_sample(sample_path)
    problems = []
    used = set()

    for where, expr, template_labels in rule_expressions() + dashboard_expressions():
        usage = read_usage(expr)
        known_labels = set(TARGET_LABELS)
        all_known = True
        for metric, matchers in usage.selectors:
            used.add(metric)
            if metric in PROMETHEUS_SERIES:
                continue
            if metric not in sample:
                problems.append(f"{where}: metric {metric} is not in {sample_path}")
                all_known = False
                continue
            labels = sample[metric]
            known_labels |= set(labels)
            for label, op, value in matchers:
                if label in TARGET_LABELS:
                    continue
                if label not in labels:
                    problems.append(f"{where}: {metric} has no label {label}")
                elif op in ("=", "!=") and value not in labels[label]:
                    problems.append(f'{where}: {metric}{{{label}="{value}"}} is not in the sample')

        # With a metric missing, its labels are unknown too: say it once.
        unknown = (usage.grouping_labels | template_labels) - known_labels if all_known else set()
        for label in sorted(unknown):
            problems.append(f"{where}: label {label} is on none of the metrics it selects")

    for problem in problems:
        print(problem)
    if problems:
        return False
    print(f"{len(used)} metric names used by rules and panels, all in {sample_path}")
    return True


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("rules-file", "names"):
        sys.exit(__doc__)
    if sys.argv[1] == "rules-file":
        write_rules_file(sys.argv[2])
    elif not check_names(sys.argv[2]):
        sys.exit(1)


if __name__ == "__main__":
    main()
