"""The stages, one module per group: each function takes typed inputs (Params, Settings,
paths), does the work through the core and adapter modules, and returns a typed result.
They print nothing; the CLI shows the result and maps errors to exit codes.

  pipeline  ingest, validate, train (the model card is built here), evaluate: the DVC stages
  gate      freshness, thresholds, behaviour, champion scoring, data contract, reports
  release   register, promote, rollback (who approved, through which CI)
  ship      image build and push, the load test and its target, deploy and its record
"""
