"""The Spark job's main file: `mlship score --engine spark` on the model baked into the image
(/opt/model, the one production serves), with the arguments the job was submitted with
(--input, --output, and any other `mlship score` option; a later --model wins). Under
spark-submit (Dataproc Serverless, the Spark operator) the session takes spark-submit's
master and settings."""

import sys

from mlship.cli import app

app(
    ["score", "--engine", "spark", "--model", "/opt/model", *sys.argv[1:]],
    prog_name="mlship",
)
