from mlship.cli import app

app(prog_name="mlship")
