// Validates ServiceMonitors (a JSON array on stdin) against the Prometheus Operator
// CRD's schema as @kubernetes-models/prometheus-operator compiles it: types, enums,
// required fields and patterns; it does not refuse unknown fields. Exit 1 on the
// first invalid one. scripts/k8s/checks.py runs it from .venv/k8s-tools/npm.
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";

let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = false;
for (const object of JSON.parse(input)) {
  const name = object?.metadata?.name;
  try {
    new ServiceMonitor(object).validate();
    console.log(`ServiceMonitor ${name}: valid against the monitoring.coreos.com/v1 CRD schema`);
  } catch (error) {
    console.error(`ServiceMonitor ${name}: ${error.message}`);
    failed = true;
  }
}
process.exit(failed ? 1 : 0);
