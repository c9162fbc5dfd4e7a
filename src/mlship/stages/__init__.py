"""The stages of the vocabulary (ingest ... promote), one module per group: each function
takes typed inputs (a Project, options), does the work through the modules below, and
returns a typed result. They print nothing; the CLI shows the result and turns errors into
exit codes.

  pipeline  ingest, validate, train (the model card is built here), evaluate: the DVC stages
  gate      freshness, thresholds, behaviour, champion scoring, data contract, reports
  release   register, promote, rollback (who approved, through which CI); Cloud Build's
            approvals of a promotion
  ship      image build and push, the load test and its target, deploy and its record
  monitor   drift of current data against a reference, live quality: retrain or not
  review    the run's page for a pull request and the job summary; the HTML run report
"""
