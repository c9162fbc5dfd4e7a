#!/usr/bin/env bash
# The operator image's entrypoint (under tini): what Spark on Kubernetes asks of the pods it
# makes. `driver ARGS` is spark-submit in client mode, bound to the pod's address (the pod
# is the cluster-mode driver already); `executor` starts an executor from the variables Spark
# sets on its pods (SPARK_DRIVER_URL, SPARK_EXECUTOR_ID, ...; Java options in
# SPARK_JAVA_OPT_0, _1, ...); anything else runs as given. Unlike Apache's image's
# entrypoint: no /etc/passwd entry for an unnamed user (the image has user spark, 185, as
# the manifests run it), no decommissioning script, no R, and no --py-files staging (the
# job file and the model are in the image).
set -euo pipefail

case "${1:-}" in
driver)
    shift
    exec "$SPARK_HOME/bin/spark-submit" --deploy-mode client \
        --conf "spark.driver.bindAddress=${SPARK_DRIVER_BIND_ADDRESS:?the pod address to bind}" \
        "$@"
    ;;
executor)
    shift
    for name in SPARK_DRIVER_URL SPARK_EXECUTOR_ID SPARK_EXECUTOR_CORES \
        SPARK_EXECUTOR_MEMORY SPARK_APPLICATION_ID SPARK_EXECUTOR_POD_IP; do
        if [[ -z "${!name:-}" ]]; then
            echo "entrypoint.sh executor: $name is not set (Spark sets it on executor pods)" >&2
            exit 2
        fi
    done
    java_options=()
    for ((i = 0; ; i++)); do
        name="SPARK_JAVA_OPT_$i"
        [[ -n "${!name+set}" ]] || break
        java_options+=("${!name}")
    done
    exec "$JAVA_HOME/bin/java" "-Xms$SPARK_EXECUTOR_MEMORY" "-Xmx$SPARK_EXECUTOR_MEMORY" \
        "${java_options[@]}" \
        -cp "${SPARK_CONF_DIR:-$SPARK_HOME/conf}:$SPARK_HOME/jars/*${SPARK_CLASSPATH:+:$SPARK_CLASSPATH}" \
        org.apache.spark.scheduler.cluster.k8s.KubernetesExecutorBackend \
        --driver-url "$SPARK_DRIVER_URL" \
        --executor-id "$SPARK_EXECUTOR_ID" \
        --cores "$SPARK_EXECUTOR_CORES" \
        --app-id "$SPARK_APPLICATION_ID" \
        --hostname "$SPARK_EXECUTOR_POD_IP" \
        --resourceProfileId "${SPARK_RESOURCE_PROFILE_ID:-0}" \
        --podName "${SPARK_EXECUTOR_POD_NAME:-$HOSTNAME}"
    ;;
*)
    exec "$@"
    ;;
esac
