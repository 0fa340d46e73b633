"""Fails unless every alert has a promtool test where it fires and one where
it stays quiet.

usage: rule_test_coverage.py RULES.yaml TESTS.yaml

`promtool test rules` only runs the cases it is given; an alert with no case,
or tested only one way, passes unnoticed. This closes that gap.
"""

import sys
from collections import defaultdict

import yaml


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    rules_path, tests_path = sys.argv[1:]

    with open(rules_path) as f:
        alerts = [r["alert"] for g in yaml.safe_load(f)["groups"] for r in g["rules"] if "alert" in r]
    with open(tests_path) as f:
        tests = yaml.safe_load(f)["tests"]

    seen = defaultdict(set)
    for test in tests:
        for case in test.get("alert_rule_test", []):
            seen[case["alertname"]].add("fires" if case.get("exp_alerts") else "quiet")

    problems = []
    for alert in alerts:
        for outcome in ("fires", "quiet"):
            if outcome not in seen[alert]:
                problems.append(f"{alert}: no test case where it {outcome}")
    for name in sorted(set(seen) - set(alerts)):
        problems.append(f"{name}: tested, but no such alert")

    for problem in problems:
        print(problem)
    if problems:
        sys.exit(1)
    print(f"{len(alerts)} alerts, each tested firing and quiet")


if __name__ == "__main__":
    main()
