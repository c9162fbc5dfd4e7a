# Dataproc Serverless custom container for batch scoring: the serving image production runs
# (its model, its locked environment, mlship) and what the Spark engine needs beyond it,
# pyarrow (pandas UDFs); no Spark and no Java, which Dataproc mounts at run time. Built by
# `.ci/spark/build.sh dataproc SERVING_IMAGE TAG`, which stages spark-python/ (the locked
# wheels installed on the host, their hashes checked as they were downloaded).
ARG SERVING_IMAGE=mlship:unset
FROM ${SERVING_IMAGE}
USER 0:0
# The Spark scripts need ps and tini; Dataproc runs the container as user spark, 1099. The
# serving environment reaches spark-python/ through a .pth file.
# hadolint ignore=DL3008
RUN apt-get update && apt-get install -y --no-install-recommends procps tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --gid 1099 spark \
    && useradd --uid 1099 --gid 1099 --create-home --home-dir /home/spark spark \
    && echo /opt/spark-python > /opt/venv/lib/python3.11/site-packages/spark-python.pth
COPY spark-python /opt/spark-python
COPY score.py /opt/mlship/score.py
ENV PYSPARK_PYTHON=/opt/venv/bin/python
HEALTHCHECK NONE
ENTRYPOINT []
CMD []
USER 1099:1099
