"""The ways a stage refuses to go on; the CLI maps each to its exit code.

| exit | meaning |
|---|---|
| 0 | done |
| 1 | a check failed: the data contract, the gate, the load test, a deploy (CheckError) |
| 2 | bad input: params, a data file, a flag, the environment (InputError) |
| 3 | a service did not answer: MLflow, the Docker engine, a registry, the cluster, a CI
      API, Prometheus (ServiceError) |
| 4 | no verdict: too little data to judge, e.g. drift on fewer than `monitor.min_rows`
      rows (NoVerdictError) |
"""


class MlshipError(Exception):
    """Why a command stops; the CLI turns it into its exit code, in one place."""

    exit_code = 1


class InputError(MlshipError):
    """Bad or missing input: params, a data file, a flag. Exit code 2."""

    exit_code = 2


class CheckError(MlshipError):
    """Input was readable but breaks a rule (the data contract, the gate, ...). Exit 1."""

    exit_code = 1


class ServiceError(MlshipError):
    """A service the stage needs could not be reached or failed on its side. Exit 3."""

    exit_code = 3


class NoVerdictError(MlshipError):
    """The data was too little to judge: neither pass nor fail. Exit 4."""

    exit_code = 4


CONNECTION_HINTS = (
    "was refused",  # kubectl: "The connection to the server ... was refused"
    "no route to host",
    "i/o timeout",
    "connection refused",
    "max retries exceeded",
    "failed to establish",
    "name or service not known",
    "timed out",
    "unable to connect",
    "temporarily unavailable",
    "connecterror",
)


def looks_unreachable(error: BaseException) -> bool:
    """Whether an error from a client library reads as "could not reach the service"."""
    text = f"{type(error).__name__} {error}".lower()
    return any(hint in text for hint in CONNECTION_HINTS)
