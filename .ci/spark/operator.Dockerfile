# Spark on Kubernetes (the Kubeflow Spark operator, k8s/components/spark): the serving image
# production runs (its model, its locked environment, mlship), Spark from pyspark's wheel
# (its jars, Kubernetes' among them, and scripts: SPARK_HOME), pyarrow, Debian's OpenJDK 17
# and entrypoint.sh, which starts what Spark asks of a driver or an executor pod. Built by
# `.ci/spark/build.sh operator SERVING_IMAGE TAG`, which stages spark-python/ (the locked
# wheels installed on the host, their hashes checked as they were downloaded).
ARG SERVING_IMAGE=mlship:unset
FROM ${SERVING_IMAGE}
USER 0:0
# (the JRE's installer links manual pages into a folder the slim base leaves out); the
# serving environment reaches spark-python/ through a .pth file; user spark, 185, as the
# manifests run it (Spark and Hadoop want a named user)
# hadolint ignore=DL3008
RUN mkdir -p /usr/share/man/man1 \
    && apt-get update \
    && apt-get install -y --no-install-recommends openjdk-17-jre-headless procps tini \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --uid 185 --gid 0 --create-home --home-dir /home/spark spark \
    && echo /opt/spark-python > /opt/venv/lib/python3.11/site-packages/spark-python.pth
COPY spark-python /opt/spark-python
COPY score.py entrypoint.sh /opt/mlship/
ENV JAVA_HOME=/usr/lib/jvm/java-17-openjdk-amd64 \
    SPARK_HOME=/opt/spark-python/pyspark \
    PYSPARK_PYTHON=/opt/venv/bin/python \
    PATH=/opt/venv/bin:/opt/spark-python/pyspark/bin:$PATH
HEALTHCHECK NONE
# the working folder, where Spark unpacks the files a job ships (the model): the user's own
WORKDIR /home/spark
ENTRYPOINT ["/usr/bin/tini", "-s", "--", "/opt/mlship/entrypoint.sh"]
CMD []
USER 185:0
