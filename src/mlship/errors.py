"""The two ways a stage refuses to go on; the CLI maps each to an exit code."""


class InputError(Exception):
    """Bad or missing input: params, a data file, a flag. Exit code 2."""


class CheckError(Exception):
    """Input was readable but breaks a rule (the data contract, later the gate). Exit 1."""
