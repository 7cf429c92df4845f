// Validate custom resources against their CRDs' schemas (kubernetes-models: KEDA, Prometheus Operator).
// Reads a JSON array of objects on stdin; prints one line per problem; exits 1 if any.
import { ScaledObject } from "@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const models = { ScaledObject, ServiceMonitor, PrometheusRule };
let input = "";
for await (const chunk of process.stdin) input += chunk;
let failed = 0;
for (const doc of JSON.parse(input)) {
  const Model = models[doc.kind];
  if (!Model) { console.log(`${doc.kind}: no schema here`); failed++; continue; }
  try { new Model(doc).validate(); }
  catch (e) { console.log(`${doc.kind} ${doc.metadata?.name}: ${e.message}`); failed++; }
}
process.exit(failed ? 1 : 0);
