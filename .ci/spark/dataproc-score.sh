#!/usr/bin/env bash
# Batch scoring on Dataproc Serverless with the model production serves (`make score-dataproc`,
# run every night by .github/workflows/score.yml, .ci/cloudbuild/score.yaml and
# .ci/jenkins/score.Jenkinsfile): read the image of the production Deployment, build the
# Dataproc container from it (.ci/spark/build.sh), push it beside it, and submit
# `mlship score --engine spark` as a batch; gcloud waits for the batch and fails with it.
# Needs gcloud, kubectl and a Docker engine (Google's google-cloud-cli image has all three)
# and python3 with pip (build.sh downloads the wheels). MLSHIP_GKE_CLUSTER fetches the
# production cluster's credentials first.
set -euo pipefail
cd "$(dirname "$0")"

: "${MLSHIP_GCP_PROJECT:?the Google Cloud project}"
: "${MLSHIP_GCP_REGION:?the region of the batch (and of Artifact Registry)}"
: "${MLSHIP_SCORE_INPUT:?what to score: gs://BUCKET/PATH/*.parquet (CSV and JSONL too)}"
: "${MLSHIP_SCORE_OUTPUT:?where the scored rows go: a gs:// folder that does not exist yet}"
: "${MLSHIP_DATAPROC_SERVICE_ACCOUNT:?the service account the batch runs as}"
namespace="${MLSHIP_NAMESPACE:-mlship-production}"
repository="${MLSHIP_ARTIFACT_REPOSITORY:-mlship}"
runtime="${MLSHIP_DATAPROC_RUNTIME:-3.0}"    # Dataproc Serverless for Spark 4
executors="${MLSHIP_DATAPROC_MAX_EXECUTORS:-20}"

if [ -n "${MLSHIP_GKE_CLUSTER:-}" ]; then    # where no step got the credentials already
    gcloud container clusters get-credentials "$MLSHIP_GKE_CLUSTER" \
        --project "$MLSHIP_GCP_PROJECT" --location "${MLSHIP_GKE_LOCATION:-$MLSHIP_GCP_REGION}"
fi
serving=$(kubectl --namespace "$namespace" get deployment mlship \
    --output 'jsonpath={.spec.template.spec.containers[?(@.name=="server")].image}')
if [ -z "$serving" ]; then
    echo "deployment/mlship in $namespace has no server container: nothing to score with" >&2
    exit 1
fi
# the tag of the batch image follows the serving image's digest (or tag): rebuilt only when
# production changed
version="${serving##*@sha256:}"
[ "$version" != "$serving" ] || version="${serving##*:}"
image="$MLSHIP_GCP_REGION-docker.pkg.dev/$MLSHIP_GCP_PROJECT/$repository/mlship-dataproc:${version:0:40}"
bash build.sh dataproc "$serving" "$image"
docker push "$image"

batch="mlship-score-$(date -u +%Y%m%d-%H%M%S)"
echo "scoring $MLSHIP_SCORE_INPUT with $serving as Dataproc batch $batch"
gcloud dataproc batches submit pyspark score.py \
    --project "$MLSHIP_GCP_PROJECT" --region "$MLSHIP_GCP_REGION" --batch "$batch" \
    --version "$runtime" --container-image "$image" \
    --service-account "$MLSHIP_DATAPROC_SERVICE_ACCOUNT" \
    ${MLSHIP_DATAPROC_SUBNET:+--subnet "$MLSHIP_DATAPROC_SUBNET"} \
    --labels app=mlship,job=score \
    --properties "spark.dynamicAllocation.maxExecutors=$executors,spark.executor.cores=4,spark.executor.memory=8g,spark.python.worker.reuse=true" \
    -- --input "$MLSHIP_SCORE_INPUT" --output "$MLSHIP_SCORE_OUTPUT"
