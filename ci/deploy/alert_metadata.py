"""Fails unless every alert carries what the people it pages need.

usage: alert_metadata.py RULES.yaml RUNBOOK.md

Each alert must have a `for:` duration, a severity of info, warning or
critical, a summary and a description, and a runbook_url pointing at a
section that exists in the runbook.
"""

import re
import sys

import yaml

RUNBOOK_URL = "https://github.com/strictly-dev/strictly/blob/main/docs/runbook.md#"
SEVERITIES = {"info", "warning", "critical"}


def anchors(markdown):
    """The anchors GitHub gives the headings of a Markdown file."""
    found = set()
    for heading in re.findall(r"^#+\s+(.*?)\s*$", markdown, flags=re.MULTILINE):
        anchor = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        found.add(anchor)
    return found


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    with open(sys.argv[1]) as f:
        groups = yaml.safe_load(f)["groups"]
    with open(sys.argv[2]) as f:
        sections = anchors(f.read())

    problems = []
    count = 0
    for rule in (r for g in groups for r in g["rules"] if "alert" in r):
        count += 1
        name = rule["alert"]
        labels = rule.get("labels") or {}
        annotations = rule.get("annotations") or {}
        if not rule.get("for"):
            problems.append(f"{name}: no for:")
        if labels.get("severity") not in SEVERITIES:
            problems.append(f"{name}: severity {labels.get('severity')!r} is not one of {sorted(SEVERITIES)}")
        for key in ("summary", "description"):
            if not annotations.get(key, "").strip():
                problems.append(f"{name}: no {key}")
        url = annotations.get("runbook_url", "")
        if not url.startswith(RUNBOOK_URL):
            problems.append(f"{name}: runbook_url does not start with {RUNBOOK_URL}")
        elif url[len(RUNBOOK_URL):] not in sections:
            problems.append(f"{name}: the runbook has no section #{url[len(RUNBOOK_URL):]}")

    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"{count} alerts with for:, severity, summary, description and a runbook section")


if __name__ == "__main__":
    main()
