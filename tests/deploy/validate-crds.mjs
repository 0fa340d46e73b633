// Validates the Prometheus Operator resources of the rendered overlays
// against the schemas that @kubernetes-models/prometheus-operator compiles
// from the operator's Go types: required fields, value patterns such as
// durations, and enums, which a type check cannot see.
//
// usage: node validate-crds.mjs .build/monitoring.json

import { readFileSync } from "node:fs";
import {
  PodMonitor,
  PrometheusRule,
  ServiceMonitor,
} from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1";

const models = { PodMonitor, PrometheusRule, ServiceMonitor };
const resources = JSON.parse(readFileSync(process.argv[2], "utf8"));

let failed = 0;
for (const resource of resources) {
  const Model = models[resource.kind];
  const name = `${resource.kind}/${resource.metadata.name}`;
  try {
    new Model(resource).validate();
  } catch (error) {
    failed += 1;
    console.log(`${name}: ${error.message}`);
  }
}

console.log(`${resources.length - failed} of ${resources.length} resources valid`);
process.exit(failed ? 1 : 0);
